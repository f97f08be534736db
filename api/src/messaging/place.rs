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

/// Everything a DM recipient may do.
pub const DM_PERMISSIONS: Permissions = Permissions(
    Permissions::VIEW_CHANNEL.0
        | Permissions::SEND_MESSAGES.0
        | Permissions::READ_HISTORY.0
        | Permissions::ADD_REACTIONS.0
        | Permissions::ATTACH_FILES.0
        | Permissions::MANAGE_MESSAGES.0,
);

type PlaceRow = (
    String,
    Option<i64>,
    Option<String>,
    bool,
    i32,
    Option<i64>,
    bool,
);

impl Place {
    /// Resolves `channel_id` for `user`; `None` when it does not exist or the user cannot see
    /// it (answer 404).
    pub async fn resolve(db: &PgPool, user: Id, channel_id: Id) -> ApiResult<Option<Place>> {
        let row: Option<PlaceRow> = sqlx::query_as(
            "SELECT 'c', c.server_id, c.kind, c.encrypted, c.slowmode_secs, NULL::BIGINT, FALSE
               FROM channels c WHERE c.id = $1
             UNION ALL
             SELECT 't', t.server_id, 'text', c.encrypted, c.slowmode_secs, t.parent_id,
                    t.archived OR t.last_activity_at < now() - make_interval(secs => t.auto_archive_secs)
               FROM threads t JOIN channels c ON c.id = t.parent_id WHERE t.id = $1
             UNION ALL
             SELECT 'd', NULL, d.kind, TRUE, 0, NULL, FALSE
               FROM dm_channels d JOIN dm_recipients r ON r.channel_id = d.id AND r.user_id = $2
              WHERE d.id = $1
             LIMIT 1",
        )
        .bind(channel_id.0)
        .bind(user.0)
        .fetch_optional(db)
        .await?;
        let Some((tag, server_id, kind, encrypted, slowmode_secs, parent, archived)) = row else {
            return Ok(None);
        };
        if tag == "d" {
            return Ok(Some(Place {
                id: channel_id,
                kind: if kind.as_deref() == Some("dm") {
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
        let Some(server_id) = server_id.map(Id) else {
            return Ok(None);
        };
        let perm_channel = parent.map(Id).unwrap_or(channel_id);
        let Some(access) = permissions::server_access(db, user, server_id).await? else {
            return Ok(None);
        };
        let ow = permissions::overwrites_for(db, server_id, perm_channel, user, &access.role_ids)
            .await?;
        let perms = permissions::channel_permissions_for(&access.inputs, &ow);
        if !perms.contains(Permissions::VIEW_CHANNEL) {
            return Ok(None);
        }
        let timeout_left_secs = access
            .timeout_until
            .map(|t| (t - chrono::Utc::now()).num_seconds().max(1) as u64)
            .unwrap_or(0);
        Ok(Some(Place {
            id: channel_id,
            kind: if tag == "t" {
                PlaceKind::Thread
            } else {
                PlaceKind::Channel
            },
            server_id: Some(server_id),
            perm_channel,
            encrypted,
            slowmode_secs,
            permissions: perms,
            timed_out: access.inputs.timed_out,
            timeout_left_secs,
            role_ids: access.role_ids,
            archived,
            is_text: kind.as_deref() == Some("text"),
        }))
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
