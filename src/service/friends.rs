//! Friends: requests, acceptance, rejection, the friend list, removal, and the events each one sends.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::frame::ServerFrame;
use crate::domain::model::{FriendRequest, UserSummary};
use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::service::events::Events;
use crate::service::views;
use crate::store::{FriendRequestRecord, FriendStore, StoreError, UserStore};

fn blocked() -> AppError {
    AppError::new(ErrorCode::Blocked, "one of you blocked the other")
}

/// Most requests a listing returns.
const LIST_LIMIT: i64 = 200;

#[derive(Clone)]
pub struct Friends {
    users: Arc<dyn UserStore>,
    friends: Arc<dyn FriendStore>,
    events: Events,
}

impl Friends {
    pub fn new(users: Arc<dyn UserStore>, friends: Arc<dyn FriendStore>, events: Events) -> Self {
        Self { users, friends, events }
    }

    async fn summary(&self, id: i64) -> AppResult<UserSummary> {
        self.users
            .user_by_id(id)
            .await?
            .map(Into::into)
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))
    }

    /// Asks `to` to be friends. If `to` already asked `from`, that request is accepted instead — also when both
    /// ask at the same instant: the store keeps one pending request per pair, whichever way it points, so the
    /// second of two crossing requests is refused by that constraint and accepts the first.
    pub async fn request(&self, from: i64, to: i64, message: Option<&str>) -> AppResult<FriendRequest> {
        let message = crate::domain::text::friend_note(message.unwrap_or_default())?;
        if from == to {
            // 403, not 422: the body is well-formed; what it asks is not allowed for this caller.
            return Err(AppError::new(ErrorCode::CannotBefriendSelf, "you cannot befriend yourself"));
        }
        let target = self.summary(to).await?;
        if self.friends.blocked_either(from, to).await? {
            return Err(blocked());
        }
        if self.friends.are_friends(from, to).await? {
            return Err(AppError::new(ErrorCode::AlreadyFriends, "you are already friends"));
        }
        if let Some(theirs) = self.friends.pending_request(to, from).await? {
            let (req, _) = self.accept(from, theirs.id).await?;
            return Ok(req);
        }
        let record = match self.friends.create_request(from, to, message).await {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => {
                // Theirs arrived between the look above and this insert: accept it, as if it had been first.
                if let Some(theirs) = self.friends.pending_request(to, from).await? {
                    let (req, _) = self.accept(from, theirs.id).await?;
                    return Ok(req);
                }
                return Err(AppError::new(ErrorCode::RequestPending, "a request to this user is already pending"));
            }
            Err(StoreError::Blocked) => return Err(blocked()),
            Err(e) => return Err(e.into()),
        };
        let req = views::friend_request(record, self.summary(from).await?, target);
        self.events.publish(&[to, from], &ServerFrame::FriendRequest { request: req.clone() }).await;
        Ok(req)
    }

    pub async fn list_requests(&self, user: i64, incoming: bool) -> AppResult<Vec<FriendRequest>> {
        let records = self.friends.list_requests(user, incoming, LIST_LIMIT).await?;
        let mut ids: Vec<i64> = records.iter().flat_map(|r| [r.from_user_id, r.to_user_id]).collect();
        ids.sort_unstable();
        ids.dedup();
        let users: HashMap<i64, UserSummary> =
            self.users.users_by_ids(&ids).await?.into_iter().map(|u| (u.id, u.into())).collect();
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let (f, t) = (users.get(&r.from_user_id)?.clone(), users.get(&r.to_user_id)?.clone());
                Some(views::friend_request(r, f, t))
            })
            .collect())
    }

    /// Accepts a request addressed to `user`: returns it (now accepted) and the new friend.
    pub async fn accept(&self, user: i64, request_id: i64) -> AppResult<(FriendRequest, UserSummary)> {
        let req = self.addressed_to(user, request_id).await?;
        let accepted = self
            .friends
            .accept_request(req.id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::RequestNotPending, "the request was already answered"))?;
        let requester = self.summary(accepted.from_user_id).await?;
        let accepter = self.summary(user).await?;
        self.events.publish(&[accepted.from_user_id], &ServerFrame::FriendAccepted { friend: accepter.clone() }).await;
        self.events.publish(&[user], &ServerFrame::FriendAccepted { friend: requester.clone() }).await;
        let view = views::friend_request(accepted, requester.clone(), accepter);
        Ok((view, requester))
    }

    pub async fn reject(&self, user: i64, request_id: i64) -> AppResult<()> {
        let req = self.addressed_to(user, request_id).await?;
        self.friends
            .reject_request(req.id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::RequestNotPending, "the request was already answered"))?;
        Ok(())
    }

    async fn addressed_to(&self, user: i64, request_id: i64) -> AppResult<FriendRequestRecord> {
        let not_found = || AppError::new(ErrorCode::RequestNotFound, "no such friend request addressed to you");
        let req = self.friends.request_by_id(request_id).await?.ok_or_else(not_found)?;
        if req.to_user_id != user {
            return Err(not_found());
        }
        if req.status != "pending" {
            return Err(AppError::new(ErrorCode::RequestNotPending, "the request was already answered"));
        }
        Ok(req)
    }

    /// The user's friends, with the remarks the user gave them.
    pub async fn list(&self, user: i64) -> AppResult<Vec<UserSummary>> {
        Ok(self
            .friends
            .friends(user)
            .await?
            .into_iter()
            .map(|f| UserSummary { remark: f.remark, ..UserSummary::from(f.user) })
            .collect())
    }

    /// Sets the name `user` gives a friend (an empty or blank remark removes it); seen only by `user`.
    pub async fn set_remark(&self, user: i64, friend: i64, remark: &str) -> AppResult<UserSummary> {
        let remark = crate::domain::text::remark(remark)?;
        if !self.friends.set_remark(user, friend, remark.as_deref()).await? {
            return Err(AppError::new(ErrorCode::FriendNotFound, "this user is not your friend"));
        }
        let summary = UserSummary { remark, ..self.summary(friend).await? };
        Ok(summary)
    }

    /// `user` blocks `other` (DESIGN.md §8): their friendship ends (both are told, as for a removal) and
    /// pending requests between them are rejected; `other`'s requests and direct messages are refused with 403
    /// `blocked` until unblocked, and unblocking restores nothing.
    pub async fn block(&self, user: i64, other: i64) -> AppResult<UserSummary> {
        if user == other {
            return Err(AppError::new(ErrorCode::CannotBefriendSelf, "you cannot block yourself"));
        }
        let summary = self.summary(other).await?;
        if self.friends.block(user, other).await? {
            self.events.publish(&[other], &ServerFrame::FriendRemoved { user_id: user }).await;
            self.events.publish(&[user], &ServerFrame::FriendRemoved { user_id: other }).await;
        }
        Ok(summary)
    }

    pub async fn unblock(&self, user: i64, other: i64) -> AppResult<()> {
        if !self.friends.unblock(user, other).await? {
            return Err(AppError::new(ErrorCode::UserNotFound, "you have not blocked this user"));
        }
        Ok(())
    }

    /// Users as `viewer` sees them: with the remarks `viewer` gave those who are their friends.
    pub async fn with_remarks(&self, viewer: i64, users: Vec<crate::store::UserRecord>) -> AppResult<Vec<UserSummary>> {
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        Ok(views::summaries(users, self.friends.remarks(viewer, &ids).await?))
    }

    /// The users `user` blocked, most recent first.
    pub async fn blocked(&self, user: i64) -> AppResult<Vec<UserSummary>> {
        Ok(self.friends.blocked_by(user).await?.into_iter().map(Into::into).collect())
    }

    /// Ends the friendship on both sides and tells both users' devices.
    pub async fn remove(&self, user: i64, friend: i64) -> AppResult<()> {
        if !self.friends.remove_friendship(user, friend).await? {
            return Err(AppError::new(ErrorCode::FriendNotFound, "this user is not your friend"));
        }
        self.events.publish(&[friend], &ServerFrame::FriendRemoved { user_id: user }).await;
        self.events.publish(&[user], &ServerFrame::FriendRemoved { user_id: friend }).await;
        Ok(())
    }

    pub async fn are_friends(&self, a: i64, b: i64) -> AppResult<bool> {
        Ok(self.friends.are_friends(a, b).await?)
    }
}
