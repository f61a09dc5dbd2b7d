//! Groups: creation, membership with owner/admin/member rights, edits, mutes, invite links, transfer,
//! dissolution. Every change goes through [`GroupStore::change`] (checked under the group's lock, with its
//! `system` messages appended in the same transaction); this service then hands those messages to the members'
//! inboxes and devices like any message, and sends `group_updated` / `group_removed`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::delivery::Delivery;
use crate::domain::frame::ServerFrame;
use crate::domain::group::{GroupChange, Refusal};
use crate::domain::model::{AssignableRole, Group, GroupMember, GroupRole};
use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::inbox::SharedInbox;
use crate::service::events::Events;
use crate::service::views;
use crate::store::{FriendStore, GroupChanged, GroupRecord, GroupStore, InviteRecord, MemberRecord};

#[derive(Clone)]
pub struct Groups {
    groups: Arc<dyn GroupStore>,
    friends: Arc<dyn FriendStore>,
    events: Events,
    inbox: SharedInbox,
    max_members: i64,
}

/// A group name, as [`crate::domain::text::display_name`] rules; refusals are 422 `invalid_group_name`.
fn parse_name(name: &str) -> AppResult<String> {
    Ok(crate::domain::text::display_name(name, ErrorCode::InvalidGroupName, "a group name")?)
}

fn not_found() -> AppError {
    AppError::new(ErrorCode::GroupNotFound, "no such group")
}

fn invite_invalid() -> AppError {
    AppError::new(ErrorCode::InviteInvalid, "this invite link is unknown, expired, used up or revoked")
}

/// Longest an invite link may live, and the default (seconds).
pub const MAX_INVITE_SECS: i64 = 30 * 24 * 3600;
pub const DEFAULT_INVITE_SECS: i64 = 7 * 24 * 3600;
/// Most uses an invite link may allow.
pub const MAX_INVITE_USES: i64 = 10_000;
/// Invite links a group keeps listed (the newest).
const INVITES_LISTED: usize = 100;

/// A refusal of the group rules as the client is told it.
fn refused(r: Refusal) -> AppError {
    match r {
        Refusal::NotAdmin => AppError::new(ErrorCode::NotGroupAdmin, "only the owner or an admin may do this"),
        Refusal::NotOwner => AppError::new(ErrorCode::NotGroupOwner, "only the owner may do this"),
        Refusal::InsufficientRole => {
            AppError::new(ErrorCode::InsufficientRole, "an admin may act on plain members only")
        }
        Refusal::OwnerMustTransfer => AppError::new(
            ErrorCode::OwnerMustTransfer,
            "the owner must transfer ownership before leaving (or dissolve the group)",
        ),
        Refusal::MemberNotFound => AppError::new(ErrorCode::MemberNotFound, "that user is not a member"),
        Refusal::AlreadyOwner => AppError::new(ErrorCode::AlreadyOwner, "you already own this group"),
        Refusal::CannotChangeOwner => {
            AppError::new(ErrorCode::CannotChangeOwner, "the owner's role and rights change only by transfer")
        }
    }
}

/// An invite link as its group's owner and admins see it.
#[derive(Debug, Clone, poem_openapi::Object, serde::Serialize)]
pub struct Invite {
    /// 128 random bits, base64url: the link is `/invite/{code}`.
    pub code: String,
    pub group_id: i64,
    pub created_by: i64,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub max_uses: Option<i64>,
    pub uses: i64,
    /// Not revoked, expired or used up.
    pub valid: bool,
}

/// What anyone signed in sees of a group from its invite link.
#[derive(Debug, Clone, poem_openapi::Object, serde::Serialize)]
pub struct InvitePreview {
    pub group_id: i64,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub avatar_url: Option<String>,
    pub member_count: i64,
}

fn invite_view(r: InviteRecord) -> Invite {
    let valid = r.usable(crate::store::now());
    Invite {
        code: r.code,
        group_id: r.group_id,
        created_by: r.created_by,
        created_at: r.created_at,
        expires_at: r.expires_at,
        max_uses: r.max_uses,
        uses: r.uses,
        valid,
    }
}

/// A caller's standing in a live group.
struct Standing {
    group: GroupRecord,
    role: GroupRole,
}

impl Groups {
    pub fn new(
        groups: Arc<dyn GroupStore>,
        friends: Arc<dyn FriendStore>,
        events: Events,
        inbox: SharedInbox,
        max_members: u32,
    ) -> Self {
        Self { groups, friends, events, inbox, max_members: max_members as i64 }
    }

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

    async fn require_admin(&self, group_id: i64, user: i64) -> AppResult<Standing> {
        let s = self.standing(group_id, user).await?;
        match s.role {
            GroupRole::Owner | GroupRole::Admin => Ok(s),
            GroupRole::Member => Err(refused(Refusal::NotAdmin)),
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

    fn dedup(ids: &[i64], except: i64) -> Vec<i64> {
        let mut v: Vec<i64> = ids.iter().copied().filter(|i| *i != except).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn full(&self) -> AppError {
        AppError::new(ErrorCode::GroupFull, format!("a group has at most {} members", self.max_members))
    }

    /// Makes a change and tells everyone concerned: the `system` messages go to the members' inboxes and
    /// devices like any message, `group_updated` to the members when who is in changed, `group_removed` to those
    /// who left. Returns the group as it is after the change.
    async fn apply(&self, group_id: i64, actor: i64, change: GroupChange) -> AppResult<Group> {
        let outcome = self.groups.change(group_id, actor, &change, self.max_members).await?;
        let membership = matches!(change, GroupChange::Add { .. } | GroupChange::Remove { .. } | GroupChange::Dissolve);
        self.settle(group_id, actor, outcome, membership).await
    }

    /// Tells everyone concerned of a change the store made. `group_updated` (the whole group, members and all) goes
    /// to the members only when who is in changed: every other change is told by its `system` message, which
    /// carries its facts — sending a 500-member group's member list to each of its 500 members for every mute or
    /// rename would cost a quarter of a million member entries per change.
    async fn settle(&self, group_id: i64, actor: i64, outcome: GroupChanged, membership: bool) -> AppResult<Group> {
        let (record, messages, recipients, former) = match outcome {
            GroupChanged::Done { group, messages, recipients, former } => (group, messages, recipients, former),
            GroupChanged::Refused(r) => return Err(refused(r)),
            GroupChanged::NotMember => {
                self.check_sender(group_id, actor).await?;
                return Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"));
            }
            GroupChanged::Gone => return Err(not_found()),
            GroupChanged::InviteInvalid => return Err(invite_invalid()),
            GroupChanged::Full => return Err(self.full()),
        };
        // The group's new state first (a newcomer learns of the group before its first message), then the
        // system messages, which go to the inboxes like any message.
        if !former.is_empty() {
            self.events.publish(&former, &ServerFrame::GroupRemoved { group_id }).await;
        }
        let group = self.view(record).await?;
        if membership && !group.members.is_empty() && !messages.is_empty() {
            let to: Vec<i64> = group.members.iter().map(|m| m.user_id).collect();
            self.events.publish(&to, &ServerFrame::GroupUpdated { group: group.clone() }).await;
        }
        for message in messages {
            self.inbox.append(&recipients, &message).await;
            let frame = ServerFrame::Message { message: views::message(message) };
            self.events.publish_delivery(&recipients, &Delivery::from_frame(&frame)).await;
        }
        Ok(group)
    }

    /// Creates a group owned by `owner` with some of the owner's friends.
    pub async fn create(&self, owner: i64, name: &str, member_ids: &[i64]) -> AppResult<Group> {
        let name = parse_name(name)?;
        let members = Self::dedup(member_ids, owner);
        if members.len() as i64 + 1 > self.max_members {
            return Err(self.full());
        }
        self.require_friends(owner, &members).await?;
        let record = self.groups.create_group(&name, owner, &members).await?;
        let group = self.view(record).await?;
        let to: Vec<i64> = group.members.iter().map(|m| m.user_id).collect();
        self.events.publish(&to, &ServerFrame::GroupUpdated { group: group.clone() }).await;
        Ok(group)
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

    /// Renames the group and/or sets its announcement (owner or admin); at least one of them.
    pub async fn edit(
        &self,
        group_id: i64,
        user: i64,
        name: Option<&str>,
        announcement: Option<&str>,
    ) -> AppResult<Group> {
        let name = name.map(parse_name).transpose()?;
        let announcement = announcement.map(crate::domain::text::announcement).transpose()?;
        if name.is_none() && announcement.is_none() {
            // Nothing to change: the group as it is, to a member (as any read).
            return self.get(group_id, user).await;
        }
        self.apply(group_id, user, GroupChange::Edit { name, announcement }).await
    }

    /// Sets the group's avatar (owner or admin) to a thumbnail already in the media store under `key`.
    pub async fn set_avatar(&self, group_id: i64, user: i64, key: String) -> AppResult<Group> {
        self.apply(group_id, user, GroupChange::Avatar { key }).await
    }

    /// Checks the caller may set the group's avatar before it is made.
    pub async fn check_admin(&self, group_id: i64, user: i64) -> AppResult<()> {
        self.require_admin(group_id, user).await.map(|_| ())
    }

    /// Adds some of the caller's friends (owner or admin only); members already in are left as they are.
    pub async fn add_members(&self, group_id: i64, user: i64, user_ids: &[i64]) -> AppResult<Group> {
        let s = self.require_admin(group_id, user).await?;
        if user_ids.is_empty() {
            return Err(AppError::new(ErrorCode::InvalidMembers, "user_ids must name at least one user"));
        }
        let ids = Self::dedup(user_ids, user);
        if ids.is_empty() {
            // Only the caller, who is in already: nothing changes, as for any member already in.
            return self.view(s.group).await;
        }
        self.require_friends(user, &ids).await?;
        self.apply(group_id, user, GroupChange::Add { users: ids }).await
    }

    /// Removes `target`: the owner removes anyone but itself, an admin removes plain members, and anyone but the
    /// owner may remove itself (leave).
    pub async fn remove_member(&self, group_id: i64, user: i64, target: i64) -> AppResult<()> {
        self.apply(group_id, user, GroupChange::Remove { user: target }).await.map(|_| ())
    }

    pub async fn transfer(&self, group_id: i64, user: i64, to: i64) -> AppResult<Group> {
        self.apply(group_id, user, GroupChange::Transfer { to }).await
    }

    /// Makes a member an admin or a plain member (ownership moves only with [`Groups::transfer`]).
    pub async fn set_role(&self, group_id: i64, user: i64, target: i64, role: AssignableRole) -> AppResult<Group> {
        let admin = matches!(role, AssignableRole::Admin);
        self.apply(group_id, user, GroupChange::SetRole { user: target, admin }).await
    }

    /// Mutes (or unmutes) everyone but the owner and admins (owner or admin).
    pub async fn mute_all(&self, group_id: i64, user: i64, on: bool) -> AppResult<Group> {
        self.apply(group_id, user, GroupChange::MuteAll { on }).await
    }

    /// Mutes a member until `until` (none: lifts the mute). A time already passed is 409 `mute_in_past`.
    pub async fn mute_member(
        &self,
        group_id: i64,
        user: i64,
        target: i64,
        until: Option<DateTime<Utc>>,
    ) -> AppResult<Group> {
        if until.is_some_and(|t| t <= Utc::now()) {
            return Err(AppError::new(ErrorCode::MuteInPast, "until must be in the future (null lifts the mute)"));
        }
        self.apply(group_id, user, GroupChange::MuteMember { user: target, until }).await
    }

    pub async fn dissolve(&self, group_id: i64, user: i64) -> AppResult<()> {
        self.apply(group_id, user, GroupChange::Dissolve).await.map(|_| ())
    }

    /// Creates an invite link (owner or admin): it expires after `expires_in_secs` (default 7 days, at most
    /// 30) and admits at most `max_uses` people (none: no limit).
    pub async fn create_invite(
        &self,
        group_id: i64,
        user: i64,
        expires_in_secs: Option<i64>,
        max_uses: Option<i64>,
    ) -> AppResult<Invite> {
        let secs = expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
        if !(1..=MAX_INVITE_SECS).contains(&secs) {
            return Err(AppError::new(ErrorCode::InvalidInvite, "expires_in_secs must be 1 to 2592000 (30 days)"));
        }
        if max_uses.is_some_and(|m| !(1..=MAX_INVITE_USES).contains(&m)) {
            return Err(AppError::new(ErrorCode::InvalidInvite, "max_uses must be 1 to 10000"));
        }
        self.require_admin(group_id, user).await?;
        let code = new_invite_code();
        let expires_at = crate::store::now() + chrono::Duration::seconds(secs);
        let record = self.groups.create_invite(group_id, user, &code, Some(expires_at), max_uses).await?;
        Ok(invite_view(record))
    }

    /// The group's invite links, newest first (owner or admin).
    pub async fn invites(&self, group_id: i64, user: i64) -> AppResult<Vec<Invite>> {
        self.require_admin(group_id, user).await?;
        let mut all = self.groups.invites(group_id).await?;
        all.truncate(INVITES_LISTED);
        Ok(all.into_iter().map(invite_view).collect())
    }

    /// Revokes an invite link (owner or admin); 404 `invite_invalid` when the group has no such live code.
    pub async fn revoke_invite(&self, group_id: i64, user: i64, code: &str) -> AppResult<()> {
        self.require_admin(group_id, user).await?;
        if !self.groups.revoke_invite(group_id, code).await? {
            return Err(invite_invalid());
        }
        Ok(())
    }

    /// What an invite link shows before joining: 404 `invite_invalid` unless it would admit someone now.
    pub async fn preview(&self, code: &str) -> AppResult<InvitePreview> {
        let invite = self.groups.invite(code).await?.filter(|i| i.usable(crate::store::now()));
        let invite = invite.ok_or_else(invite_invalid)?;
        let group = self.groups.group(invite.group_id).await?.filter(|g| g.dissolved_at.is_none());
        let group = group.ok_or_else(invite_invalid)?;
        Ok(InvitePreview {
            group_id: group.id,
            name: group.name,
            avatar_url: group.avatar_key.as_deref().map(views::avatar_url),
            member_count: self.groups.member_count(invite.group_id).await?,
        })
    }

    /// Joins the group of an invite link (a member already in just gets the group).
    pub async fn join(&self, code: &str, user: i64) -> AppResult<Group> {
        let outcome = self.groups.join(code, user, self.max_members).await?;
        let group_id = match &outcome {
            GroupChanged::Done { group, .. } => group.id,
            _ => 0,
        };
        self.settle(group_id, user, outcome, true).await
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

    /// Why a send to the group was refused: as [`Groups::check_sender`], or 403 `muted` for a member who may
    /// not send now (DESIGN.md §9).
    pub async fn sending_refusal(&self, group_id: i64, user: i64) -> AppError {
        if let Err(e) = self.check_sender(group_id, user).await {
            return e;
        }
        let group = self.groups.group(group_id).await.ok().flatten();
        let member = self.groups.member(group_id, user).await.ok().flatten();
        if let (Some(g), Some(m)) = (group, member) {
            let role = GroupRole::parse(&m.role);
            if m.muted_until.is_some_and(|t| t > Utc::now()) {
                return AppError::new(ErrorCode::Muted, "you are muted in this group until your mute ends");
            }
            if !crate::domain::group::may_send(role, g.muted_all, None, Utc::now()) {
                return AppError::new(ErrorCode::Muted, "the group is muted: only the owner and admins may send");
            }
        }
        AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group")
    }

    /// The user's role in the group, or none when they are not a member.
    pub async fn role_of(&self, group_id: i64, user: i64) -> AppResult<Option<GroupRole>> {
        Ok(self.groups.member(group_id, user).await?.map(|m| GroupRole::parse(&m.role)))
    }

    /// The members of a group with their roles.
    pub async fn roles(&self, group_id: i64) -> AppResult<Vec<(i64, GroupRole)>> {
        Ok(self.groups.members(group_id).await?.into_iter().map(|m| (m.user_id, GroupRole::parse(&m.role))).collect())
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
    let now = Utc::now();
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
                avatar_url: m.avatar_key.as_deref().map(views::avatar_url),
                muted_until: m.muted_until.filter(|t| *t > now),
            })
            .collect(),
        avatar_url: g.avatar_key.as_deref().map(views::avatar_url),
        announcement: g.announcement,
        muted_all: g.muted_all,
    }
}

/// A fresh invite code: 128 bits from the operating system's generator, base64url without padding (22
/// characters).
fn new_invite_code() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
