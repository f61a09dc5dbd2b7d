//! Message search tokens (DESIGN.md §10), computed once here and indexed the same way by both backends (SQLite
//! FTS5, Postgres `tsvector` + GIN), so a query gives the same results on either.
//!
//! Text is split into three kinds of token, after case folding (`char::to_lowercase`):
//! - **CJK runs** (Han, kana, Hangul) have no spaces between words, so each run is indexed as its overlapping
//!   character pairs, plus its last character alone: 上海市 → 上海, 海市, 市. A query run of two or more
//!   characters matches messages holding all its pairs and (checked on the text) the run itself; a query of one
//!   character matches any token starting with it (every character of a run starts a pair or ends the run).
//! - **Words**: runs of other letters and digits (Latin, Cyrillic, fullwidth forms, combining marks), matched
//!   by prefix: `hel` finds "Hello".
//! - **Symbols** outside ASCII that are neither letters nor punctuation (emoji, ©): one token each, exact.
//!
//! Everything else (spaces, ASCII punctuation such as `%` and `_`, CJK and general punctuation) separates
//! tokens and is never matched, so `%` and `_` are taken literally: they are not wildcards.

use crate::domain::{DomainError, ErrorCode};

/// Longest token kept, in characters; a longer word is indexed (and queried) by its first this many characters,
/// which keeps a pasted URL or hash from bloating the index while still matching it by prefix.
pub const MAX_TOKEN_CHARS: usize = 32;

/// Most characters a search query may have (422 `invalid_query` beyond).
pub const MAX_QUERY_CHARS: usize = 100;

/// Most tokens a query is matched by; later ones are ignored (the first already narrow the results to a few).
pub const MAX_QUERY_TERMS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Cjk,
    Word,
    Symbol,
    Separator,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF       // Hiragana, Katakana
        | 0x31F0..=0x31FF     // Katakana phonetic extensions
        | 0x3400..=0x4DBF     // CJK unified ideographs extension A
        | 0x4E00..=0x9FFF     // CJK unified ideographs
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0x1100..=0x11FF     // Hangul Jamo
        | 0x3130..=0x318F     // Hangul compatibility Jamo
        | 0xAC00..=0xD7AF     // Hangul syllables
        | 0x20000..=0x3FFFF) // supplementary ideographic planes
        && c != '\u{30FB}' // katakana middle dot: punctuation
}

fn class(c: char) -> Class {
    if is_cjk(c) {
        Class::Cjk
    } else if c.is_alphanumeric() || ('\u{0300}'..='\u{036F}').contains(&c) {
        Class::Word
    } else if c.is_ascii() || c.is_whitespace() || is_punctuation_block(c) || is_joiner(c) {
        Class::Separator
    } else {
        Class::Symbol
    }
}

/// General punctuation, CJK symbols and punctuation, fullwidth ASCII punctuation, vertical forms and the like.
fn is_punctuation_block(c: char) -> bool {
    matches!(c as u32,
        0x00A0..=0x00BF   // Latin-1 punctuation (but © and ® are symbols: see below)
        | 0x2000..=0x206F // general punctuation (includes the zero-width joiner)
        | 0x3000..=0x303F // CJK symbols and punctuation
        | 0xFE10..=0xFE1F // vertical forms
        | 0xFE30..=0xFE4F // CJK compatibility forms
        | 0xFE50..=0xFE6F // small form variants
        | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
        && c != '©'
        && c != '®'
}

/// Characters that shape an emoji rather than being one: variation selectors and skin-tone modifiers.
fn is_joiner(c: char) -> bool {
    matches!(c as u32, 0xFE00..=0xFE0F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
}

/// One token of a query: matched exactly, or as a prefix of indexed tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub text: String,
    pub prefix: bool,
}

/// A parsed query: every term must match, and every CJK run of three or more characters must occur in the
/// message's text as it is (pairs alone do not fix their order: 上海 + 海市 are also in "海市…上海").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    pub terms: Vec<Term>,
    pub runs: Vec<String>,
}

impl SearchQuery {
    /// Whether the query has nothing to match (only punctuation): it finds nothing.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Splits folded text into (class, piece) segments, each a maximal run of one class (symbols one per char).
fn segments(text: &str) -> Vec<(Class, String)> {
    let mut out: Vec<(Class, String)> = Vec::new();
    for original in text.chars() {
        for c in original.to_lowercase() {
            let k = class(c);
            match (k, out.last_mut()) {
                (Class::Separator, _) => {
                    if out.last().is_some_and(|l| l.0 != Class::Separator) {
                        out.push((Class::Separator, String::new()));
                    }
                }
                (Class::Cjk | Class::Word, Some(last)) if last.0 == k => last.1.push(c),
                _ => out.push((k, c.to_string())),
            }
        }
    }
    out.retain(|s| s.0 != Class::Separator);
    out
}

fn truncate(word: &str) -> String {
    word.chars().take(MAX_TOKEN_CHARS).collect()
}

/// The tokens a message's text is indexed by, sorted and without repeats, joined by single spaces (no token
/// holds a space); `None` when the text has none. Both backends index exactly this string.
pub fn index_tokens(text: &str) -> Option<String> {
    let mut tokens: Vec<String> = Vec::new();
    for (class, piece) in segments(text) {
        match class {
            Class::Cjk => {
                let chars: Vec<char> = piece.chars().collect();
                for pair in chars.windows(2) {
                    tokens.push(pair.iter().collect());
                }
                if let Some(last) = chars.last() {
                    tokens.push(last.to_string());
                }
            }
            Class::Word | Class::Symbol => tokens.push(truncate(&piece)),
            Class::Separator => {}
        }
    }
    tokens.sort_unstable();
    tokens.dedup();
    (!tokens.is_empty()).then(|| tokens.join(" "))
}

/// The token that files a message under its conversation, so that a search can be confined to the caller's
/// conversations inside the index (`$` and the id with `:` as `$`: `d:1:2` → `$d$1$2`). No text token holds
/// `$` (ASCII punctuation only separates), so no message text can produce or match it.
pub fn conversation_token(conversation_id: &str) -> String {
    format!("${}", conversation_id.replace(':', "$"))
}

/// A message search (`GET /api/messages/search?q=`): 1–100 characters without control characters, something
/// visible; refusals are 422 `invalid_query`. A query of punctuation alone is valid and finds nothing.
pub fn message_query(q: &str) -> Result<SearchQuery, DomainError> {
    let n = q.chars().count();
    if n == 0 || n > MAX_QUERY_CHARS || q.chars().any(char::is_control) || crate::domain::text::is_blank(q) {
        return Err(DomainError::new(
            ErrorCode::InvalidQuery,
            "q must be 1 to 100 characters without control characters, something visible",
        ));
    }
    Ok(parse_query(q))
}

/// Parses a query into the terms both backends match.
pub fn parse_query(q: &str) -> SearchQuery {
    let mut query = SearchQuery::default();
    for (class, piece) in segments(q) {
        match class {
            Class::Cjk => {
                let chars: Vec<char> = piece.chars().collect();
                if chars.len() == 1 {
                    query.terms.push(Term { text: piece.clone(), prefix: true });
                } else {
                    for pair in chars.windows(2) {
                        query.terms.push(Term { text: pair.iter().collect(), prefix: false });
                    }
                    if chars.len() > 2 {
                        query.runs.push(piece.clone());
                    }
                }
            }
            Class::Word => query.terms.push(Term { text: truncate(&piece), prefix: true }),
            Class::Symbol => query.terms.push(Term { text: piece, prefix: false }),
            Class::Separator => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    query.terms.retain(|t| seen.insert(t.clone()));
    query.terms.truncate(MAX_QUERY_TERMS);
    query.runs.sort_unstable();
    query.runs.dedup();
    query
}

/// Whether a folded message text holds a CJK run as it is (the check pairs alone cannot make). Matches the SQL
/// both backends run (`body LIKE '%run%'`: a CJK run has no case and no LIKE wildcard).
pub fn contains_run(text: &str, run: &str) -> bool {
    text.contains(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        index_tokens(text).map(|t| t.split(' ').map(str::to_owned).collect()).unwrap_or_default()
    }

    /// What a query finds in a text, by the same rules the backends apply.
    fn finds(text: &str, q: &str) -> bool {
        let indexed = tokens(text);
        let query = parse_query(q);
        !query.is_empty()
            && query
                .terms
                .iter()
                .all(|t| indexed.iter().any(|i| if t.prefix { i.starts_with(&t.text) } else { *i == t.text }))
            && query.runs.iter().all(|r| contains_run(&text.to_lowercase(), r))
    }

    #[test]
    fn cjk_text_is_indexed_as_overlapping_pairs_and_its_last_character() {
        assert_eq!(tokens("我在上海"), ["上海", "在上", "我在", "海"]);
        assert_eq!(tokens("好"), ["好"]);
    }

    #[test]
    fn a_two_character_chinese_word_is_found_inside_a_longer_sentence() {
        assert!(finds("明天我们去上海看展览", "上海"));
        assert!(finds("明天我们去上海看展览", "展览"));
        assert!(!finds("明天我们去海上看展览", "上海"));
    }

    #[test]
    fn longer_chinese_words_must_occur_in_order() {
        assert!(finds("我在上海市工作", "上海市"));
        // Both pairs are there, but not as one run.
        assert!(!finds("海市蜃楼在上海", "上海市"));
        assert!(finds("中华人民共和国成立", "人民共和国"));
    }

    #[test]
    fn one_chinese_character_finds_every_message_holding_it() {
        assert!(finds("我在上海", "海"));
        assert!(finds("海南很好", "海"));
        assert!(finds("大海", "海"));
        assert!(!finds("上山", "海"));
    }

    #[test]
    fn latin_words_match_case_insensitively_and_by_prefix() {
        assert!(finds("Hello World", "hello"));
        assert!(finds("Hello World", "WOR"));
        assert!(!finds("Hello World", "orld"));
        assert!(finds("ÉCOLE normale", "école"));
    }

    #[test]
    fn mixed_chinese_and_latin_match_each_part() {
        assert!(finds("明天用iPhone拍上海", "iphone 上海"));
        assert!(finds("明天用iPhone拍上海", "上海iphone"));
        assert!(!finds("明天用Android拍上海", "iphone 上海"));
    }

    #[test]
    fn emoji_are_tokens_of_their_own() {
        assert!(finds("好的👍谢谢", "👍"));
        assert!(finds("nice👍🏽", "👍"));
        assert!(!finds("好的谢谢", "👍"));
    }

    #[test]
    fn percent_and_underscore_are_not_wildcards() {
        assert!(parse_query("%").is_empty());
        assert!(parse_query("_").is_empty());
        assert!(!finds("anything at all", "%"));
        assert!(finds("50% off", "50%"));
        assert!(!finds("a b", "a_b_c"));
    }

    #[test]
    fn long_words_are_cut_to_a_bounded_token() {
        let long = "x".repeat(200);
        assert_eq!(tokens(&long), ["x".repeat(MAX_TOKEN_CHARS)]);
        assert!(finds(&long, &"x".repeat(150)));
    }

    #[test]
    fn punctuation_between_chinese_words_splits_runs() {
        assert_eq!(tokens("你好，世界"), ["世界", "你好", "好", "界"]);
        assert!(!finds("你好，世界", "好世"));
    }

    #[test]
    fn tokens_never_hold_a_space_quote_or_backslash() {
        for t in tokens("it's a \"quoted\" back\\slash 'x' 上海 👍") {
            assert!(!t.contains([' ', '\'', '"', '\\']), "{t}");
        }
    }

    #[test]
    fn a_conversation_token_cannot_come_from_any_text() {
        assert_eq!(conversation_token("d:1:2"), "$d$1$2");
        assert_eq!(conversation_token("g:15"), "$g$15");
        for text in ["$d$1$2", "$g$15 hi", "a$b", "＄d＄1＄2"] {
            let tokens = index_tokens(text).unwrap_or_default();
            assert!(tokens.split(' ').all(|t| !t.starts_with('$')), "{text}: {tokens}");
        }
    }
}
