use std::fmt;

use super::DomainError;
use crate::domain::ErrorCode;

/// A login name: 3–32 of `[A-Za-z0-9_.-]`. Uniqueness is case-insensitive, see [`Username::canonical`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let n = s.chars().count();
        if !(3..=32).contains(&n) {
            return Err(DomainError::new(ErrorCode::InvalidUsername, "username must be 3 to 32 characters"));
        }
        if !s.chars().all(is_username_char) {
            return Err(DomainError::new(
                ErrorCode::InvalidUsername,
                "username may contain only letters, digits, `_`, `.` and `-`",
            ));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The case-folded form that uniqueness and lookups use.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A user search (DESIGN.md §8): 1–32 characters without control characters, something visible. It matches a
/// username starting with it or a nickname containing it, case-insensitively (Unicode). Returns the query
/// trimmed and case-folded ([`fold`]); refusals are 422 `invalid_query`.
pub fn user_query(q: &str) -> Result<String, DomainError> {
    let n = q.chars().count();
    if n == 0 || n > 32 || q.chars().any(char::is_control) || crate::domain::text::is_blank(q) {
        return Err(DomainError::new(
            ErrorCode::InvalidQuery,
            "q must be 1 to 32 characters without control characters, something visible",
        ));
    }
    Ok(fold(q.trim()))
}

/// A name case-folded for case-insensitive matching in any script (Unicode lower case; CJK is unchanged). The
/// stored `nickname_fold` is this of the nickname.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as typed: 8–128 characters. Never logged, never stored (only its argon2id hash is).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let n = s.chars().count();
        if !(8..=128).contains(&n) {
            return Err(DomainError::new(ErrorCode::InvalidPassword, "password must be 8 to 128 characters"));
        }
        super::text::reject_nul(s, ErrorCode::InvalidPassword, "password")?;
        Ok(Self(s.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A display name, as [`super::text::display_name`] rules; refusals are 422 `invalid_nickname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        super::text::display_name(s, ErrorCode::InvalidNickname, "nickname").map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 0 male, 1 female, as in the API contract; 0 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sex(i16);

impl Sex {
    pub fn parse(v: i64) -> Result<Self, DomainError> {
        match v {
            0 | 1 => Ok(Self(v as i16)),
            _ => Err(DomainError::new(ErrorCode::InvalidSex, "sex must be 0 (male) or 1 (female)")),
        }
    }
    pub fn value(self) -> i16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("Al.i_c-e9").is_ok());
        assert!(Username::parse("ålice").is_err());
        assert_eq!(Username::parse("Alice").unwrap().canonical(), "alice");
    }

    #[test]
    fn passwords_and_nicknames_have_length_limits() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(Nickname::parse("   ").is_err());
        assert_eq!(Nickname::parse("  Bob ").unwrap().as_str(), "Bob");
        assert!(Nickname::parse(&"é".repeat(64)).is_ok());
        assert!(Nickname::parse(&"é".repeat(65)).is_err());
        assert!(Nickname::parse("a\u{0}b").is_err());
        assert!(Nickname::parse("\u{200B}\u{3000}").is_err());
        assert!(Password::parse("password\u{0}1").is_err());
        assert!(Sex::parse(2).is_err());
    }
}
