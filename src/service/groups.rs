//! Groups: creation, membership with owner/admin/member rights, renaming, transfer, dissolution, and the
//! `group_updated` / `group_removed` events each change sends.

use std::sync::Arc;

use crate::domain::frame::ServerFrame;
use crate::domain::model::{AssignableRole, Group, GroupMember, GroupRole};
use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::service::events::Events;
use crate::store::{FriendStore, GroupRecord, GroupStore, MemberRecord, StoreError};

#[derive(Clone)]
pub struct Groups {
    groups: Arc<dyn GroupStore>,
    friends: Arc<dyn FriendStore>,
    events: Events,
    max_members: i64,
}

/// A group name, as [`crate::domain::text::display_name`] rules; refusals are 422 `invalid_group_name`.
fn parse_name(name: &str) -> AppResult<String> {
    Ok(crate::domain::text::display_name(name, ErrorCode::InvalidGroupName, "a group name")?)
}

fn not_found() -> AppError {
    AppError::new(ErrorCode::GroupNotFound, "no such group")
}

/// A caller's standing in a live group.
struct Standing {
    group: GroupRecord,
    role: GroupRole,
}

impl Groups {
    pub fn new(groups: Arc<dyn GroupStore>, friends: Arc<dyn FriendStore>, events: Events, max_members: u32) -> Self {
        Self { groups, friends, events, max_members: max_members as i64 }
    }

    /// The live group and the caller's role in it; 404 for a dissolved group or a non-member (so ids cannot be
    /// probed).
    /// The caller's place in a live group; refused as [`Groups::check_sender`] refuses (404 for a stranger, 403
    /// for a former member).
    async fn standing(&self, group_id: i64, user: i64) -> AppResult<Standing> {
        let group = self.groups.group(group_id).await?.filter(|g| g.dissolved_at.is_none()).ok_or_else(not_found)?;
        let Some(member) = self.groups.member(group_id, user).await? else {
            if self.groups.was_member(group_id, user).await? {
                return Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"));
            }
            return Err(not_found());
        };
        Ok(Standing { group, role: GroupRole::parse(&member.role) })
    }

    fn require_admin(s: &Standing) -> AppResult<()> {
        match s.role {
            GroupRole::Owner | GroupRole::Admin => Ok(()),
            GroupRole::Member => Err(AppError::new(ErrorCode::NotGroupAdmin, "only the owner or an admin may do this")),
        }
    }

    fn require_owner(s: &Standing) -> AppResult<()> {
        match s.role {
            GroupRole::Owner => Ok(()),
            _ => Err(AppError::new(ErrorCode::NotGroupOwner, "only the owner may do this")),
        }
    }

    async fn require_friends(&self, user: i64, others: &[i64]) -> AppResult<()> {
        for &o in others {
            if o != user && !self.friends.are_friends(user, o).await? {
                return Err(AppError::new(ErrorCode::NotFriends, format!("user {o} is not your friend")));
            }
        }
        Ok(())
    }

    async fn view(&self, group: GroupRecord) -> AppResult<Group> {
        let members = self.groups.members(group.id).await?;
        Ok(group_view(group, members))
    }

    /// Publishes the group's current state to all its members (and to `also`).
    async fn announce(&self, group_id: i64, also: &[i64]) -> AppResult<Group> {
        let record = self.groups.group(group_id).await?.ok_or_else(not_found)?;
        let group = self.view(record).await?;
        let mut to: Vec<i64> = group.members.iter().map(|m| m.user_id).collect();
        to.extend_from_slice(also);
        self.events.publish(&to, &ServerFrame::GroupUpdated { group: group.clone() }).await;
        Ok(group)
    }

    fn dedup(ids: &[i64], except: i64) -> Vec<i64> {
        let mut v: Vec<i64> = ids.iter().copied().filter(|i| *i != except).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Creates a group owned by `owner` with some of the owner's friends.
    pub async fn create(&self, owner: i64, name: &str, member_ids: &[i64]) -> AppResult<Group> {
        let name = parse_name(name)?;
        let members = Self::dedup(member_ids, owner);
        if members.len() as i64 + 1 > self.max_members {
            return Err(AppError::new(
                ErrorCode::GroupFull,
                format!("a group has at most {} members", self.max_members),
            ));
        }
        self.require_friends(owner, &members).await?;
        let record = self.groups.create_group(&name, owner, &members).await?;
        self.announce(record.id, &[]).await
    }

    pub async fn list(&self, user: i64) -> AppResult<Vec<Group>> {
        let mut out = Vec::new();
        for g in self.groups.groups_of(user).await? {
            out.push(self.view(g).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, group_id: i64, user: i64) -> AppResult<Group> {
        let s = self.standing(group_id, user).await?;
        self.view(s.group).await
    }

    pub async fn rename(&self, group_id: i64, user: i64, name: &str) -> AppResult<Group> {
        let s = self.standing(group_id, user).await?;
        Self::require_admin(&s)?;
        self.groups.rename(group_id, &parse_name(name)?).await?;
        self.announce(group_id, &[]).await
    }

    /// Adds some of the caller's friends (owner or admin only); members already in are left as they are.
    pub async fn add_members(&self, group_id: i64, user: i64, user_ids: &[i64]) -> AppResult<Group> {
        let s = self.standing(group_id, user).await?;
        Self::require_admin(&s)?;
        if user_ids.is_empty() {
            return Err(AppError::new(ErrorCode::InvalidMembers, "user_ids must name at least one user"));
        }
        let ids = Self::dedup(user_ids, user);
        if ids.is_empty() {
            // Only the caller, who is in already: nothing changes, as for any member already in.
            return self.view(s.group).await;
        }
        self.require_friends(user, &ids).await?;
        match self.groups.add_members(group_id, &ids, self.max_members).await {
            Ok(_) => {}
            Err(StoreError::GroupFull) => {
                return Err(AppError::new(
                    ErrorCode::GroupFull,
                    format!("a group has at most {} members", self.max_members),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.announce(group_id, &[]).await
    }

    /// Removes `target`: the owner removes anyone but itself, an admin removes plain members, and anyone but the
    /// owner may remove itself (leave).
    pub async fn remove_member(&self, group_id: i64, user: i64, target: i64) -> AppResult<()> {
        let s = self.standing(group_id, user).await?;
        if target == user {
            if s.role == GroupRole::Owner {
                return Err(AppError::new(
                    ErrorCode::OwnerMustTransfer,
                    "the owner must transfer ownership before leaving (or dissolve the group)",
                ));
            }
        } else {
            let t = self
                .groups
                .member(group_id, target)
                .await?
                .ok_or_else(|| AppError::new(ErrorCode::MemberNotFound, "that user is not a member"))?;
            let target_role = GroupRole::parse(&t.role);
            match (s.role, target_role) {
                (GroupRole::Owner, _) => {}
                (GroupRole::Admin, GroupRole::Member) => {}
                (GroupRole::Admin, _) => {
                    return Err(AppError::new(ErrorCode::InsufficientRole, "an admin may remove plain members only"))
                }
                (GroupRole::Member, _) => {
                    return Err(AppError::new(
                        ErrorCode::NotGroupAdmin,
                        "only the owner or an admin may remove members",
                    ))
                }
            }
        }
        if !self.groups.remove_member(group_id, target).await? {
            return Err(AppError::new(ErrorCode::MemberNotFound, "that user is not a member"));
        }
        self.events.publish(&[target], &ServerFrame::GroupRemoved { group_id }).await;
        self.announce(group_id, &[]).await?;
        Ok(())
    }

    pub async fn transfer(&self, group_id: i64, user: i64, to: i64) -> AppResult<Group> {
        let s = self.standing(group_id, user).await?;
        Self::require_owner(&s)?;
        if to == user {
            return Err(AppError::new(ErrorCode::AlreadyOwner, "you already own this group"));
        }
        self.groups
            .member(group_id, to)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::MemberNotFound, "that user is not a member"))?;
        self.groups.transfer(group_id, user, to).await?;
        self.announce(group_id, &[]).await
    }

    /// Makes a member an admin or a plain member (ownership moves only with [`Groups::transfer`]).
    pub async fn set_role(&self, group_id: i64, user: i64, target: i64, role: AssignableRole) -> AppResult<Group> {
        let s = self.standing(group_id, user).await?;
        Self::require_owner(&s)?;
        let role = match role {
            AssignableRole::Admin => GroupRole::Admin,
            AssignableRole::Member => GroupRole::Member,
        };
        let t = self
            .groups
            .member(group_id, target)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::MemberNotFound, "that user is not a member"))?;
        if t.role == "owner" {
            return Err(AppError::new(ErrorCode::CannotChangeOwner, "the owner's role changes only by transfer"));
        }
        self.groups.set_role(group_id, target, role.as_str()).await?;
        self.announce(group_id, &[]).await
    }

    pub async fn dissolve(&self, group_id: i64, user: i64) -> AppResult<()> {
        let s = self.standing(group_id, user).await?;
        Self::require_owner(&s)?;
        let members = self.groups.dissolve(group_id).await?;
        self.events.publish(&members, &ServerFrame::GroupRemoved { group_id }).await;
        Ok(())
    }

    /// The group a message is sent to, or whose conversation is read: 404 when it does not exist (or was
    /// dissolved) and also for someone who never belonged to it, so that a stranger cannot tell a group id that
    /// exists from one that does not; 403 `not_group_member` for a former member, who knows it exists.
    pub async fn check_sender(&self, group_id: i64, user: i64) -> AppResult<()> {
        self.groups.group(group_id).await?.filter(|g| g.dissolved_at.is_none()).ok_or_else(not_found)?;
        if self.groups.member(group_id, user).await?.is_none() {
            if self.groups.was_member(group_id, user).await? {
                return Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"));
            }
            return Err(not_found());
        }
        Ok(())
    }

    /// The user's role in the group, or none when they are not a member.
    pub async fn role_of(&self, group_id: i64, user: i64) -> AppResult<Option<GroupRole>> {
        Ok(self.groups.member(group_id, user).await?.map(|m| GroupRole::parse(&m.role)))
    }

    /// Member ids of a live group (for events about its conversation).
    pub async fn member_ids(&self, group_id: i64) -> AppResult<Vec<i64>> {
        Ok(self.groups.members(group_id).await?.into_iter().map(|m| m.user_id).collect())
    }

    pub async fn record(&self, group_id: i64) -> AppResult<Option<GroupRecord>> {
        Ok(self.groups.group(group_id).await?)
    }
}

pub fn group_view(g: GroupRecord, members: Vec<MemberRecord>) -> Group {
    Group {
        id: g.id,
        name: g.name,
        owner_id: g.owner_id,
        create_user_id: g.create_user_id,
        created_at: g.created_at,
        members: members
            .into_iter()
            .map(|m| GroupMember {
                user_id: m.user_id,
                username: m.username,
                nickname: m.nickname,
                role: GroupRole::parse(&m.role),
            })
            .collect(),
    }
}
