//! `/api/friends/*`: friend requests and the friend list.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, OpenApi};

use super::auth::BearerAuth;
use super::dto::{AcceptedFriend, FriendRequestBody, RequestIdBody, UserSummary};
use super::ApiTags;
use crate::domain::model::FriendRequest;
use crate::domain::schema::{fields, Str};
use crate::error::AppError;
use crate::state::AppState;

pub struct FriendsApi;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum Direction {
    Incoming,
    Outgoing,
}

#[derive(ApiResponse)]
enum Created {
    /// The request (or, when the other user had already asked, theirs, now accepted).
    #[oai(status = 201)]
    Request(Json<FriendRequest>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[OpenApi(tag = "ApiTags::Friends")]
impl FriendsApi {
    /// The caller's friends.
    #[oai(path = "/api/friends", method = "get", operation_id = "listFriends")]
    async fn list(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Json<Vec<UserSummary>>, AppError> {
        Ok(Json(state.friends.list(auth.user_id()).await?))
    }

    /// Ask a user to be friends. If they already asked you, their request is accepted instead.
    #[oai(path = "/api/friends/request", method = "post", operation_id = "requestFriend")]
    async fn request(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<FriendRequestBody>,
    ) -> Result<Created, AppError> {
        let body = body.0;
        Ok(Created::Request(Json(
            state.friends.request(auth.user_id(), body.to_user_id, body.message.as_deref()).await?,
        )))
    }

    /// Friend requests to (`incoming`, the default) or from (`outgoing`) the caller, newest first.
    #[oai(path = "/api/friends/requests", method = "get", operation_id = "listFriendRequests")]
    async fn requests(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        direction: Query<Option<Direction>>,
    ) -> Result<Json<Vec<FriendRequest>>, AppError> {
        let incoming = direction.0.unwrap_or(Direction::Incoming) == Direction::Incoming;
        Ok(Json(state.friends.list_requests(auth.user_id(), incoming).await?))
    }

    /// Accept a pending request addressed to the caller.
    #[oai(path = "/api/friends/accept", method = "post", operation_id = "acceptFriend")]
    async fn accept(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<RequestIdBody>,
    ) -> Result<Json<AcceptedFriend>, AppError> {
        let (_, friend) = state.friends.accept(auth.user_id(), body.request_id).await?;
        Ok(Json(AcceptedFriend { friend }))
    }

    /// Reject a pending request addressed to the caller.
    #[oai(path = "/api/friends/reject", method = "post", operation_id = "rejectFriend")]
    async fn reject(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<RequestIdBody>,
    ) -> Result<NoContent, AppError> {
        state.friends.reject(auth.user_id(), body.request_id).await?;
        Ok(NoContent::Done)
    }

    /// End a friendship, on both sides.
    #[oai(path = "/api/friends/:friendId", method = "delete", operation_id = "removeFriend")]
    async fn remove(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "friendId")] friend_id: Path<i64>,
    ) -> Result<NoContent, AppError> {
        state.friends.remove(auth.user_id(), friend_id.0).await?;
        Ok(NoContent::Done)
    }

    /// Set the name the caller gives a friend (seen only by the caller; "" removes it).
    #[oai(path = "/api/friends/:friendId", method = "put", operation_id = "setFriendRemark")]
    async fn set_remark(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "friendId")] friend_id: Path<i64>,
        body: Json<RemarkBody>,
    ) -> Result<Json<UserSummary>, AppError> {
        Ok(Json(state.friends.set_remark(auth.user_id(), friend_id.0, &body.remark).await?))
    }

    /// The users the caller blocked, most recent first.
    #[oai(path = "/api/blocks", method = "get", operation_id = "listBlocks")]
    async fn blocks(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Json<Vec<UserSummary>>, AppError> {
        Ok(Json(state.friends.blocked(auth.user_id()).await?))
    }

    /// Block a user: a friendship ends (both sides get `friend_removed`) and pending requests between you are
    /// rejected; their friend requests and direct messages, and yours to them, are refused with 403 `blocked`
    /// until you unblock them. Blocking again changes nothing.
    #[oai(path = "/api/blocks", method = "post", operation_id = "blockUser")]
    async fn block(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<BlockBody>,
    ) -> Result<Blocked, AppError> {
        Ok(Blocked::User(Json(state.friends.block(auth.user_id(), body.user_id).await?)))
    }

    /// Unblock a user. Nothing comes back by itself: to be friends again, one of you asks.
    #[oai(path = "/api/blocks/:userId", method = "delete", operation_id = "unblockUser")]
    async fn unblock(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "userId")] user_id: Path<i64>,
    ) -> Result<NoContent, AppError> {
        state.friends.unblock(auth.user_id(), user_id.0).await?;
        Ok(NoContent::Done)
    }
}

#[derive(Debug, poem_openapi::Object)]
struct RemarkBody {
    /// Up to 64 characters without control characters; "" (or only blanks) removes it.
    remark: Str<fields::Remark>,
}

#[derive(Debug, poem_openapi::Object)]
struct BlockBody {
    user_id: i64,
}

#[derive(ApiResponse)]
enum Blocked {
    /// The blocked user.
    #[oai(status = 201)]
    User(Json<UserSummary>),
}
