//! The permission bitfield and its resolution (Discord's order), as pure functions, plus the
//! database loaders that messaging and voice use: [`server_access`] and [`channel_permissions`].
//!
//! Resolution (documented in `docs/permissions.md`):
//! 1. The server owner has every permission (and is never timed out).
//! 2. base = @everyone | every role of the member; ADMINISTRATOR in base → every permission,
//!    channel overwrites are skipped.
//! 3. In a channel: apply the @everyone overwrite (deny, then allow), then the union of the
//!    member's role overwrites (deny, then allow), then the member's own overwrite (deny,
//!    then allow). Without VIEW_CHANNEL the result is empty (the channel is invisible).
//! 4. A timed-out member keeps only VIEW_CHANNEL and READ_HISTORY.

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::{ApiError, ApiResult};

/// A set of permissions (a bitfield; serialized as a JSON number, every bit below 2^53).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(pub u64);

macro_rules! perms {
    ($($(#[$doc:meta])* $name:ident = $bit:expr;)*) => {
        impl Permissions {
            $($(#[$doc])* pub const $name: Permissions = Permissions(1 << $bit);)*
            /// Every defined permission, with its name (for docs and error messages).
            pub const NAMED: &'static [(&'static str, Permissions)] = &[$((stringify!($name), Permissions::$name)),*];
        }
    };
}

perms! {
    /// See a channel (and that it exists) and its metadata.
    VIEW_CHANNEL = 0;
    /// Post messages in text channels.
    SEND_MESSAGES = 1;
    /// Read messages sent before now.
    READ_HISTORY = 2;
    /// Delete or pin others' messages.
    MANAGE_MESSAGES = 3;
    /// Create, edit and delete channels and their overwrites.
    MANAGE_CHANNELS = 4;
    /// Create, edit, delete and assign roles below one's highest role.
    MANAGE_ROLES = 5;
    /// Edit the server's name, description and icon; list and revoke invites.
    MANAGE_SERVER = 6;
    /// Create invites.
    CREATE_INVITE = 7;
    /// Remove members (they may rejoin).
    KICK_MEMBERS = 8;
    /// Ban and unban users; list bans.
    BAN_MEMBERS = 9;
    /// Time members out.
    MODERATE_MEMBERS = 10;
    /// Mention @everyone.
    MENTION_EVERYONE = 11;
    /// Add reactions.
    ADD_REACTIONS = 12;
    /// Attach files.
    ATTACH_FILES = 13;
    /// Join voice channels.
    CONNECT = 14;
    /// Speak in voice channels.
    SPEAK = 15;
    /// Send video and share the screen in voice channels.
    VIDEO = 16;
    /// Mute others in voice.
    MUTE_MEMBERS = 17;
    /// Move others between voice channels.
    MOVE_MEMBERS = 18;
    /// Read the audit log.
    VIEW_AUDIT_LOG = 19;
    /// Change one's own nickname.
    CHANGE_NICKNAME = 20;
    /// Change others' nicknames.
    MANAGE_NICKNAMES = 21;
    /// Every permission, in every channel, whatever the overwrites.
    ADMINISTRATOR = 22;
}

impl Permissions {
    /// No permission.
    pub const NONE: Permissions = Permissions(0);
    /// Every defined bit.
    pub const ALL: Permissions = Permissions((1 << 23) - 1);
    /// What `@everyone` gets in a new server.
    pub const DEFAULT_EVERYONE: Permissions = Permissions(
        Self::VIEW_CHANNEL.0
            | Self::SEND_MESSAGES.0
            | Self::READ_HISTORY.0
            | Self::CREATE_INVITE.0
            | Self::ADD_REACTIONS.0
            | Self::ATTACH_FILES.0
            | Self::CONNECT.0
            | Self::SPEAK.0
            | Self::VIDEO.0
            | Self::CHANGE_NICKNAME.0,
    );
    /// What a timed-out member keeps.
    pub const TIMEOUT_KEEPS: Permissions = Permissions(Self::VIEW_CHANNEL.0 | Self::READ_HISTORY.0);
    /// Bits a channel overwrite may carry (server-wide powers cannot be overwritten per channel).
    pub const CHANNEL_SCOPED: Permissions = Permissions(
        Self::VIEW_CHANNEL.0
            | Self::SEND_MESSAGES.0
            | Self::READ_HISTORY.0
            | Self::MANAGE_MESSAGES.0
            | Self::MANAGE_CHANNELS.0
            | Self::CREATE_INVITE.0
            | Self::MENTION_EVERYONE.0
            | Self::ADD_REACTIONS.0
            | Self::ATTACH_FILES.0
            | Self::CONNECT.0
            | Self::SPEAK.0
            | Self::VIDEO.0
            | Self::MUTE_MEMBERS.0
            | Self::MOVE_MEMBERS.0,
    );

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union.
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }
    /// These bits minus `other`'s.
    pub fn minus(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }
    /// Intersection.
    pub fn intersect(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }
    /// Bits set here that no permission defines.
    pub fn unknown_bits(self) -> u64 {
        self.0 & !Self::ALL.0
    }
    /// From a stored BIGINT (negative values cannot be stored; treated as none).
    pub fn from_db(v: i64) -> Permissions {
        Permissions(u64::try_from(v).unwrap_or(0)).intersect(Self::ALL)
    }
    /// To a BIGINT (every defined bit fits).
    pub fn to_db(self) -> i64 {
        i64::try_from(self.0 & Self::ALL.0).unwrap_or(0)
    }
    /// Parses a client-supplied bitfield: unknown bits → 422.
    pub fn from_request(field: &str, v: u64) -> ApiResult<Permissions> {
        let p = Permissions(v);
        if p.unknown_bits() != 0 {
            return Err(ApiError::validation(format!(
                "{field} has bits that name no permission (allowed: 0..={})",
                Self::ALL.0
            )));
        }
        Ok(p)
    }
    /// The names of the set bits, e.g. for `missing_permission` messages.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// One channel overwrite: what it allows and denies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overwrite {
    /// Bits granted.
    pub allow: Permissions,
    /// Bits removed.
    pub deny: Permissions,
}

/// What decides a member's permissions in a server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInputs {
    /// The member owns the server.
    pub is_owner: bool,
    /// The @everyone role's permissions.
    pub everyone: Permissions,
    /// The permissions of each of the member's other roles.
    pub roles: Vec<Permissions>,
    /// The member is timed out right now.
    pub timed_out: bool,
}

/// The channel overwrites that apply to one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelOverwrites {
    /// The @everyone role's overwrite.
    pub everyone: Option<Overwrite>,
    /// The overwrites of the member's roles.
    pub roles: Vec<Overwrite>,
    /// The member's own overwrite.
    pub member: Option<Overwrite>,
}

impl ChannelOverwrites {
    /// Files one overwrite row (`target_id`, `target_kind`, `allow`, `deny` from the
    /// `overwrites` table) under @everyone, a role or the member `user_id` of `server_id`
    /// (the @everyone role's id is the server's id).
    pub fn add(
        &mut self,
        server_id: i64,
        user_id: i64,
        target: i64,
        kind: &str,
        allow: i64,
        deny: i64,
    ) {
        let o = Overwrite {
            allow: Permissions::from_db(allow),
            deny: Permissions::from_db(deny),
        };
        match kind {
            "member" if target == user_id => self.member = Some(o),
            "role" if target == server_id => self.everyone = Some(o),
            "role" => self.roles.push(o),
            _ => {}
        }
    }
}

/// Server-wide permissions (step 1, 2 and 4 of the module docs).
pub fn server_permissions(m: &MemberInputs) -> Permissions {
    if m.is_owner {
        return Permissions::ALL;
    }
    let base = m.roles.iter().fold(m.everyone, |acc, r| acc.union(*r));
    let base = if base.contains(Permissions::ADMINISTRATOR) {
        Permissions::ALL
    } else {
        base
    };
    apply_timeout(base, m.timed_out)
}

/// Permissions in one channel (every step of the module docs).
pub fn channel_permissions_for(m: &MemberInputs, ow: &ChannelOverwrites) -> Permissions {
    if m.is_owner {
        return Permissions::ALL;
    }
    let base = m.roles.iter().fold(m.everyone, |acc, r| acc.union(*r));
    if base.contains(Permissions::ADMINISTRATOR) {
        return apply_timeout(Permissions::ALL, m.timed_out);
    }
    let mut p = base;
    if let Some(e) = ow.everyone {
        p = p.minus(e.deny).union(e.allow);
    }
    let (deny, allow) = ow
        .roles
        .iter()
        .fold((Permissions::NONE, Permissions::NONE), |(d, a), o| {
            (d.union(o.deny), a.union(o.allow))
        });
    p = p.minus(deny).union(allow);
    if let Some(o) = ow.member {
        p = p.minus(o.deny).union(o.allow);
    }
    if !p.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    apply_timeout(p, m.timed_out)
}

/// A timed-out member keeps only [`Permissions::TIMEOUT_KEEPS`].
pub fn apply_timeout(p: Permissions, timed_out: bool) -> Permissions {
    if timed_out {
        p.intersect(Permissions::TIMEOUT_KEEPS)
    } else {
        p
    }
}

/// Rank of a member for the hierarchy: the owner ranks above everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// The highest role position (0: only @everyone).
    Position(i32),
    /// The server owner.
    Owner,
}

/// Whether someone of rank `actor` may manage a role at `role_position`: the owner always;
/// others only roles strictly below their highest role.
pub fn can_manage_role(actor: Rank, role_position: i32) -> bool {
    match actor {
        Rank::Owner => true,
        Rank::Position(p) => role_position < p,
    }
}

/// Whether someone of rank `actor` may manage (kick, ban, time out, rename, re-role) a
/// member of rank `target`: the owner always; nobody the owner; others only members whose
/// highest role is strictly below theirs.
pub fn can_manage_member(actor: Rank, target: Rank) -> bool {
    match (actor, target) {
        (Rank::Owner, _) => true,
        (_, Rank::Owner) => false,
        (Rank::Position(a), Rank::Position(t)) => t < a,
    }
}

/// A member's resolved access to a server, loaded by [`server_access`].
#[derive(Clone, Debug)]
pub struct ServerAccess {
    /// The server.
    pub server_id: Id,
    /// The user.
    pub user_id: Id,
    /// The server's owner.
    pub owner_id: Id,
    /// What decided `permissions`.
    pub inputs: MemberInputs,
    /// Server-wide permissions.
    pub permissions: Permissions,
    /// Hierarchy rank.
    pub rank: Rank,
    /// The member's roles (without @everyone).
    pub role_ids: Vec<i64>,
    /// Until when the member is timed out, if they are.
    pub timeout_until: Option<DateTime<Utc>>,
}

impl ServerAccess {
    /// Whether the member owns the server.
    pub fn is_owner(&self) -> bool {
        self.inputs.is_owner
    }
    /// `Ok` when every bit of `p` is held server-wide, else 403 `missing_permission`.
    pub fn require(&self, p: Permissions) -> ApiResult<()> {
        require(self.permissions, p)
    }
}

/// `Ok` when `have` holds every bit of `need`, else 403 `missing_permission` naming them.
pub fn require(have: Permissions, need: Permissions) -> ApiResult<()> {
    if have.contains(need) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "missing_permission",
            format!(
                "missing permission: {}",
                need.minus(have).names().join(", ")
            ),
        ))
    }
}

type AccessRow = (
    i64,
    Option<DateTime<Utc>>,
    bool,
    i64,
    Vec<i64>,
    Vec<i64>,
    i32,
);

/// Loads `user_id`'s access to `server_id`; `None` when the server does not exist or the
/// user is not a member (callers answer 404).
pub async fn server_access(
    db: &PgPool,
    user_id: Id,
    server_id: Id,
) -> ApiResult<Option<ServerAccess>> {
    let row: Option<AccessRow> = sqlx::query_as(
        "SELECT s.owner_id, m.timeout_until, COALESCE(m.timeout_until > now(), FALSE),
                COALESCE((SELECT permissions FROM roles WHERE id = s.id), 0),
                COALESCE(array_agg(r.id) FILTER (WHERE r.id IS NOT NULL), '{}'),
                COALESCE(array_agg(r.permissions) FILTER (WHERE r.id IS NOT NULL), '{}'),
                COALESCE(max(r.position), 0)
           FROM servers s
           JOIN members m ON m.server_id = s.id AND m.user_id = $2
           LEFT JOIN member_roles mr ON mr.server_id = s.id AND mr.user_id = m.user_id
           LEFT JOIN roles r ON r.id = mr.role_id
          WHERE s.id = $1
          GROUP BY s.id, s.owner_id, m.timeout_until",
    )
    .bind(server_id.0)
    .bind(user_id.0)
    .fetch_optional(db)
    .await?;
    let Some((owner_id, timeout_until, timed_out, everyone, role_ids, role_perms, top)) = row
    else {
        return Ok(None);
    };
    let is_owner = owner_id == user_id.0;
    let inputs = MemberInputs {
        is_owner,
        everyone: Permissions::from_db(everyone),
        roles: role_perms.into_iter().map(Permissions::from_db).collect(),
        timed_out: timed_out && !is_owner,
    };
    Ok(Some(ServerAccess {
        server_id,
        user_id,
        owner_id: Id(owner_id),
        permissions: server_permissions(&inputs),
        rank: if is_owner {
            Rank::Owner
        } else {
            Rank::Position(top)
        },
        inputs,
        role_ids,
        timeout_until: timeout_until.filter(|_| timed_out),
    }))
}

/// Like [`server_access`], but a non-member gets 404.
pub async fn require_member(db: &PgPool, user_id: Id, server_id: Id) -> ApiResult<ServerAccess> {
    server_access(db, user_id, server_id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown server"))
}

/// The overwrites of `channel_id` that apply to a member with `role_ids` in `server_id`.
pub async fn overwrites_for(
    db: &PgPool,
    server_id: Id,
    channel_id: Id,
    user_id: Id,
    role_ids: &[i64],
) -> ApiResult<ChannelOverwrites> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT target_id, target_kind, allow, deny FROM overwrites
          WHERE channel_id = $1 AND (target_id = $2 OR target_id = $3 OR target_id = ANY($4))",
    )
    .bind(channel_id.0)
    .bind(server_id.0)
    .bind(user_id.0)
    .bind(role_ids)
    .fetch_all(db)
    .await?;
    let mut out = ChannelOverwrites::default();
    for (target, kind, allow, deny) in rows {
        out.add(server_id.0, user_id.0, target, &kind, allow, deny);
    }
    Ok(out)
}

/// A member's resolved access to one channel.
#[derive(Clone, Debug)]
pub struct ChannelAccess {
    /// Server-level access (roles, rank).
    pub server: ServerAccess,
    /// The channel.
    pub channel_id: Id,
    /// Permissions in the channel (never empty: an invisible channel yields no access).
    pub permissions: Permissions,
}

impl ChannelAccess {
    /// `Ok` when every bit of `p` is held in the channel, else 403 `missing_permission`.
    pub fn require(&self, p: Permissions) -> ApiResult<()> {
        require(self.permissions, p)
    }
}

/// Loads `user_id`'s access to `channel_id`; `None` when the channel does not exist, the user
/// is not a member of its server, or lacks VIEW_CHANNEL there (callers answer 404).
pub async fn channel_access(
    db: &PgPool,
    user_id: Id,
    channel_id: Id,
) -> ApiResult<Option<ChannelAccess>> {
    let server: Option<(i64,)> = sqlx::query_as("SELECT server_id FROM channels WHERE id = $1")
        .bind(channel_id.0)
        .fetch_optional(db)
        .await?;
    let Some((server_id,)) = server else {
        return Ok(None);
    };
    let Some(server) = server_access(db, user_id, Id(server_id)).await? else {
        return Ok(None);
    };
    let ow = overwrites_for(db, Id(server_id), channel_id, user_id, &server.role_ids).await?;
    let permissions = channel_permissions_for(&server.inputs, &ow);
    if !permissions.contains(Permissions::VIEW_CHANNEL) {
        return Ok(None);
    }
    Ok(Some(ChannelAccess {
        server,
        channel_id,
        permissions,
    }))
}

/// `user_id`'s permissions in `channel_id`, for messaging and voice: `None` when they cannot
/// see it (answer 404), else the channel's server and the resolved permissions (a timed-out
/// member has only VIEW_CHANNEL and READ_HISTORY, so SEND_MESSAGES, ADD_REACTIONS, CONNECT
/// and SPEAK are absent).
pub async fn channel_permissions(
    db: &PgPool,
    user_id: Id,
    channel_id: Id,
) -> ApiResult<Option<(Id, Permissions)>> {
    Ok(channel_access(db, user_id, channel_id)
        .await?
        .map(|a| (a.server.server_id, a.permissions)))
}

/// The hierarchy rank of `user_id` in `server_id` (`None`: not a member).
pub async fn member_rank(db: &PgPool, server_id: Id, user_id: Id) -> ApiResult<Option<Rank>> {
    let row: Option<(i64, i32)> = sqlx::query_as(
        "SELECT s.owner_id,
                COALESCE((SELECT max(r.position) FROM member_roles mr JOIN roles r ON r.id = mr.role_id
                           WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id), 0)
           FROM members m JOIN servers s ON s.id = m.server_id
          WHERE m.server_id = $1 AND m.user_id = $2",
    )
    .bind(server_id.0)
    .bind(user_id.0)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(owner, top)| {
        if owner == user_id.0 {
            Rank::Owner
        } else {
            Rank::Position(top)
        }
    }))
}

/// One member's role ids and role permissions, for [`channel_viewers`].
type ViewerRow = (i64, bool, Vec<i64>, Vec<i64>);

/// The members of `server_id` who hold VIEW_CHANNEL in `channel_id` (roles and overwrites
/// resolved exactly as [`channel_permissions_for`] does for one member), ordered by user id.
/// `Err(too_many)` when the server has more than `limit` members: callers must not act on a
/// partial list (room keys would miss readers).
pub async fn channel_viewers(
    db: &PgPool,
    server_id: Id,
    channel_id: Id,
    limit: usize,
) -> ApiResult<Vec<Id>> {
    let head: Option<(i64, i64)> = sqlx::query_as(
        "SELECT s.owner_id, COALESCE((SELECT permissions FROM roles WHERE id = s.id), 0)
           FROM servers s WHERE s.id = $1",
    )
    .bind(server_id.0)
    .fetch_optional(db)
    .await?;
    let Some((owner_id, everyone)) = head else {
        return Ok(Vec::new());
    };
    let members: Vec<ViewerRow> = sqlx::query_as(
        "SELECT m.user_id, COALESCE(m.timeout_until > now(), FALSE),
                COALESCE(array_agg(r.id) FILTER (WHERE r.id IS NOT NULL), '{}'),
                COALESCE(array_agg(r.permissions) FILTER (WHERE r.id IS NOT NULL), '{}')
           FROM members m
           LEFT JOIN member_roles mr ON mr.server_id = m.server_id AND mr.user_id = m.user_id
           LEFT JOIN roles r ON r.id = mr.role_id
          WHERE m.server_id = $1
          GROUP BY m.user_id, m.timeout_until
          ORDER BY m.user_id
          LIMIT $2",
    )
    .bind(server_id.0)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
    .fetch_all(db)
    .await?;
    if members.len() > limit {
        return Err(ApiError::conflict(
            "too_many_readers",
            format!("this server has more than {limit} members: too many to share room keys with"),
        ));
    }
    let overwrites: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT target_id, target_kind, allow, deny FROM overwrites WHERE channel_id = $1",
    )
    .bind(channel_id.0)
    .fetch_all(db)
    .await?;
    let everyone = Permissions::from_db(everyone);
    Ok(members
        .into_iter()
        .filter(|(user_id, timed_out, role_ids, role_perms)| {
            let is_owner = *user_id == owner_id;
            let inputs = MemberInputs {
                is_owner,
                everyone,
                roles: role_perms
                    .iter()
                    .map(|p| Permissions::from_db(*p))
                    .collect(),
                timed_out: *timed_out && !is_owner,
            };
            let mut ow = ChannelOverwrites::default();
            for (target, kind, allow, deny) in &overwrites {
                // Role overwrites count only for the @everyone role and the member's own roles.
                let applies = match kind.as_str() {
                    "role" => *target == server_id.0 || role_ids.contains(target),
                    _ => true,
                };
                if applies {
                    ow.add(server_id.0, *user_id, *target, kind, *allow, *deny);
                }
            }
            channel_permissions_for(&inputs, &ow).contains(Permissions::VIEW_CHANNEL)
        })
        .map(|(user_id, ..)| Id(user_id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    type P = Permissions;

    fn member(everyone: P, roles: &[P]) -> MemberInputs {
        MemberInputs {
            is_owner: false,
            everyone,
            roles: roles.to_vec(),
            timed_out: false,
        }
    }

    fn ow(allow: P, deny: P) -> Option<Overwrite> {
        Some(Overwrite { allow, deny })
    }

    #[test]
    fn bits_are_distinct_and_inside_all() {
        let mut seen = 0u64;
        for (name, p) in P::NAMED {
            assert_eq!(p.0.count_ones(), 1, "{name}");
            assert_eq!(seen & p.0, 0, "{name} reuses a bit");
            seen |= p.0;
        }
        assert_eq!(seen, P::ALL.0);
        const { assert!(P::ALL.0 < (1 << 53)) };
        assert!(P::from_request("p", 1 << 40).is_err());
        assert_eq!(P::from_request("p", 3).unwrap(), Permissions(3));
        assert_eq!(P::from_db(-1), P::NONE);
    }

    #[test]
    fn base_is_everyone_or_roles() {
        let m = member(P::VIEW_CHANNEL, &[P::SEND_MESSAGES, P::KICK_MEMBERS]);
        let p = server_permissions(&m);
        assert!(
            p.contains(
                P::VIEW_CHANNEL
                    .union(P::SEND_MESSAGES)
                    .union(P::KICK_MEMBERS)
            )
        );
        assert!(!p.contains(P::BAN_MEMBERS));
    }

    #[test]
    fn role_allow_overrides_everyone_deny_and_role_deny_is_overridden_by_role_allow() {
        let m = member(P::DEFAULT_EVERYONE, &[P::NONE]);
        // @everyone cannot send here; a role overwrite allows it.
        let o = ChannelOverwrites {
            everyone: ow(P::NONE, P::SEND_MESSAGES),
            roles: vec![Overwrite {
                allow: P::SEND_MESSAGES,
                deny: P::NONE,
            }],
            member: None,
        };
        assert!(channel_permissions_for(&m, &o).contains(P::SEND_MESSAGES));
        // Without the role overwrite the deny holds.
        let o2 = ChannelOverwrites {
            roles: vec![],
            ..o.clone()
        };
        assert!(!channel_permissions_for(&m, &o2).contains(P::SEND_MESSAGES));
        // Two roles: one denies, one allows → allow wins (allows are applied after denies).
        let o3 = ChannelOverwrites {
            everyone: None,
            roles: vec![
                Overwrite {
                    allow: P::NONE,
                    deny: P::ADD_REACTIONS,
                },
                Overwrite {
                    allow: P::ADD_REACTIONS,
                    deny: P::NONE,
                },
            ],
            member: None,
        };
        assert!(channel_permissions_for(&m, &o3).contains(P::ADD_REACTIONS));
        // A role deny alone removes a base permission.
        let o4 = ChannelOverwrites {
            everyone: None,
            roles: vec![Overwrite {
                allow: P::NONE,
                deny: P::ATTACH_FILES,
            }],
            member: None,
        };
        let p = channel_permissions_for(&m, &o4);
        assert!(!p.contains(P::ATTACH_FILES));
        assert!(p.contains(P::SEND_MESSAGES));
    }

    #[test]
    fn member_overwrite_has_the_last_word() {
        let m = member(P::DEFAULT_EVERYONE, &[]);
        let o = ChannelOverwrites {
            everyone: ow(P::SEND_MESSAGES, P::NONE),
            roles: vec![Overwrite {
                allow: P::SEND_MESSAGES,
                deny: P::NONE,
            }],
            member: ow(P::NONE, P::SEND_MESSAGES),
        };
        assert!(!channel_permissions_for(&m, &o).contains(P::SEND_MESSAGES));
        // And a member allow beats a role deny.
        let o = ChannelOverwrites {
            everyone: None,
            roles: vec![Overwrite {
                allow: P::NONE,
                deny: P::VIEW_CHANNEL,
            }],
            member: ow(P::VIEW_CHANNEL, P::NONE),
        };
        assert!(channel_permissions_for(&m, &o).contains(P::VIEW_CHANNEL));
    }

    #[test]
    fn private_channel_hidden_from_everyone_visible_to_listed_member() {
        let hide = ChannelOverwrites {
            everyone: ow(P::NONE, P::VIEW_CHANNEL),
            roles: vec![],
            member: None,
        };
        let m = member(P::DEFAULT_EVERYONE, &[]);
        assert_eq!(channel_permissions_for(&m, &hide), P::NONE);
        let added = ChannelOverwrites {
            member: ow(P::VIEW_CHANNEL, P::NONE),
            ..hide
        };
        assert!(
            channel_permissions_for(&m, &added).contains(P::VIEW_CHANNEL.union(P::SEND_MESSAGES))
        );
    }

    #[test]
    fn administrator_ignores_overwrites_and_owner_bypasses_everything() {
        let admin = member(P::NONE, &[P::ADMINISTRATOR]);
        let deny_all = ChannelOverwrites {
            everyone: ow(P::NONE, P::ALL),
            roles: vec![Overwrite {
                allow: P::NONE,
                deny: P::ALL,
            }],
            member: ow(P::NONE, P::ALL),
        };
        assert_eq!(server_permissions(&admin), P::ALL);
        assert_eq!(channel_permissions_for(&admin, &deny_all), P::ALL);
        let owner = MemberInputs {
            is_owner: true,
            everyone: P::NONE,
            roles: vec![],
            timed_out: true,
        };
        assert_eq!(server_permissions(&owner), P::ALL);
        assert_eq!(channel_permissions_for(&owner, &deny_all), P::ALL);
    }

    #[test]
    fn timeout_keeps_only_view_and_history() {
        let mut m = member(P::DEFAULT_EVERYONE, &[P::KICK_MEMBERS]);
        m.timed_out = true;
        let p = channel_permissions_for(&m, &ChannelOverwrites::default());
        assert_eq!(p, P::VIEW_CHANNEL.union(P::READ_HISTORY));
        for forbidden in [P::SEND_MESSAGES, P::ADD_REACTIONS, P::SPEAK, P::CONNECT] {
            assert!(!p.contains(forbidden));
        }
        assert!(!server_permissions(&m).contains(P::KICK_MEMBERS));
        // Even an administrator is muted while timed out.
        let mut a = member(P::NONE, &[P::ADMINISTRATOR]);
        a.timed_out = true;
        assert_eq!(server_permissions(&a), P::TIMEOUT_KEEPS);
    }

    #[test]
    fn hierarchy() {
        assert!(can_manage_role(Rank::Position(5), 4));
        assert!(!can_manage_role(Rank::Position(5), 5));
        assert!(!can_manage_role(Rank::Position(5), 6));
        assert!(can_manage_role(Rank::Owner, 1000));
        assert!(can_manage_member(Rank::Position(3), Rank::Position(2)));
        assert!(!can_manage_member(Rank::Position(3), Rank::Position(3)));
        assert!(!can_manage_member(Rank::Position(0), Rank::Position(0)));
        assert!(!can_manage_member(Rank::Position(1000), Rank::Owner));
        assert!(can_manage_member(Rank::Owner, Rank::Position(1000)));
    }
}
