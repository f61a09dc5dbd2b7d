//! The API's error vocabulary: every `code` a client can meet, in an error reply's body or a WebSocket `error`
//! frame, as one enum. Pure names: the HTTP status of each is chosen in one table, in `crate::error`.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code (snake_case on the wire). Clients branch on these; the message that
/// goes with one is for people and may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, poem_openapi::Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    // Malformed requests (the framework's refusals and the WebSocket's frame errors).
    BadRequest,
    InvalidBody,
    InvalidParameter,
    InvalidMultipart,
    NotAWebsocket,
    InvalidJson,
    InvalidFrame,
    UnknownType,
    BinaryNotSupported,
    // Who the caller is.
    Unauthorized,
    MissingToken,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    InvalidTicket,
    InvalidCredentials,
    // What the caller may do.
    WrongPassword,
    UserMismatch,
    NotFriends,
    CannotMessageSelf,
    CannotBefriendSelf,
    NotGroupMember,
    NotGroupAdmin,
    NotGroupOwner,
    InsufficientRole,
    NotConversationMember,
    FileForbidden,
    // What does not exist (or is not visible to the caller).
    NotFound,
    UserNotFound,
    FriendNotFound,
    RequestNotFound,
    GroupNotFound,
    MemberNotFound,
    ConversationNotFound,
    FileNotFound,
    MethodNotAllowed,
    LengthRequired,
    PreconditionFailed,
    RangeNotSatisfiable,
    // Conflicts with the current state.
    UsernameTaken,
    PasswordChanged,
    AlreadyFriends,
    RequestPending,
    RequestNotPending,
    AlreadyOwner,
    CannotChangeOwner,
    OwnerMustTransfer,
    GroupFull,
    FileKindMismatch,
    SeqBeyondLast,
    // Too large, or of a type not accepted.
    PayloadTooLarge,
    FileTooLarge,
    UnsupportedContentType,
    UnsupportedMediaType,
    // Well-formed values that break a rule.
    InvalidUsername,
    InvalidPassword,
    InvalidNickname,
    InvalidSex,
    InvalidText,
    InvalidClientMsgId,
    InvalidConversationId,
    InvalidRecipient,
    InvalidMessage,
    InvalidGroupName,
    InvalidMembers,
    InvalidSeq,
    InvalidLimit,
    InvalidQuery,
    InvalidDevice,
    InvalidFile,
    FileRequired,
    MissingFile,
    EmptyFile,
    UnexpectedField,
    // The message lifecycle (DESIGN.md §7).
    Forbidden,
    RecallWindowPassed,
    EditWindowPassed,
    MessageNotFound,
    ReactionNotFound,
    AlreadyRecalled,
    NotEditable,
    TargetIsEvent,
    TooManyReactions,
    ClientMsgIdReused,
    InvalidEmoji,
    InvalidReply,
    InvalidMention,
    InvalidForward,
    VoiceTooLong,
    // People and groups (DESIGN.md §8, §9).
    Muted,
    Blocked,
    InviteInvalid,
    MuteInPast,
    InvalidAnnouncement,
    InvalidRemark,
    InvalidDraft,
    InvalidInvite,
    // Push notifications (DESIGN.md §11).
    InvalidPushEndpoint,
    InvalidPushKeys,
    // Slow down.
    RateLimited,
    UploadQuotaExceeded,
    // The node.
    Internal,
    Draining,
    AtCapacity,
    PushDisabled,
    Unavailable,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: &'static [ErrorCode] = {
        use ErrorCode::*;
        &[
            BadRequest,
            InvalidBody,
            InvalidParameter,
            InvalidMultipart,
            NotAWebsocket,
            InvalidJson,
            InvalidFrame,
            UnknownType,
            BinaryNotSupported,
            Unauthorized,
            MissingToken,
            InvalidToken,
            TokenExpired,
            TokenRevoked,
            InvalidTicket,
            InvalidCredentials,
            WrongPassword,
            UserMismatch,
            NotFriends,
            CannotMessageSelf,
            CannotBefriendSelf,
            NotGroupMember,
            NotGroupAdmin,
            NotGroupOwner,
            InsufficientRole,
            NotConversationMember,
            FileForbidden,
            NotFound,
            UserNotFound,
            FriendNotFound,
            RequestNotFound,
            GroupNotFound,
            MemberNotFound,
            ConversationNotFound,
            FileNotFound,
            MethodNotAllowed,
            LengthRequired,
            PreconditionFailed,
            RangeNotSatisfiable,
            UsernameTaken,
            PasswordChanged,
            AlreadyFriends,
            RequestPending,
            RequestNotPending,
            AlreadyOwner,
            CannotChangeOwner,
            OwnerMustTransfer,
            GroupFull,
            FileKindMismatch,
            SeqBeyondLast,
            PayloadTooLarge,
            FileTooLarge,
            UnsupportedContentType,
            UnsupportedMediaType,
            InvalidUsername,
            InvalidPassword,
            InvalidNickname,
            InvalidSex,
            InvalidText,
            InvalidClientMsgId,
            InvalidConversationId,
            InvalidRecipient,
            InvalidMessage,
            InvalidGroupName,
            InvalidMembers,
            InvalidSeq,
            InvalidLimit,
            InvalidQuery,
            InvalidDevice,
            InvalidFile,
            FileRequired,
            MissingFile,
            EmptyFile,
            UnexpectedField,
            Forbidden,
            RecallWindowPassed,
            EditWindowPassed,
            MessageNotFound,
            ReactionNotFound,
            AlreadyRecalled,
            NotEditable,
            TargetIsEvent,
            TooManyReactions,
            ClientMsgIdReused,
            InvalidEmoji,
            InvalidReply,
            InvalidMention,
            InvalidForward,
            VoiceTooLong,
            Muted,
            Blocked,
            InviteInvalid,
            MuteInPast,
            InvalidAnnouncement,
            InvalidRemark,
            InvalidDraft,
            InvalidInvite,
            InvalidPushEndpoint,
            InvalidPushKeys,
            RateLimited,
            UploadQuotaExceeded,
            Internal,
            Draining,
            AtCapacity,
            PushDisabled,
            Unavailable,
        ]
    };

    /// The code as it appears on the wire, e.g. `username_taken`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            InvalidBody => "invalid_body",
            InvalidParameter => "invalid_parameter",
            InvalidMultipart => "invalid_multipart",
            NotAWebsocket => "not_a_websocket",
            InvalidJson => "invalid_json",
            InvalidFrame => "invalid_frame",
            UnknownType => "unknown_type",
            BinaryNotSupported => "binary_not_supported",
            Unauthorized => "unauthorized",
            MissingToken => "missing_token",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            TokenRevoked => "token_revoked",
            InvalidTicket => "invalid_ticket",
            InvalidCredentials => "invalid_credentials",
            WrongPassword => "wrong_password",
            UserMismatch => "user_mismatch",
            NotFriends => "not_friends",
            CannotMessageSelf => "cannot_message_self",
            CannotBefriendSelf => "cannot_befriend_self",
            NotGroupMember => "not_group_member",
            NotGroupAdmin => "not_group_admin",
            NotGroupOwner => "not_group_owner",
            InsufficientRole => "insufficient_role",
            NotConversationMember => "not_conversation_member",
            FileForbidden => "file_forbidden",
            NotFound => "not_found",
            UserNotFound => "user_not_found",
            FriendNotFound => "friend_not_found",
            RequestNotFound => "request_not_found",
            GroupNotFound => "group_not_found",
            MemberNotFound => "member_not_found",
            ConversationNotFound => "conversation_not_found",
            FileNotFound => "file_not_found",
            MethodNotAllowed => "method_not_allowed",
            LengthRequired => "length_required",
            PreconditionFailed => "precondition_failed",
            RangeNotSatisfiable => "range_not_satisfiable",
            UsernameTaken => "username_taken",
            PasswordChanged => "password_changed",
            AlreadyFriends => "already_friends",
            RequestPending => "request_pending",
            RequestNotPending => "request_not_pending",
            AlreadyOwner => "already_owner",
            CannotChangeOwner => "cannot_change_owner",
            OwnerMustTransfer => "owner_must_transfer",
            GroupFull => "group_full",
            FileKindMismatch => "file_kind_mismatch",
            SeqBeyondLast => "seq_beyond_last",
            PayloadTooLarge => "payload_too_large",
            FileTooLarge => "file_too_large",
            UnsupportedContentType => "unsupported_content_type",
            UnsupportedMediaType => "unsupported_media_type",
            InvalidUsername => "invalid_username",
            InvalidPassword => "invalid_password",
            InvalidNickname => "invalid_nickname",
            InvalidSex => "invalid_sex",
            InvalidText => "invalid_text",
            InvalidClientMsgId => "invalid_client_msg_id",
            InvalidConversationId => "invalid_conversation_id",
            InvalidRecipient => "invalid_recipient",
            InvalidMessage => "invalid_message",
            InvalidGroupName => "invalid_group_name",
            InvalidMembers => "invalid_members",
            InvalidSeq => "invalid_seq",
            InvalidLimit => "invalid_limit",
            InvalidQuery => "invalid_query",
            InvalidDevice => "invalid_device",
            InvalidFile => "invalid_file",
            FileRequired => "file_required",
            MissingFile => "missing_file",
            EmptyFile => "empty_file",
            UnexpectedField => "unexpected_field",
            Forbidden => "forbidden",
            RecallWindowPassed => "recall_window_passed",
            EditWindowPassed => "edit_window_passed",
            MessageNotFound => "message_not_found",
            ReactionNotFound => "reaction_not_found",
            AlreadyRecalled => "already_recalled",
            NotEditable => "not_editable",
            TargetIsEvent => "target_is_event",
            TooManyReactions => "too_many_reactions",
            ClientMsgIdReused => "client_msg_id_reused",
            InvalidEmoji => "invalid_emoji",
            InvalidReply => "invalid_reply",
            InvalidMention => "invalid_mention",
            InvalidForward => "invalid_forward",
            VoiceTooLong => "voice_too_long",
            Muted => "muted",
            Blocked => "blocked",
            InviteInvalid => "invite_invalid",
            MuteInPast => "mute_in_past",
            InvalidAnnouncement => "invalid_announcement",
            InvalidRemark => "invalid_remark",
            InvalidDraft => "invalid_draft",
            InvalidInvite => "invalid_invite",
            InvalidPushEndpoint => "invalid_push_endpoint",
            InvalidPushKeys => "invalid_push_keys",
            RateLimited => "rate_limited",
            UploadQuotaExceeded => "upload_quota_exceeded",
            Internal => "internal",
            Draining => "draining",
            AtCapacity => "at_capacity",
            PushDisabled => "push_disabled",
            Unavailable => "unavailable",
        }
    }
}

/// Compares with the wire name, so that a test reads `assert_eq!(code, "username_taken")`.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that broke a domain rule, with the code the API answers it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    pub code: ErrorCode,
    pub message: String,
}

impl DomainError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_named_as_serde_names_it() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code), "{code:?} listed twice");
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str(), "{code:?}");
            let back: ErrorCode = serde_json::from_value(code.as_str().into()).unwrap();
            assert_eq!(back, *code);
        }
        assert_eq!(seen.len(), ErrorCode::ALL.len());
    }
}
