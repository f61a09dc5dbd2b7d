//! The rules every free-text field of the API shares, and the newtypes of message text and `client_msg_id`.
//!
//! Two rules hold for every string a client sends, whatever the field: it contains no U+0000 (Postgres `text`
//! cannot store it, and SQLite would store what Postgres refuses, so both backends refuse it at the edge), and a
//! field that must say something is not *blank*: empty, or only characters that show nothing ([`is_invisible`]).

use super::DomainError;
use crate::domain::ErrorCode;

/// Longest text message (and caption), in Unicode scalar values.
pub const MAX_TEXT: usize = 4000;
/// Longest `client_msg_id`, in Unicode scalar values (DESIGN.md §2).
pub const MAX_CLIENT_MSG_ID: usize = 64;

/// Characters that show nothing on their own: Unicode `White_Space` (spaces, tabs, newlines, U+3000 …), every
/// `Default_Ignorable_Code_Point` (Unicode's "normally not displayed": zero-width space, joiners and direction
/// marks, the Arabic letter mark, bidi embeddings and isolates, word joiner and invisible operators, variation
/// selectors, the byte-order mark, the Hangul and Khmer fillers, shorthand format controls, musical symbol
/// formats; DerivedCoreProperties.txt) in the Basic Multilingual Plane, the interlinear annotation controls
/// U+FFF9–U+FFFB, and the blank Braille pattern U+2800 — the characters people paste to get past a "not empty"
/// check. The few default-ignorable code points beyond the BMP (tag characters, Duployan and musical format
/// controls) are not counted: the OpenAPI document's pattern, which must state this rule exactly, cannot name
/// them in a form every regex engine reads.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
        )
}

/// True when `s` is empty or shows nothing ([`is_invisible`] throughout).
pub fn is_blank(s: &str) -> bool {
    s.chars().all(is_invisible)
}

/// Refuses U+0000 in any string field, with the field's own error code.
pub fn reject_nul(s: &str, code: ErrorCode, field: &str) -> Result<(), DomainError> {
    if s.contains('\0') {
        return Err(DomainError::new(code, format!("{field} may not contain U+0000")));
    }
    Ok(())
}

/// Most characters in a display name (a nickname or a group name), counted as sent.
pub const MAX_NAME: usize = 64;

/// A display name — a nickname or a group name: 1–[`MAX_NAME`] characters as sent, no control character
/// anywhere (checked before trimming, so a trailing U+0085 or tab is refused as the OpenAPI pattern refuses
/// it, not silently trimmed away), something visible. Returns the name trimmed of surrounding white space.
pub fn display_name(s: &str, code: ErrorCode, what: &str) -> Result<String, DomainError> {
    if s.chars().count() > MAX_NAME || s.is_empty() {
        return Err(DomainError::new(code, format!("{what} must be 1 to {MAX_NAME} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(DomainError::new(code, format!("{what} may not contain control characters")));
    }
    if is_blank(s) {
        return Err(DomainError::new(code, format!("{what} must contain something visible")));
    }
    Ok(s.trim().to_string())
}

/// Most characters in a friend request's note.
pub const MAX_NOTE: usize = 200;

/// A friend request's note: up to [`MAX_NOTE`] characters without U+0000 (which no database stores); empty is
/// no note. Refusals are 422 `invalid_message`.
pub fn friend_note(s: &str) -> Result<&str, DomainError> {
    if s.chars().count() > MAX_NOTE {
        return Err(DomainError::new(
            ErrorCode::InvalidMessage,
            format!("a friend request note is at most {MAX_NOTE} characters"),
        ));
    }
    reject_nul(s, ErrorCode::InvalidMessage, "a friend request note")?;
    Ok(s)
}

/// Longest group announcement, in Unicode scalar values (DESIGN.md §9).
pub const MAX_ANNOUNCEMENT: usize = 2000;

/// A group announcement: up to [`MAX_ANNOUNCEMENT`] characters, no control characters but tab and line breaks.
/// Empty or blank clears it (returned as ""). Refusals are 422 `invalid_announcement`.
pub fn announcement(s: &str) -> Result<String, DomainError> {
    if s.chars().count() > MAX_ANNOUNCEMENT || s.chars().any(is_refused_control) {
        return Err(DomainError::new(
            ErrorCode::InvalidAnnouncement,
            "an announcement is at most 2000 characters, without control characters but tab and line breaks",
        ));
    }
    Ok(if is_blank(s) { String::new() } else { s.trim_end().to_string() })
}

/// The name a user gives a friend (DESIGN.md §8): up to [`MAX_NAME`] characters without control characters,
/// trimmed; empty or blank removes it (none). Refusals are 422 `invalid_remark`.
pub fn remark(s: &str) -> Result<Option<String>, DomainError> {
    if s.chars().count() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(DomainError::new(
            ErrorCode::InvalidRemark,
            format!("a remark is at most {MAX_NAME} characters without control characters"),
        ));
    }
    Ok(if is_blank(s) { None } else { Some(s.trim().to_string()) })
}

/// A conversation's unsent text (DESIGN.md §8): up to [`MAX_TEXT`] characters, no control characters but tab
/// and line breaks, kept as typed; empty or blank removes it (none). Refusals are 422 `invalid_draft`.
pub fn draft(s: &str) -> Result<Option<String>, DomainError> {
    if s.chars().count() > MAX_TEXT || s.chars().any(is_refused_control) {
        return Err(DomainError::new(
            ErrorCode::InvalidDraft,
            "a draft is at most 4000 characters, without control characters but tab and line breaks",
        ));
    }
    Ok(if is_blank(s) { None } else { Some(s.to_string()) })
}

/// Control characters a message may carry: tab, line feed and carriage return. Every other C0/C1 control is
/// refused (they render as nothing or as garbage, and U+0000 cannot be stored).
fn is_refused_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// The text of a message or caption: 1–[`MAX_TEXT`] characters, not blank, no control characters other than
/// tab and line breaks. Refusals are 422 `invalid_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.chars().count() > MAX_TEXT {
            return Err(DomainError::new(ErrorCode::InvalidText, "text is at most 4000 characters"));
        }
        if s.chars().any(is_refused_control) {
            return Err(DomainError::new(
                ErrorCode::InvalidText,
                "text may not contain control characters other than tab and line breaks",
            ));
        }
        if is_blank(s) {
            return Err(DomainError::new(ErrorCode::InvalidText, "text must contain something visible"));
        }
        Ok(Self(s.to_string()))
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A sender's idempotency key (DESIGN.md §2): 1–[`MAX_CLIENT_MSG_ID`] characters without control characters.
/// Refusals are 422 `invalid_client_msg_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let n = s.chars().count();
        if !(1..=MAX_CLIENT_MSG_ID).contains(&n) || s.chars().any(char::is_control) {
            return Err(DomainError::new(
                ErrorCode::InvalidClientMsgId,
                "client_msg_id must be 1 to 64 characters without control characters",
            ));
        }
        Ok(Self(s.to_string()))
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_means_nothing_visible_whatever_the_invisible_characters() {
        for blank in [
            "",
            " ",
            "\n\t\r",
            "\u{200B}",
            "\u{200D}",
            "\u{200F}",
            "\u{FEFF}",
            "\u{3000}",
            " \u{200B}\u{3000}\n",
            "\u{061C}",
            "\u{FE0F}",
            "\u{2800}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
            assert_eq!(MessageText::parse(blank).unwrap_err().code, "invalid_text", "{blank:?}");
        }
        for visible in ["a", " 你好 ", "\u{200B}x", "👍", "line one\nline two"] {
            assert!(!is_blank(visible), "{visible:?}");
            assert!(MessageText::parse(visible).is_ok(), "{visible:?}");
        }
    }

    #[test]
    fn message_text_refuses_nul_and_controls_but_keeps_tabs_and_line_breaks() {
        assert_eq!(MessageText::parse("a\0b").unwrap_err().code, "invalid_text");
        assert_eq!(MessageText::parse("a\u{7}b").unwrap_err().code, "invalid_text");
        assert!(MessageText::parse("a\tb\r\nc").is_ok());
        assert!(MessageText::parse(&"字".repeat(MAX_TEXT)).is_ok());
        assert!(MessageText::parse(&"字".repeat(MAX_TEXT + 1)).is_err());
    }

    #[test]
    fn client_msg_ids_are_short_and_free_of_controls() {
        assert!(ClientMsgId::parse("c-1").is_ok());
        assert!(ClientMsgId::parse(&"é".repeat(64)).is_ok());
        for bad in ["", "a\0", "a\nb"] {
            assert_eq!(ClientMsgId::parse(bad).unwrap_err().code, "invalid_client_msg_id", "{bad:?}");
        }
        assert!(ClientMsgId::parse(&"x".repeat(65)).is_err());
        assert_eq!(reject_nul("x\0", ErrorCode::InvalidText, "x").unwrap_err().code, "invalid_text");
    }
}
