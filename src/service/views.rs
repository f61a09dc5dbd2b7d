//! Turning stored records into the objects of the API contract.

use crate::domain::model::{
    FriendRequest, FriendRequestStatus, Message, MessageExtras, MessageType, User, UserSummary,
};
use crate::store::{FriendRequestRecord, MessageRecord, UserRecord};

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        let avatar_url = u.avatar_key.as_deref().map(avatar_url);
        User {
            id: u.id,
            username: u.username,
            nickname: u.nickname,
            sex: u.sex,
            created_at: u.created_at,
            avatar_url,
            push_previews: u.push_previews,
        }
    }
}

impl From<UserRecord> for UserSummary {
    fn from(u: UserRecord) -> Self {
        let avatar_url = u.avatar_key.as_deref().map(avatar_url);
        UserSummary { id: u.id, username: u.username, nickname: u.nickname, sex: u.sex, avatar_url, remark: None }
    }
}

/// Where an avatar is served (`GET /api/avatars/{name}`), from its key in the media store (`avatars/{name}`).
pub fn avatar_url(key: &str) -> String {
    format!("/api/{key}")
}

/// Summaries of users with the remarks the viewer gave them (`(user id, remark)`), in the users' order.
pub fn summaries(users: Vec<UserRecord>, remarks: Vec<(i64, String)>) -> Vec<UserSummary> {
    let remarks: std::collections::HashMap<i64, String> = remarks.into_iter().collect();
    users
        .into_iter()
        .map(|u| {
            let remark = remarks.get(&u.id).cloned();
            UserSummary { remark, ..UserSummary::from(u) }
        })
        .collect()
}

pub fn friend_request(r: FriendRequestRecord, from_user: UserSummary, to_user: UserSummary) -> FriendRequest {
    FriendRequest {
        id: r.id,
        from_user,
        to_user,
        message: r.message,
        status: FriendRequestStatus::parse(&r.status),
        created_at: r.created_at,
    }
}

/// A stored message as the API gives it, without what takes other queries (file, reactions, quote).
pub fn message(r: MessageRecord) -> Message {
    let extras = MessageExtras::from_meta(r.meta.as_deref());
    Message {
        id: r.id,
        conversation_id: r.conversation_id,
        seq: r.seq,
        from_user_id: r.from_user_id,
        to_user_id: r.to_user_id,
        group_id: r.group_id,
        kind: MessageType::parse(&r.kind),
        text: r.body,
        file: None,
        client_msg_id: r.client_msg_id,
        created_at: r.created_at,
        target_id: r.target_id,
        reply_to: None,
        mentions: extras.mentions,
        edited_at: r.edited_at,
        recalled_at: r.recalled_at,
        recalled_by: r.recalled_by,
        reactions: Vec::new(),
        reaction: extras.reaction,
        forwarded: extras.forwarded,
        items: extras.items,
        system: extras.system,
    }
}
