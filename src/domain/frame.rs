//! WebSocket frames (DESIGN.md §4): one JSON object per text frame, tagged by `type`. Server frames also travel
//! over the bus between nodes, already serialised, so a node writes them to sockets without re-encoding.

use serde::{Deserialize, Serialize};

use super::model::{Conversation, FriendRequest, Group, Message, ReceiptStatus, SendMessage, UserSummary};
use super::ErrorCode;

/// A frame the server sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        user_id: i64,
        heartbeat_secs: u64,
        device_id: String,
    },
    Message {
        message: Message,
    },
    /// What the device missed, oldest first. Without `conversation_id`: the catch-up after `hello` (§4) or the
    /// tails after a `summary` (§12), `more` while further batches follow. With it: the answer to an on-demand
    /// `sync {conversation_id, after_seq}`, `more` while the asked range holds further messages.
    Sync {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
        messages: Vec<Message>,
        more: bool,
    },
    /// Summary-first catch-up (`/ws?sync=summary`, DESIGN.md §12): the conversations with something after the
    /// device's cursors, before their tails.
    Summary {
        conversations: Vec<Conversation>,
    },
    Receipt {
        conversation_id: String,
        user_id: i64,
        status: ReceiptStatus,
        seq: i64,
    },
    FriendRequest {
        request: FriendRequest,
    },
    FriendAccepted {
        friend: UserSummary,
    },
    FriendRemoved {
        user_id: i64,
    },
    GroupUpdated {
        group: Group,
    },
    GroupRemoved {
        group_id: i64,
    },
    Typing {
        conversation_id: String,
        user_id: i64,
    },
    /// To the user's devices: messages they deleted for themselves on another device (DESIGN.md §7).
    MessagesHidden {
        conversation_id: String,
        message_ids: Vec<i64>,
    },
    /// To the user's devices: their settings of a conversation changed (DESIGN.md §8).
    ConversationUpdated {
        conversation: Box<Conversation>,
    },
    /// To the user's devices: they cleared the conversation up to `seq` (DESIGN.md §8).
    ConversationCleared {
        conversation_id: String,
        seq: i64,
    },
    /// To a user's online friends: the user came online or went offline (DESIGN.md §8).
    Presence {
        user_id: i64,
        online: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The server's app-level heartbeat, every `heartbeat_secs` beside the WebSocket Ping: a browser cannot see
    /// control frames, so this is how its code hears that the server is alive. A client answers `pong`.
    Ping {},
    /// The answer to a client's `ping`.
    Pong {},
    Sent {
        client_msg_id: Option<String>,
        message: Message,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Between nodes only, never written to a socket: the user's tokens before `token_version` are revoked (a
    /// password change). Every node updates its cached token version and closes the user's sockets opened with
    /// an older token (close code 4403).
    TokenRevoked {
        user_id: i64,
        token_version: i64,
    },
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error { code, message: message.into() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encoding"}"#.into())
    }
}

/// A frame a client sends. Unknown fields are ignored; an unknown `type` is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Answered at once with `pong`: how a client tells a silent (frozen, partitioned) server from a quiet one.
    Ping {},
    /// The answer to the server's `ping` (through proxies that drop control frames it is what keeps the socket
    /// from the idle timeout).
    Pong {},
    /// Cumulative: everything in the conversation up to `seq` reached this device.
    Ack {
        conversation_id: String,
        seq: i64,
    },
    Send {
        message: SendMessage,
    },
    Typing {
        conversation_id: String,
    },
    /// Without fields: ask again for anything missed since the last ack. With `conversation_id` and `after_seq`:
    /// one page of that conversation's messages after `after_seq`, up to where this socket's tail of it began
    /// (summary-first catch-up, DESIGN.md §12) or else up to what the socket was sent.
    Sync {
        #[serde(default)]
        conversation_id: Option<String>,
        #[serde(default)]
        after_seq: Option<i64>,
    },
}

/// Why a client frame was refused: the `error` frame's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    pub code: ErrorCode,
    pub message: String,
}

impl ClientFrame {
    /// Parses one client text frame: `invalid_json` when it is not JSON, `invalid_frame` when it has no string
    /// `type` or a known type's fields are wrong, `unknown_type` for a type the server does not know.
    pub fn parse(text: &str) -> Result<ClientFrame, BadFrame> {
        const KNOWN: &[&str] = &["ping", "pong", "ack", "send", "typing", "sync"];
        let e = match serde_json::from_str(text) {
            Ok(frame) => return Ok(frame),
            Err(e) => e,
        };
        let bad = |code, message| Err(BadFrame { code, message });
        match serde_json::from_str::<serde_json::Value>(text) {
            Err(_) => bad(ErrorCode::InvalidJson, "the frame is not valid JSON".to_string()),
            Ok(v) => match v.get("type").and_then(|t| t.as_str()) {
                None => bad(ErrorCode::InvalidFrame, "the frame needs a string `type`".to_string()),
                Some(t) if !KNOWN.contains(&t) => bad(ErrorCode::UnknownType, format!("unknown frame type `{t}`")),
                Some(t) => bad(ErrorCode::InvalidFrame, format!("bad `{t}` frame: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_junk_does_not() {
        assert!(matches!(serde_json::from_str(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping {})));
        assert!(matches!(ClientFrame::parse(r#"{"type":"pong"}"#), Ok(ClientFrame::Pong {})));
        assert!(matches!(
            serde_json::from_str(r#"{"type":"sync","x":1}"#),
            Ok(ClientFrame::Sync { conversation_id: None, after_seq: None })
        ));
        assert!(matches!(
            serde_json::from_str(r#"{"type":"sync","conversation_id":"g:3","after_seq":7}"#),
            Ok(ClientFrame::Sync { conversation_id: Some(_), after_seq: Some(7) })
        ));
        assert!(matches!(
            serde_json::from_str(r#"{"type":"ack","conversation_id":"d:1:2","seq":4}"#),
            Ok(ClientFrame::Ack { seq: 4, .. })
        ));
        let send = r#"{"type":"send","message":{"to_user_id":2,"type":"text","text":"hi","client_msg_id":"c1"}}"#;
        assert!(matches!(serde_json::from_str(send), Ok(ClientFrame::Send { .. })));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"launch"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ack","seq":"x"}"#).is_err());
    }

    #[test]
    fn a_refused_frame_says_why() {
        let code = |t: &str| ClientFrame::parse(t).unwrap_err().code;
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code(r#"{"seq":1}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"launch"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"ack","conversation_id":"d:1:2","seq":"x"}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"send","message":{"to_user_id":2,"type":"text","text":5}}"#), "invalid_frame");
        assert!(ClientFrame::parse(r#"{"type":"ping"}"#).is_ok());
    }

    #[test]
    fn server_frames_are_tagged_by_type() {
        assert_eq!(ServerFrame::Pong {}.to_json(), r#"{"type":"pong"}"#);
        let e = ServerFrame::error(ErrorCode::BadRequest, "worse").to_json();
        assert_eq!(e, r#"{"type":"error","code":"bad_request","message":"worse"}"#);
    }
}
