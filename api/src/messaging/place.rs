//! Places where messages live — a server text channel, a thread of one, or a DM / group DM —
//! and what the caller may do there.
//!
//! Visibility rules (404 for anything the caller cannot see, never 403):
//! - server channel: [`crate::communities::permissions`] resolution (VIEW_CHANNEL);
//! - thread: exactly the parent channel's permissions;
//! - DM / group DM: being a recipient; recipients may send, read, react, attach and pin.

use copains_wire::Id;
use copains_wire::events::Audience;
use sqlx::PgPool;

use crate::communities::permissions::{self, Permissions};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use std::sync::Arc;

/// What kind of place a channel id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceKind {
    /// A server text channel.
    Channel,
    /// A thread of a server text channel.
    Thread,
    /// A 1:1 DM.
    Dm,
    /// A group DM.
    GroupDm,
}

/// A resolved place and the caller's rights there.
#[derive(Debug, Clone)]
pub struct Place {
    /// The place's id (the `channel_id` of its messages).
    pub id: Id,
    /// What it is.
    pub kind: PlaceKind,
    /// The server, `None` for DMs.
    pub server_id: Option<Id>,
    /// For threads: the parent channel (whose permissions apply); else the place itself.
    pub perm_channel: Id,
    /// Messages must be encrypted envelopes.
    pub encrypted: bool,
    /// Slow mode of the channel (threads inherit their parent's).
    pub slowmode_secs: i32,
    /// The caller's permissions here.
    pub permissions: Permissions,
    /// The caller is timed out in the server.
    pub timed_out: bool,
    /// Seconds left on the caller's timeout (0 when not timed out).
    pub timeout_left_secs: u64,
    /// The caller's roles in the server (for role mention counts).
    pub role_ids: Vec<i64>,
    /// Archived thread (no new messages).
    pub archived: bool,
    /// A text place (voice channels and categories hold no messages).
    pub is_text: bool,
}

/// The most readers [`Place::readers`] lists for a server place (room keys are shared with
/// each reader's devices one by one, so larger encrypted places are refused).
pub const MAX_PLACE_READERS: usize = 5000;

/// Everything a DM recipient may do.
pub const DM_PERMISSIONS: Permissions = Permissions(
    Permissions::VIEW_CHANNEL.0
        | Permissions::SEND_MESSAGES.0
        | Permissions::READ_HISTORY.0
        | Permissions::ADD_REACTIONS.0
        | Permissions::ATTACH_FILES.0
        | Permissions::MANAGE_MESSAGES.0,
);

/// Everything [`Place::resolve`] needs, loaded in one query.
#[derive(sqlx::FromRow)]
struct PlaceRow {
    tag: String,
    server_id: Option<i64>,
    kind: Option<String>,
    encrypted: bool,
    slowmode_secs: i32,
    perm_channel: i64,
    archived: bool,
    owner_id: Option<i64>,
    is_member: bool,
    timed_out: bool,
    timeout_until: Option<chrono::DateTime<chrono::Utc>>,
    everyone: i64,
    role_ids: Vec<i64>,
    role_perms: Vec<i64>,
    ow_targets: Vec<i64>,
    ow_kinds: Vec<String>,
    ow_allow: Vec<i64>,
    ow_deny: Vec<i64>,
}

/// The place, the caller's membership, roles and the applicable overwrites in one round trip
/// (the same inputs as `communities::permissions::{server_access, overwrites_for}`).
const RESOLVE: &str = "
WITH p AS (
    SELECT 'c'::TEXT AS tag, c.server_id AS server_id, c.kind AS kind, c.encrypted AS encrypted,
           c.slowmode_secs AS slowmode_secs, c.id AS perm_channel, FALSE AS archived
      FROM channels c WHERE c.id = $1
    UNION ALL
    SELECT 't', t.server_id, 'text', c.encrypted, c.slowmode_secs, t.parent_id,
           t.archived OR t.last_activity_at < now() - make_interval(secs => t.auto_archive_secs)
      FROM threads t JOIN channels c ON c.id = t.parent_id WHERE t.id = $1
    UNION ALL
    SELECT 'd', NULL, d.kind, TRUE, 0, d.id, FALSE
      FROM dm_channels d JOIN dm_recipients r ON r.channel_id = d.id AND r.user_id = $2
     WHERE d.id = $1
    LIMIT 1
), mr AS (
    SELECT r.id, r.permissions FROM p
      JOIN member_roles x ON x.server_id = p.server_id AND x.user_id = $2
      JOIN roles r ON r.id = x.role_id
), ow AS (
    SELECT o.target_id, o.target_kind, o.allow, o.deny FROM p
      JOIN overwrites o ON o.channel_id = p.perm_channel
     WHERE p.tag <> 'd'
       AND (o.target_id = p.server_id OR o.target_id = $2 OR o.target_id IN (SELECT id FROM mr))
)
SELECT p.tag, p.server_id, p.kind, p.encrypted, p.slowmode_secs, p.perm_channel, p.archived,
       s.owner_id, (m.user_id IS NOT NULL) AS is_member,
       COALESCE(m.timeout_until > now(), FALSE) AS timed_out, m.timeout_until,
       COALESCE((SELECT permissions FROM roles WHERE id = p.server_id), 0) AS everyone,
       COALESCE((SELECT array_agg(id ORDER BY id) FROM mr), '{}') AS role_ids,
       COALESCE((SELECT array_agg(permissions ORDER BY id) FROM mr), '{}') AS role_perms,
       COALESCE((SELECT array_agg(target_id ORDER BY target_id) FROM ow), '{}') AS ow_targets,
       COALESCE((SELECT array_agg(target_kind ORDER BY target_id) FROM ow), '{}') AS ow_kinds,
       COALESCE((SELECT array_agg(allow ORDER BY target_id) FROM ow), '{}') AS ow_allow,
       COALESCE((SELECT array_agg(deny ORDER BY target_id) FROM ow), '{}') AS ow_deny
  FROM p
  LEFT JOIN servers s ON s.id = p.server_id
  LEFT JOIN members m ON m.server_id = p.server_id AND m.user_id = $2";

impl Place {
    /// Resolves `channel_id` for `user`; `None` when it does not exist or the user cannot see
    /// it (answer 404). One query; permissions are resolved by
    /// [`permissions::channel_permissions_for`] exactly as for any server channel.
    pub async fn resolve(db: &PgPool, user: Id, channel_id: Id) -> ApiResult<Option<Place>> {
        let row: Option<PlaceRow> = sqlx::query_as(RESOLVE)
            .bind(channel_id.0)
            .bind(user.0)
            .fetch_optional(db)
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        if r.tag == "d" {
            return Ok(Some(Place {
                id: channel_id,
                kind: if r.kind.as_deref() == Some("dm") {
                    PlaceKind::Dm
                } else {
                    PlaceKind::GroupDm
                },
                server_id: None,
                perm_channel: channel_id,
                encrypted: true,
                slowmode_secs: 0,
                permissions: DM_PERMISSIONS,
                timed_out: false,
                timeout_left_secs: 0,
                role_ids: Vec::new(),
                archived: false,
                is_text: true,
            }));
        }
        let (Some(server), Some(owner)) = (r.server_id, r.owner_id) else {
            return Ok(None);
        };
        if !r.is_member {
            return Ok(None);
        }
        let is_owner = owner == user.0;
        let inputs = permissions::MemberInputs {
            is_owner,
            everyone: Permissions::from_db(r.everyone),
            roles: r
                .role_perms
                .iter()
                .map(|p| Permissions::from_db(*p))
                .collect(),
            timed_out: r.timed_out && !is_owner,
        };
        let mut ow = permissions::ChannelOverwrites::default();
        for (((target, kind), allow), deny) in r
            .ow_targets
            .iter()
            .zip(&r.ow_kinds)
            .zip(&r.ow_allow)
            .zip(&r.ow_deny)
        {
            ow.add(server, user.0, *target, kind, *allow, *deny);
        }
        let perms = permissions::channel_permissions_for(&inputs, &ow);
        if !perms.contains(Permissions::VIEW_CHANNEL) {
            return Ok(None);
        }
        let timeout_left_secs = match (inputs.timed_out, r.timeout_until) {
            (true, Some(t)) => (t - chrono::Utc::now()).num_seconds().max(1) as u64,
            _ => 0,
        };
        Ok(Some(Place {
            id: channel_id,
            kind: if r.tag == "t" {
                PlaceKind::Thread
            } else {
                PlaceKind::Channel
            },
            server_id: Some(Id(server)),
            perm_channel: Id(r.perm_channel),
            encrypted: r.encrypted,
            slowmode_secs: r.slowmode_secs,
            permissions: perms,
            timed_out: inputs.timed_out,
            timeout_left_secs,
            role_ids: r.role_ids,
            archived: r.archived,
            is_text: r.kind.as_deref() == Some("text"),
        }))
    }

    /// Like [`Place::require`], served from this node's [`PlaceCache`] when fresh (see
    /// `messaging::place_cache` for when entries are invalidated).
    ///
    /// [`PlaceCache`]: super::place_cache::PlaceCache
    pub async fn require_cached(
        state: &AppState,
        user: Id,
        channel_id: Id,
    ) -> ApiResult<Arc<Place>> {
        if let Some(p) = state.places.get(user, channel_id) {
            return Ok(p);
        }
        let epoch = state.places.epoch();
        let place = Arc::new(Self::require(&state.db, user, channel_id).await?);
        state.places.put(user, channel_id, place.clone(), epoch);
        Ok(place)
    }

    /// Like [`Place::resolve`], but 404 when invisible.
    pub async fn require(db: &PgPool, user: Id, channel_id: Id) -> ApiResult<Place> {
        Self::resolve(db, user, channel_id)
            .await?
            .ok_or_else(|| ApiError::not_found("unknown channel"))
    }

    /// 403 `missing_permission` unless every bit of `p` is held here.
    pub fn require_perm(&self, p: Permissions) -> ApiResult<()> {
        permissions::require(self.permissions, p)
    }

    /// Whether this is a DM or group DM.
    pub fn is_dm(&self) -> bool {
        matches!(self.kind, PlaceKind::Dm | PlaceKind::GroupDm)
    }

    /// Every user who may read this place now, ordered by id: for a server channel or thread,
    /// the members with VIEW_CHANNEL on [`Place::perm_channel`] (at most
    /// [`MAX_PLACE_READERS`], else 409 `too_many_readers`); for a DM, its recipients. The one
    /// answer to "who gets this place's room keys".
    pub async fn readers(&self, db: &PgPool) -> ApiResult<Vec<Id>> {
        match self.server_id {
            None => super::dms::recipient_ids(db, self.id).await,
            Some(server) => {
                permissions::channel_viewers(db, server, self.perm_channel, MAX_PLACE_READERS).await
            }
        }
    }

    /// Who receives this place's events. Server places: the (parent) channel's audience
    /// (the gateway checks VIEW_CHANNEL). DMs: the channel and, explicitly, its recipients.
    pub async fn audience(&self, db: &PgPool) -> ApiResult<Vec<Audience>> {
        if self.is_dm() {
            let users = super::dms::recipient_ids(db, self.id).await?;
            Ok(vec![
                Audience::Channel {
                    server_id: None,
                    channel_id: self.id,
                },
                Audience::Users(users),
            ])
        } else {
            Ok(vec![Audience::Channel {
                server_id: self.server_id,
                channel_id: self.perm_channel,
            }])
        }
    }
}
