//! `/api/groups/*`: groups and their membership.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::BearerAuth;
use super::ApiTags;
use crate::domain::model::{AssignableRole, Group};
use crate::domain::schema::{fields, Int, Str};
use crate::error::AppError;
use crate::service::groups::{Invite, InvitePreview};
use crate::state::AppState;

pub struct GroupsApi;

#[derive(Debug, Object)]
struct CreateGroup {
    /// 1–64 characters, something visible, no control characters.
    name: Str<fields::Name>,
    /// Friends of the creator to add as members.
    #[oai(nullable)]
    member_ids: Option<Vec<i64>>,
}

/// What to change of a group; at least one of them (neither: the group as it is).
#[derive(Debug, Object)]
struct EditGroup {
    /// 1–64 characters, something visible, no control characters.
    #[oai(nullable)]
    name: Option<Str<fields::Name>>,
    /// Up to 2,000 characters, no control characters but tab and line breaks; "" clears it.
    #[oai(nullable)]
    announcement: Option<Str<fields::Announcement>>,
}

#[derive(Debug, Object)]
struct MuteAll {
    /// While true, only the owner and admins may send.
    muted_all: bool,
}

#[derive(Debug, Object)]
struct MuteMember {
    /// The member may not send until then (a time to come; 409 `mute_in_past` otherwise); null lifts the mute.
    #[oai(nullable)]
    until: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Object)]
struct NewInvite {
    /// Seconds until the link expires: 1 to 2,592,000 (30 days); default 604,800 (7 days).
    #[oai(nullable)]
    expires_in_secs: Option<Int<1, 2_592_000>>,
    /// How many people the link admits: 1 to 10,000; null for no limit.
    #[oai(nullable)]
    max_uses: Option<Int<1, 10_000>>,
}

#[derive(ApiResponse)]
enum InviteCreated {
    /// The new invite link.
    #[oai(status = 201)]
    Invite(Json<Invite>),
}

#[derive(Debug, Object)]
struct AddMembers {
    /// Friends of the caller (at least one; members already in, the caller included, are left as they are).
    #[oai(validator(min_items = 1))]
    user_ids: Vec<i64>,
}

#[derive(Debug, Object)]
struct NewOwner {
    user_id: i64,
}

#[derive(Debug, Object)]
struct NewRole {
    /// `admin` or `member`.
    role: AssignableRole,
}

#[derive(ApiResponse)]
enum Created {
    /// The new group; the caller is its owner.
    #[oai(status = 201)]
    Group(Json<Group>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[OpenApi(tag = "ApiTags::Groups")]
impl GroupsApi {
    /// Create a group with some of the caller's friends.
    #[oai(path = "/api/groups", method = "post", operation_id = "createGroup")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateGroup>,
    ) -> Result<Created, AppError> {
        let members = body.member_ids.clone().unwrap_or_default();
        Ok(Created::Group(Json(state.groups.create(auth.user_id(), &body.name, &members).await?)))
    }

    /// The groups the caller belongs to.
    #[oai(path = "/api/groups", method = "get", operation_id = "listGroups")]
    async fn list(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Json<Vec<Group>>, AppError> {
        Ok(Json(state.groups.list(auth.user_id()).await?))
    }

    /// A group with its members (members only; anyone else gets 404).
    #[oai(path = "/api/groups/:groupId", method = "get", operation_id = "getGroup")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.get(group_id.0, auth.user_id()).await?))
    }

    /// Rename a group and/or set its announcement (owner or admin). Each change is a `system` message in the
    /// group's stream.
    #[oai(path = "/api/groups/:groupId", method = "put", operation_id = "updateGroup")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: Json<EditGroup>,
    ) -> Result<Json<Group>, AppError> {
        let (name, announcement) = (body.name.as_deref(), body.announcement.as_deref());
        Ok(Json(state.groups.edit(group_id.0, auth.user_id(), name, announcement).await?))
    }

    /// Set the group's avatar (owner or admin): an image (JPEG, PNG, GIF or WebP up to 10 MiB) in the multipart
    /// field `file`, stored as a 256×256 JPEG with its metadata stripped.
    #[oai(path = "/api/groups/:groupId/avatar", method = "put", operation_id = "setGroupAvatar")]
    async fn set_avatar(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        req: &poem::Request,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: super::files::UploadBody,
    ) -> Result<Json<Group>, AppError> {
        let user = auth.user_id();
        if let Err(refused) = state.groups.check_admin(group_id.0, user).await {
            return Err(if super::files::discard(body).await { refused } else { refused.closing_connection() });
        }
        let key = super::user::receive_avatar(&state, user, req, body).await?;
        Ok(Json(state.groups.set_avatar(group_id.0, user, key).await?))
    }

    /// Mute or unmute everyone but the owner and admins (owner or admin); a muted member's send is 403 `muted`.
    #[oai(path = "/api/groups/:groupId/mute", method = "put", operation_id = "muteGroup")]
    async fn mute_all(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: Json<MuteAll>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.mute_all(group_id.0, auth.user_id(), body.muted_all).await?))
    }

    /// Mute a member until a time, or lift their mute (the owner mutes anyone but itself, an admin plain
    /// members).
    #[oai(path = "/api/groups/:groupId/members/:userId/mute", method = "put", operation_id = "muteGroupMember")]
    async fn mute_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        #[oai(name = "userId")] user_id: Path<i64>,
        body: Json<MuteMember>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.mute_member(group_id.0, auth.user_id(), user_id.0, body.until).await?))
    }

    /// Create an invite link (owner or admin). Its code is 128 random bits.
    #[oai(path = "/api/groups/:groupId/invites", method = "post", operation_id = "createGroupInvite")]
    async fn create_invite(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: Json<NewInvite>,
    ) -> Result<InviteCreated, AppError> {
        let (expires, uses) = (body.expires_in_secs.map(|v| v.0), body.max_uses.map(|v| v.0));
        Ok(InviteCreated::Invite(Json(state.groups.create_invite(group_id.0, auth.user_id(), expires, uses).await?)))
    }

    /// The group's invite links, newest first (owner or admin; at most 100).
    #[oai(path = "/api/groups/:groupId/invites", method = "get", operation_id = "listGroupInvites")]
    async fn invites(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
    ) -> Result<Json<Vec<Invite>>, AppError> {
        Ok(Json(state.groups.invites(group_id.0, auth.user_id()).await?))
    }

    /// Revoke an invite link (owner or admin); 404 `invite_invalid` for a code the group has no live link of.
    #[oai(path = "/api/groups/:groupId/invites/:code", method = "delete", operation_id = "revokeGroupInvite")]
    async fn revoke_invite(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        code: Path<String>,
    ) -> Result<NoContent, AppError> {
        state.groups.revoke_invite(group_id.0, auth.user_id(), &code.0).await?;
        Ok(NoContent::Done)
    }

    /// What an invite link leads to, before joining. 404 `invite_invalid` when it is unknown, expired, used
    /// up or revoked, or its group was dissolved. Attempts are rate-limited per user.
    #[oai(path = "/api/invites/:code", method = "get", operation_id = "previewInvite")]
    async fn preview_invite(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        code: Path<String>,
    ) -> Result<Json<InvitePreview>, AppError> {
        state.limits.check_invite(auth.user_id())?;
        Ok(Json(state.groups.preview(&code.0).await?))
    }

    /// Join a group with an invite link (a `joined` system message); a member already in gets the group and the
    /// link keeps its use. Refused as the preview is; attempts are rate-limited per user.
    #[oai(path = "/api/invites/:code/join", method = "post", operation_id = "joinWithInvite")]
    async fn join(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        code: Path<String>,
    ) -> Result<Json<Group>, AppError> {
        state.limits.check_invite(auth.user_id())?;
        Ok(Json(state.groups.join(&code.0, auth.user_id()).await?))
    }

    /// Add members (owner or admin; friends of the caller). They see messages from now on.
    #[oai(path = "/api/groups/:groupId/members", method = "post", operation_id = "addGroupMembers")]
    async fn add_members(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: Json<AddMembers>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.add_members(group_id.0, auth.user_id(), &body.user_ids).await?))
    }

    /// Remove a member (the owner removes anyone else, an admin plain members), or leave (your own id; the owner
    /// must transfer first).
    #[oai(path = "/api/groups/:groupId/members/:userId", method = "delete", operation_id = "removeGroupMember")]
    async fn remove_member(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        #[oai(name = "userId")] user_id: Path<i64>,
    ) -> Result<NoContent, AppError> {
        state.groups.remove_member(group_id.0, auth.user_id(), user_id.0).await?;
        Ok(NoContent::Done)
    }

    /// Transfer ownership to another member (owner only); the old owner becomes an admin.
    #[oai(path = "/api/groups/:groupId/owner", method = "put", operation_id = "transferGroup")]
    async fn transfer(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: Json<NewOwner>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.transfer(group_id.0, auth.user_id(), body.user_id).await?))
    }

    /// Make a member an admin or a plain member (owner only).
    #[oai(path = "/api/groups/:groupId/members/:userId/role", method = "put", operation_id = "setGroupRole")]
    async fn set_role(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        #[oai(name = "userId")] user_id: Path<i64>,
        body: Json<NewRole>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.set_role(group_id.0, auth.user_id(), user_id.0, body.role).await?))
    }

    /// Dissolve a group (owner only): it refuses everything afterwards and leaves every list.
    #[oai(path = "/api/groups/:groupId", method = "delete", operation_id = "dissolveGroup")]
    async fn dissolve(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
    ) -> Result<NoContent, AppError> {
        state.groups.dissolve(group_id.0, auth.user_id()).await?;
        Ok(NoContent::Done)
    }
}
