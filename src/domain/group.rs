//! The rules of a group's membership (DESIGN.md §9): who may make which change, and the `system` message each
//! change leaves in the group's stream. Pure: the store applies a change only after [`check`] allows it, under
//! the group's lock, against the roles it read under that lock — so the invariant (exactly one owner, who is a
//! member, named by `owner_id`) holds however changes race.

use chrono::{DateTime, Utc};

use super::model::{GroupRole, SystemEvent, SystemKind};

/// A change to a group, made by an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// A new name and/or announcement (`Some("")` clears the announcement).
    Edit { name: Option<String>, announcement: Option<String> },
    /// A new avatar (the media store's key of the thumbnail).
    Avatar { key: String },
    /// Adds users (the service checked they are the actor's friends).
    Add { users: Vec<i64> },
    /// The actor joins with an invite link (checked and counted by the store in the same transaction).
    Join { code: String },
    /// Removes `user`; the actor removing itself leaves.
    Remove { user: i64 },
    /// Makes `to` the owner; the old owner becomes an admin.
    Transfer { to: i64 },
    /// Makes `user` an admin (`admin` true) or a plain member.
    SetRole { user: i64, admin: bool },
    /// Only the owner and admins may send while on.
    MuteAll { on: bool },
    /// `user` may not send until `until` (none: lifts the mute).
    MuteMember { user: i64, until: Option<DateTime<Utc>> },
    /// Ends the group.
    Dissolve,
}

/// Why a change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Owner or admin only.
    NotAdmin,
    /// Owner only.
    NotOwner,
    /// An admin acting on the owner or another admin.
    InsufficientRole,
    /// The owner tried to leave.
    OwnerMustTransfer,
    /// The user acted on is not a member.
    MemberNotFound,
    /// The owner tried to transfer to itself.
    AlreadyOwner,
    /// The owner's role or mute changes only by transfer.
    CannotChangeOwner,
}

impl GroupChange {
    /// The member the change acts on, whose role [`check`] needs.
    pub fn target(&self) -> Option<i64> {
        match self {
            GroupChange::Remove { user } | GroupChange::SetRole { user, .. } | GroupChange::MuteMember { user, .. } => {
                Some(*user)
            }
            GroupChange::Transfer { to } => Some(*to),
            _ => None,
        }
    }
}

fn admin(role: GroupRole) -> bool {
    matches!(role, GroupRole::Owner | GroupRole::Admin)
}

/// Whether `actor` (a member with role `actor_role`) may make `change`; `target` is the role of the member the
/// change acts on ([`GroupChange::target`]), none when they are not a member. A join is checked by its invite,
/// not here.
pub fn check(
    change: &GroupChange,
    actor: i64,
    actor_role: GroupRole,
    target: Option<GroupRole>,
) -> Result<(), Refusal> {
    let owner = actor_role == GroupRole::Owner;
    match change {
        GroupChange::Join { .. } => Ok(()),
        GroupChange::Edit { .. }
        | GroupChange::Avatar { .. }
        | GroupChange::Add { .. }
        | GroupChange::MuteAll { .. } => {
            if admin(actor_role) {
                Ok(())
            } else {
                Err(Refusal::NotAdmin)
            }
        }
        GroupChange::Dissolve => {
            if owner {
                Ok(())
            } else {
                Err(Refusal::NotOwner)
            }
        }
        GroupChange::Remove { user } if *user == actor => {
            if owner {
                Err(Refusal::OwnerMustTransfer)
            } else {
                Ok(())
            }
        }
        GroupChange::Remove { .. } | GroupChange::MuteMember { .. } => {
            if !admin(actor_role) {
                return Err(Refusal::NotAdmin);
            }
            match (actor_role, target) {
                (_, None) => Err(Refusal::MemberNotFound),
                (_, Some(GroupRole::Owner)) if matches!(change, GroupChange::MuteMember { .. }) => {
                    Err(Refusal::CannotChangeOwner)
                }
                (GroupRole::Owner, Some(_)) => Ok(()),
                (_, Some(GroupRole::Member)) => Ok(()),
                (_, Some(_)) => Err(Refusal::InsufficientRole),
            }
        }
        GroupChange::Transfer { to } => {
            if !owner {
                return Err(Refusal::NotOwner);
            }
            if *to == actor {
                return Err(Refusal::AlreadyOwner);
            }
            target.map(|_| ()).ok_or(Refusal::MemberNotFound)
        }
        GroupChange::SetRole { .. } => {
            if !owner {
                return Err(Refusal::NotOwner);
            }
            match target {
                None => Err(Refusal::MemberNotFound),
                Some(GroupRole::Owner) => Err(Refusal::CannotChangeOwner),
                Some(_) => Ok(()),
            }
        }
    }
}

/// The `system` messages a change leaves, in order: `affected` are the users it actually changed (those
/// added). None when nothing changed (adding members who were all in already) or the group ends (a dissolved
/// group has no stream left to read); two for an edit of both the name and the announcement.
pub fn system_events(change: &GroupChange, actor: i64, affected: &[i64]) -> Vec<SystemEvent> {
    match change {
        GroupChange::Edit { name: Some(name), announcement: Some(text) } => [
            system_event(&GroupChange::Edit { name: Some(name.clone()), announcement: None }, actor, affected),
            system_event(&GroupChange::Edit { name: None, announcement: Some(text.clone()) }, actor, affected),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => system_event(change, actor, affected).into_iter().collect(),
    }
}

fn system_event(change: &GroupChange, actor: i64, affected: &[i64]) -> Option<SystemEvent> {
    let event = |kind| SystemEvent { kind, actor_id: actor, user_ids: None, name: None, text: None, until: None };
    let on = |kind, users: &[i64]| SystemEvent { user_ids: Some(users.to_vec()), ..event(kind) };
    Some(match change {
        GroupChange::Edit { name, announcement } => match (name, announcement) {
            (Some(name), _) => SystemEvent { name: Some(name.clone()), ..event(SystemKind::Renamed) },
            (None, Some(text)) => {
                SystemEvent { text: Some(text.clone()).filter(|t| !t.is_empty()), ..event(SystemKind::Announcement) }
            }
            (None, None) => return None,
        },
        GroupChange::Avatar { .. } => event(SystemKind::AvatarChanged),
        GroupChange::Add { .. } if affected.is_empty() => return None,
        GroupChange::Add { .. } => on(SystemKind::Added, affected),
        GroupChange::Join { .. } => event(SystemKind::Joined),
        GroupChange::Remove { user } if *user == actor => event(SystemKind::Left),
        GroupChange::Remove { user } => on(SystemKind::Removed, &[*user]),
        GroupChange::Transfer { to } => on(SystemKind::OwnerChanged, &[*to]),
        GroupChange::SetRole { user, admin: true } => on(SystemKind::AdminAdded, &[*user]),
        GroupChange::SetRole { user, admin: false } => on(SystemKind::AdminRemoved, &[*user]),
        GroupChange::MuteAll { on: true } => event(SystemKind::MutedAll),
        GroupChange::MuteAll { on: false } => event(SystemKind::UnmutedAll),
        GroupChange::MuteMember { user, until: Some(until) } => {
            SystemEvent { until: Some(*until), ..on(SystemKind::MemberMuted, &[*user]) }
        }
        GroupChange::MuteMember { user, until: None } => on(SystemKind::MemberUnmuted, &[*user]),
        GroupChange::Dissolve => return None,
    })
}

/// Whether a member with `role` may send now: not while muted (`muted_until` in the future), nor, unless owner
/// or admin, while the whole group is muted.
pub fn may_send(role: GroupRole, muted_all: bool, muted_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let muted = muted_until.is_some_and(|t| t > now);
    !muted && (!muted_all || admin(role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use GroupRole::{Admin, Member, Owner};

    const ME: i64 = 1;
    const OTHER: i64 = 2;

    #[test]
    fn only_the_owner_transfers_dissolves_and_sets_roles() {
        for change in [
            GroupChange::Transfer { to: OTHER },
            GroupChange::Dissolve,
            GroupChange::SetRole { user: OTHER, admin: true },
        ] {
            assert_eq!(check(&change, ME, Owner, Some(Member)), Ok(()), "{change:?}");
            assert_eq!(check(&change, ME, Admin, Some(Member)), Err(Refusal::NotOwner), "{change:?}");
            assert_eq!(check(&change, ME, Member, Some(Member)), Err(Refusal::NotOwner), "{change:?}");
        }
    }

    #[test]
    fn a_transfer_needs_a_member_other_than_the_owner() {
        assert_eq!(check(&GroupChange::Transfer { to: OTHER }, ME, Owner, None), Err(Refusal::MemberNotFound));
        assert_eq!(check(&GroupChange::Transfer { to: ME }, ME, Owner, Some(Owner)), Err(Refusal::AlreadyOwner));
    }

    #[test]
    fn admins_remove_and_mute_plain_members_only_and_nobody_mutes_the_owner() {
        let remove = GroupChange::Remove { user: OTHER };
        let mute = GroupChange::MuteMember { user: OTHER, until: None };
        for change in [&remove, &mute] {
            assert_eq!(check(change, ME, Admin, Some(Member)), Ok(()));
            assert_eq!(check(change, ME, Admin, Some(Admin)), Err(Refusal::InsufficientRole));
            assert_eq!(check(change, ME, Owner, Some(Admin)), Ok(()));
            assert_eq!(check(change, ME, Member, Some(Member)), Err(Refusal::NotAdmin));
            assert_eq!(check(change, ME, Owner, None), Err(Refusal::MemberNotFound));
        }
        assert_eq!(check(&mute, ME, Admin, Some(Owner)), Err(Refusal::CannotChangeOwner));
        assert_eq!(check(&remove, ME, Admin, Some(Owner)), Err(Refusal::InsufficientRole));
    }

    #[test]
    fn anyone_but_the_owner_may_leave() {
        let leave = GroupChange::Remove { user: ME };
        assert_eq!(check(&leave, ME, Member, Some(Member)), Ok(()));
        assert_eq!(check(&leave, ME, Admin, Some(Admin)), Ok(()));
        assert_eq!(check(&leave, ME, Owner, Some(Owner)), Err(Refusal::OwnerMustTransfer));
    }

    #[test]
    fn the_owners_role_changes_only_by_transfer() {
        let demote = GroupChange::SetRole { user: OTHER, admin: false };
        assert_eq!(check(&demote, ME, Owner, Some(Owner)), Err(Refusal::CannotChangeOwner));
    }

    #[test]
    fn each_change_leaves_the_system_message_that_names_it() {
        let e = system_event(&GroupChange::Remove { user: ME }, ME, &[]).unwrap();
        assert_eq!((e.kind, e.user_ids), (SystemKind::Left, None));
        let e = system_event(&GroupChange::Remove { user: OTHER }, ME, &[]).unwrap();
        assert_eq!((e.kind, e.user_ids), (SystemKind::Removed, Some(vec![OTHER])));
        assert!(system_event(&GroupChange::Add { users: vec![OTHER] }, ME, &[]).is_none());
        let e = system_event(&GroupChange::Edit { name: None, announcement: Some(String::new()) }, ME, &[]).unwrap();
        assert_eq!((e.kind, e.text), (SystemKind::Announcement, None));
        assert!(system_event(&GroupChange::Dissolve, ME, &[]).is_none());
        let both = GroupChange::Edit { name: Some("n".into()), announcement: Some("a".into()) };
        let kinds: Vec<SystemKind> = system_events(&both, ME, &[]).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [SystemKind::Renamed, SystemKind::Announcement]);
    }

    #[test]
    fn a_muted_member_may_not_send_until_the_mute_ends() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        assert!(!may_send(Member, false, Some(later), now));
        assert!(may_send(Member, false, Some(now), now));
        assert!(!may_send(Member, true, None, now));
        assert!(may_send(Admin, true, None, now));
        assert!(!may_send(Admin, true, Some(later), now));
    }
}
