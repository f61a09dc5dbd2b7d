//! Request field types whose OpenAPI schema states the limits the server enforces, and whose JSON parsing takes
//! only the JSON type the schema names.
//!
//! poem-openapi's `String` accepts a JSON number or boolean and turns it into text (`{"username": 12345}` would
//! register `12345`); [`Str`] accepts only a JSON string (anything else is 400 `invalid_body`). Its schema
//! carries the field's length limits and pattern, so that a request the schema allows is never refused for a
//! limit the schema hides, while the limits themselves are enforced by the domain newtypes with their own 422
//! codes (`invalid_username`, `invalid_text`, …), one rule in one place.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde_json::Value;

/// The documented limits of one kind of string field (lengths count Unicode scalar values, as JSON Schema does).
pub trait StrRule: Send + Sync + 'static {
    const MIN_LENGTH: Option<usize> = None;
    const MAX_LENGTH: Option<usize> = None;
    /// An ECMA-262 regular expression the whole value matches (anchored with `^…$`).
    fn pattern() -> Option<String> {
        None
    }
}

/// A string field that must be a JSON string, documented with the limits of `R`.
pub struct Str<R>(String, PhantomData<R>);

impl<R> Str<R> {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into(), PhantomData)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<R> std::ops::Deref for Str<R> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<R> Clone for Str<R> {
    fn clone(&self) -> Self {
        Self::new(self.0.clone())
    }
}

impl<R> std::fmt::Debug for Str<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<R> PartialEq for Str<R> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<R: StrRule> Type for Str<R> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        format!("string({:?},{:?},{:?})", R::MIN_LENGTH, R::MAX_LENGTH, R::pattern()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.min_length = R::MIN_LENGTH;
        schema.max_length = R::MAX_LENGTH;
        schema.pattern = R::pattern();
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<R: StrRule> ParseFromJSON for Str<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Ok(Self::new(s)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<R: StrRule> ParseFromParameter for Str<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self::new(value))
    }
}

impl<R: StrRule> ToJSON for Str<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl<R> serde::Serialize for Str<R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, R> serde::Deserialize<'de> for Str<R> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// An integer field whose schema states the range `MIN..=MAX` the server enforces (the domain rule refuses a value
/// outside it with its own 422 code), and whose JSON parsing takes only a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> Type for Int<MIN, MAX> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        format!("integer({MIN},{MAX})").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new_with_format("integer", "int64");
        schema.minimum = Some(MIN as f64);
        schema.maximum = Some(MAX as f64);
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<const MIN: i64, const MAX: i64> ParseFromJSON for Int<MIN, MAX> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Number(n) => n.as_i64().map(Self).ok_or_else(|| ParseError::custom("not a 64-bit integer")),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<const MIN: i64, const MAX: i64> ParseFromParameter for Int<MIN, MAX> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        value.parse().map(Self).map_err(|_| ParseError::custom("not a 64-bit integer"))
    }
}

impl<const MIN: i64, const MAX: i64> ToJSON for Int<MIN, MAX> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0))
    }
}

/// Control characters (Unicode `Cc`) as an ECMA-262 class body.
pub const CONTROLS: &str = r"\u0000-\u001F\u007F-\u009F";
/// The same less tab, line feed and carriage return, which a message may carry.
pub const MESSAGE_CONTROLS: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";
/// [`super::text::is_invisible`] as an ECMA-262 class body (Unicode `White_Space` spelled out, since `\s`
/// differs between regex engines; all of it in the Basic Multilingual Plane, which `\uXXXX` can name).
const INVISIBLE: &str = concat!(
    r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000",
    r"\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F",
    r"\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFFB"
);

/// A pattern for text free of `controls` (a class body) that shows something: `^[^c]*[^c invisible][^c]*$`.
pub fn visible_without(controls: &str) -> String {
    format!("^[^{controls}]*[^{controls}{INVISIBLE}][^{controls}]*$")
}

/// A pattern for text free of `controls` (a class body).
pub fn without(controls: &str) -> String {
    format!("^[^{controls}]*$")
}

/// Reads a comma-separated list of 1 to 100 positive ids (as [`fields::IdList`] documents); refusals are 422
/// `invalid_parameter`.
pub fn parse_id_list(s: &str) -> Result<Vec<i64>, super::DomainError> {
    let bad = || super::DomainError::new(super::ErrorCode::InvalidParameter, "give 1 to 100 comma-separated ids");
    let ids: Vec<i64> =
        s.split(',').map(|p| p.parse::<i64>().ok().filter(|v| *v > 0)).collect::<Option<_>>().ok_or_else(bad)?;
    if ids.is_empty() || ids.len() > 100 {
        return Err(bad());
    }
    Ok(ids)
}

/// The string fields of the API, each with the limits its domain rule enforces.
pub mod fields {
    use super::{visible_without, without, StrRule, CONTROLS, MESSAGE_CONTROLS};

    /// `Username`: 3–32 of `[A-Za-z0-9_.-]`.
    pub struct Username;
    impl StrRule for Username {
        const MIN_LENGTH: Option<usize> = Some(3);
        const MAX_LENGTH: Option<usize> = Some(32);
        fn pattern() -> Option<String> {
            Some("^[A-Za-z0-9_.-]*$".into())
        }
    }

    /// A username as typed at login: anything without U+0000 (an unknown name is 401, like a wrong password).
    pub struct LoginName;
    impl StrRule for LoginName {
        fn pattern() -> Option<String> {
            Some(without(r"\u0000"))
        }
    }

    /// `Password`: 8–128 characters without U+0000.
    pub struct Password;
    impl StrRule for Password {
        const MIN_LENGTH: Option<usize> = Some(8);
        const MAX_LENGTH: Option<usize> = Some(128);
        fn pattern() -> Option<String> {
            Some(without(r"\u0000"))
        }
    }

    /// A password as typed to prove who you are (login, password change): anything without U+0000.
    pub struct PasswordAttempt;
    impl StrRule for PasswordAttempt {
        fn pattern() -> Option<String> {
            Some(without(r"\u0000"))
        }
    }

    /// `Nickname` and group names: 1–64 characters, no control characters, something visible.
    pub struct Name;
    impl StrRule for Name {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_NAME);
        fn pattern() -> Option<String> {
            Some(visible_without(CONTROLS))
        }
    }

    /// A friend request's note: up to 200 characters without U+0000.
    pub struct Note;
    impl StrRule for Note {
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_NOTE);
        fn pattern() -> Option<String> {
            Some(without(r"\u0000"))
        }
    }

    /// `MessageText`: 1–4000 characters, something visible, no controls but tab and line breaks.
    pub struct Text;
    impl StrRule for Text {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_TEXT);
        fn pattern() -> Option<String> {
            Some(visible_without(MESSAGE_CONTROLS))
        }
    }

    /// `ClientMsgId`: 1–64 characters without control characters.
    pub struct ClientMsgId;
    impl StrRule for ClientMsgId {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_CLIENT_MSG_ID);
        fn pattern() -> Option<String> {
            Some(without(CONTROLS))
        }
    }

    /// A reaction: one emoji, at most 16 characters (`service::messaging::lifecycle::parse_emoji`).
    pub struct Emoji;
    impl StrRule for Emoji {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(16);
    }

    /// A user search (`crate::domain::user_query`): 1–32 characters, no controls, something visible.
    pub struct UserQuery;
    impl StrRule for UserQuery {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(32);
        fn pattern() -> Option<String> {
            Some(visible_without(CONTROLS))
        }
    }

    /// A message search (`crate::domain::search::message_query`): 1–100 characters without control characters,
    /// something visible.
    pub struct MessageQuery;
    impl StrRule for MessageQuery {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(crate::domain::search::MAX_QUERY_CHARS);
        fn pattern() -> Option<String> {
            Some(visible_without(CONTROLS))
        }
    }

    /// A group announcement (`crate::domain::text::announcement`): up to 2,000 characters, no controls but tab
    /// and line breaks; empty clears it.
    pub struct Announcement;
    impl StrRule for Announcement {
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_ANNOUNCEMENT);
        fn pattern() -> Option<String> {
            Some(without(MESSAGE_CONTROLS))
        }
    }

    /// A device id (`crate::domain::push::valid_device_id`): 1–64 of `[A-Za-z0-9._-]`.
    pub struct DeviceId;
    impl StrRule for DeviceId {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(64);
        fn pattern() -> Option<String> {
            Some("^[A-Za-z0-9._-]*$".into())
        }
    }

    /// A push endpoint (`crate::domain::push::endpoint`): an `https` URL of up to 2,048 printable ASCII
    /// characters (`http` only to loopback, where the node allows it for development).
    pub struct PushEndpoint;
    impl StrRule for PushEndpoint {
        const MIN_LENGTH: Option<usize> = Some(9);
        const MAX_LENGTH: Option<usize> = Some(crate::domain::push::MAX_ENDPOINT_BYTES);
        fn pattern() -> Option<String> {
            Some("^https?://[!-~]*$".into())
        }
    }

    /// A push subscription key (`crate::domain::push::keys`): base64url, padding allowed.
    pub struct PushKey;
    impl StrRule for PushKey {
        const MIN_LENGTH: Option<usize> = Some(1);
        const MAX_LENGTH: Option<usize> = Some(100);
        fn pattern() -> Option<String> {
            Some("^[A-Za-z0-9_-]*={0,2}$".into())
        }
    }

    /// A remark on a friend (`crate::domain::text::remark`): up to 64 characters without controls; empty (or
    /// blank) removes it.
    pub struct Remark;
    impl StrRule for Remark {
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_NAME);
        fn pattern() -> Option<String> {
            Some(without(CONTROLS))
        }
    }

    /// A conversation's draft (`crate::domain::text::draft`): up to 4,000 characters, no controls but tab and
    /// line breaks; empty (or blank) removes it.
    pub struct Draft;
    impl StrRule for Draft {
        const MAX_LENGTH: Option<usize> = Some(crate::domain::text::MAX_TEXT);
        fn pattern() -> Option<String> {
            Some(without(MESSAGE_CONTROLS))
        }
    }

    /// A comma-separated list of 1 to 100 ids ([`super::parse_id_list`]).
    pub struct IdList;
    impl StrRule for IdList {
        fn pattern() -> Option<String> {
            Some("^[1-9][0-9]{0,15}(,[1-9][0-9]{0,15}){0,99}$".into())
        }
    }

    /// `ConversationId`: `d:<smaller user id>:<larger user id>` or `g:<group id>`.
    pub struct ConversationId;
    impl StrRule for ConversationId {
        fn pattern() -> Option<String> {
            Some("^(d:[1-9][0-9]{0,15}:[1-9][0-9]{0,15}|g:[1-9][0-9]{0,15})$".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Short;
    impl StrRule for Short {
        const MAX_LENGTH: Option<usize> = Some(3);
    }

    #[test]
    fn a_str_field_takes_only_a_json_string() {
        assert_eq!(Str::<Short>::parse_from_json(Some(Value::from("abc"))).unwrap().as_str(), "abc");
        for wrong in [Value::from(12345), Value::from(true), Value::Null, serde_json::json!(["a"])] {
            assert!(Str::<Short>::parse_from_json(Some(wrong.clone())).is_err(), "{wrong}");
        }
        assert!(serde_json::from_str::<Str<Short>>("12345").is_err());
    }

    #[test]
    fn the_schema_states_the_limits() {
        let MetaSchemaRef::Inline(schema) = Str::<Short>::schema_ref() else { panic!("inline schema") };
        assert_eq!((schema.ty, schema.max_length, schema.min_length), ("string", Some(3), None));
        assert_eq!(visible_without("a"), format!("^[^a]*[^a{INVISIBLE}][^a]*$"));
    }

    /// What the document says `R` allows: its lengths (in Unicode scalar values) and its pattern.
    fn schema_allows<R: StrRule>(pattern: Option<&regex::Regex>, s: &str) -> bool {
        let n = s.chars().count();
        R::MIN_LENGTH.is_none_or(|m| n >= m)
            && R::MAX_LENGTH.is_none_or(|m| n <= m)
            && pattern.is_none_or(|p| p.is_match(s))
    }

    /// Strings over characters where rules go wrong — every kind of control, white space and invisible
    /// character, CJK and astral letters — of short lengths and of lengths around `limit`.
    fn hostile_strings(limit: usize) -> Vec<String> {
        use rand::{Rng, SeedableRng};
        const ALPHABET: &[char] = &[
            'a',
            'Z',
            '0',
            '_',
            '.',
            '-',
            ' ',
            '\t',
            '\n',
            '\r',
            '\u{0}',
            '\u{1}',
            '\u{1f}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{a0}',
            '\u{ad}',
            '\u{200b}',
            '\u{200d}',
            '\u{200f}',
            '\u{2028}',
            '\u{3000}',
            '\u{feff}',
            '\u{2800}',
            '\u{3164}',
            '\u{fff0}',
            '中',
            '文',
            'é',
            '😀',
            '\u{10ffff}',
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let mut out = vec![String::new()];
        for _ in 0..4000 {
            let len = if rng.gen_bool(0.8) { rng.gen_range(1..6) } else { limit + rng.gen_range(0..3) - 1 };
            let filler = ['a', '中', '😀', ' '][rng.gen_range(0..4)];
            let mut s: Vec<char> = (0..len).map(|_| filler).collect();
            for _ in 0..rng.gen_range(1..4).min(len) {
                let at = rng.gen_range(0..len);
                s[at] = ALPHABET[rng.gen_range(0..ALPHABET.len())];
            }
            out.push(s.into_iter().collect());
        }
        out
    }

    fn assert_agrees<R: StrRule>(field: &str, limit: usize, rule: impl Fn(&str) -> bool) {
        let pattern = R::pattern().map(|p| regex::Regex::new(&p).expect("the pattern is a valid regex"));
        for s in hostile_strings(limit) {
            assert_eq!(
                schema_allows::<R>(pattern.as_ref(), &s),
                rule(&s),
                "{field}: the schema and the domain rule disagree on {s:?}"
            );
        }
    }

    /// Schemathesis found a nickname with a trailing U+0085 accepted (trimmed away) though the pattern refuses
    /// it: every field's documented limits must be exactly the rule its domain type enforces, both ways.
    #[test]
    fn every_string_field_schema_allows_exactly_what_its_domain_rule_allows() {
        use crate::domain::{text, ClientMsgId, ErrorCode, MessageText, Password, Username};
        assert_agrees::<fields::Username>("username", 32, |s| Username::parse(s).is_ok());
        assert_agrees::<fields::LoginName>("login username", 32, |s| {
            text::reject_nul(s, ErrorCode::InvalidUsername, "username").is_ok()
        });
        assert_agrees::<fields::Password>("password", 128, |s| Password::parse(s).is_ok());
        assert_agrees::<fields::PasswordAttempt>("password attempt", 128, |s| {
            text::reject_nul(s, ErrorCode::InvalidPassword, "password").is_ok()
        });
        assert_agrees::<fields::Name>("name", text::MAX_NAME, |s| {
            text::display_name(s, ErrorCode::InvalidNickname, "name").is_ok()
        });
        assert_agrees::<fields::Note>("note", text::MAX_NOTE, |s| text::friend_note(s).is_ok());
        assert_agrees::<fields::Text>("text", text::MAX_TEXT, |s| MessageText::parse(s).is_ok());
        assert_agrees::<fields::ClientMsgId>("client_msg_id", text::MAX_CLIENT_MSG_ID, |s| {
            ClientMsgId::parse(s).is_ok()
        });
        assert_agrees::<fields::UserQuery>("user query", 32, |s| crate::domain::user_query(s).is_ok());
        assert_agrees::<fields::MessageQuery>("message query", crate::domain::search::MAX_QUERY_CHARS, |s| {
            crate::domain::search::message_query(s).is_ok()
        });
        assert_agrees::<fields::Announcement>("announcement", text::MAX_ANNOUNCEMENT, |s| {
            text::announcement(s).is_ok()
        });
        assert_agrees::<fields::Remark>("remark", text::MAX_NAME, |s| text::remark(s).is_ok());
        assert_agrees::<fields::Draft>("draft", text::MAX_TEXT, |s| text::draft(s).is_ok());
        assert_agrees::<fields::DeviceId>("device id", 64, crate::domain::push::valid_device_id);
    }
}
