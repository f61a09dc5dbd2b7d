//! `/api/groups/*`: groups and their membership.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::BearerAuth;
use super::ApiTags;
use crate::domain::model::{AssignableRole, Group};
use crate::domain::schema::{fields, Str};
use crate::error::AppError;
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

#[derive(Debug, Object)]
struct RenameGroup {
    /// 1–64 characters, something visible, no control characters.
    name: Str<fields::Name>,
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

    /// Rename a group (owner or admin).
    #[oai(path = "/api/groups/:groupId", method = "put", operation_id = "renameGroup")]
    async fn rename(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "groupId")] group_id: Path<i64>,
        body: Json<RenameGroup>,
    ) -> Result<Json<Group>, AppError> {
        Ok(Json(state.groups.rename(group_id.0, auth.user_id(), &body.name).await?))
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
