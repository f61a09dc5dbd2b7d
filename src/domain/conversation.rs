use std::fmt;
use std::str::FromStr;

use super::DomainError;
use crate::domain::ErrorCode;

/// Identifies a conversation: `d:<smaller user id>:<larger user id>` for a direct chat, `g:<group id>` for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversationId {
    Direct { low: i64, high: i64 },
    Group(i64),
}

impl ConversationId {
    /// The direct conversation of two distinct users, whichever order they are given in.
    pub fn direct(a: i64, b: i64) -> Self {
        ConversationId::Direct { low: a.min(b), high: a.max(b) }
    }
    pub fn group(id: i64) -> Self {
        ConversationId::Group(id)
    }
    pub fn is_group(&self) -> bool {
        matches!(self, ConversationId::Group(_))
    }
    /// For a direct conversation that `me` takes part in, the other user.
    pub fn peer_of(&self, me: i64) -> Option<i64> {
        match *self {
            ConversationId::Direct { low, high } if low == me => Some(high),
            ConversationId::Direct { low, high } if high == me => Some(low),
            _ => None,
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationId::Direct { low, high } => write!(f, "d:{low}:{high}"),
            ConversationId::Group(g) => write!(f, "g:{g}"),
        }
    }
}

impl FromStr for ConversationId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let bad = || {
            DomainError::new(ErrorCode::InvalidConversationId, "conversation_id must look like d:<id>:<id> or g:<id>")
        };
        // Well-formed, but no conversation is called that: the smaller id comes first, and ids stay below 2^53.
        let none = || DomainError::new(ErrorCode::ConversationNotFound, "no conversation has this id");
        let id = |p: &str| -> Result<i64, DomainError> {
            if p.is_empty() || p.len() > 16 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<i64>().ok().filter(|v| *v <= super::MAX_ID).ok_or_else(none)
        };
        let mut parts = s.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("d"), Some(a), Some(b), None) => {
                let (a, b) = (id(a)?, id(b)?);
                if a >= b {
                    return Err(none());
                }
                Ok(ConversationId::Direct { low: a, high: b })
            }
            (Some("g"), Some(g), None, None) => Ok(ConversationId::Group(id(g)?)),
            _ => Err(bad()),
        }
    }
}

/// Where a user's side of a conversation stands: its last seq, and the first seq the user may see after
/// (`visible_from_seq`: a group member sees messages after the seq it joined at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationHead {
    pub conversation_id: String,
    pub last_seq: i64,
    pub visible_from_seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_round_trip_and_reject_junk() {
        assert_eq!(ConversationId::direct(9, 3).to_string(), "d:3:9");
        assert_eq!("d:3:9".parse::<ConversationId>().unwrap(), ConversationId::direct(3, 9));
        assert_eq!("g:12".parse::<ConversationId>().unwrap(), ConversationId::Group(12));
        for bad in ["", "g:", "g:-1", "g:0", "x:1", "d:1", "g:1:2", "g:99999999999999999999", "d:+1:2", "d:01:2"] {
            assert_eq!(bad.parse::<ConversationId>().unwrap_err().code, "invalid_conversation_id", "{bad}");
        }
        // Well-formed (the OpenAPI pattern allows them) but naming no conversation that can exist.
        for none in ["d:9:3", "d:3:3", "g:9999999999999999"] {
            let e = none.parse::<ConversationId>().unwrap_err();
            assert!(e.code == "conversation_not_found", "{none}");
        }
        assert_eq!(ConversationId::direct(3, 9).peer_of(3), Some(9));
        assert_eq!(ConversationId::direct(3, 9).peer_of(4), None);
    }
}
