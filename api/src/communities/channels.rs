//! Channels: categories, text and voice channels, their overwrites, and lookups.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::permissions::{self, Permissions};
use crate::error::{ApiError, ApiResult};

/// What a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Messages.
    Text,
    /// Voice and video.
    Voice,
    /// Groups other channels.
    Category,
}

impl ChannelKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Text => "text",
            ChannelKind::Voice => "voice",
            ChannelKind::Category => "category",
        }
    }
    fn parse(s: &str) -> ChannelKind {
        match s {
            "voice" => ChannelKind::Voice,
            "category" => ChannelKind::Category,
            _ => ChannelKind::Text,
        }
    }
}

/// Whom an overwrite targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverwriteKind {
    /// A role (the server id names @everyone).
    Role,
    /// A member.
    Member,
}

impl OverwriteKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OverwriteKind::Role => "role",
            OverwriteKind::Member => "member",
        }
    }
}

/// A channel overwrite as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverwriteView {
    /// Role id or user id.
    pub target_id: Id,
    /// Which of the two.
    pub kind: OverwriteKind,
    /// Bits granted.
    #[schema(value_type = u64)]
    pub allow: Permissions,
    /// Bits removed.
    #[schema(value_type = u64)]
    pub deny: Permissions,
}

/// A channel as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Channel {
    /// Channel id.
    pub id: Id,
    /// Its server.
    pub server_id: Id,
    /// Text, voice or category.
    pub kind: ChannelKind,
    /// Name (1–100 characters).
    pub name: String,
    /// The category it sits in.
    pub parent_id: Option<Id>,
    /// Sort order among its siblings (lower first).
    pub position: i32,
    /// Topic (≤ 1024 characters).
    pub topic: Option<String>,
    /// Seconds a member must wait between two messages (0: off; members with
    /// MANAGE_MESSAGES or MANAGE_CHANNELS are exempt).
    pub slowmode_secs: i32,
    /// Messages are end-to-end encrypted; set at creation, never turned off.
    pub encrypted: bool,
    /// Permission overwrites.
    pub overwrites: Vec<OverwriteView>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

type ChannelRow = (
    i64,
    i64,
    String,
    String,
    Option<i64>,
    i32,
    Option<String>,
    i32,
    bool,
    DateTime<Utc>,
);

const COLUMNS: &str =
    "id, server_id, kind, name, parent_id, position, topic, slowmode_secs, encrypted, created_at";

fn from_row(r: ChannelRow, overwrites: Vec<OverwriteView>) -> Channel {
    Channel {
        id: Id(r.0),
        server_id: Id(r.1),
        kind: ChannelKind::parse(&r.2),
        name: r.3,
        parent_id: r.4.map(Id),
        position: r.5,
        topic: r.6,
        slowmode_secs: r.7,
        encrypted: r.8,
        overwrites,
        created_at: r.9,
    }
}

async fn overwrites_of(
    db: &PgPool,
    channels: &[i64],
) -> ApiResult<HashMap<i64, Vec<OverwriteView>>> {
    let rows: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT channel_id, target_id, target_kind, allow, deny FROM overwrites
          WHERE channel_id = ANY($1) ORDER BY channel_id, target_id",
    )
    .bind(channels)
    .fetch_all(db)
    .await?;
    let mut out: HashMap<i64, Vec<OverwriteView>> = HashMap::new();
    for (c, t, k, a, d) in rows {
        out.entry(c).or_default().push(OverwriteView {
            target_id: Id(t),
            kind: if k == "member" {
                OverwriteKind::Member
            } else {
                OverwriteKind::Role
            },
            allow: Permissions::from_db(a),
            deny: Permissions::from_db(d),
        });
    }
    Ok(out)
}

/// Loads a channel (no visibility check).
pub async fn get(db: &PgPool, id: Id) -> ApiResult<Channel> {
    let row: Option<ChannelRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM channels WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(db)
            .await?;
    let row = row.ok_or_else(|| ApiError::not_found("unknown channel"))?;
    let mut ow = overwrites_of(db, &[row.0]).await?;
    let o = ow.remove(&row.0).unwrap_or_default();
    Ok(from_row(row, o))
}

/// The channels of a server that `access` may see, in display order.
pub async fn visible(db: &PgPool, access: &permissions::ServerAccess) -> ApiResult<Vec<Channel>> {
    let rows: Vec<ChannelRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM channels WHERE server_id = $1 ORDER BY position, id LIMIT $2"
    ))
    .bind(access.server_id.0)
    .bind(super::MAX_CHANNELS_PER_SERVER)
    .fetch_all(db)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut ow = overwrites_of(db, &ids).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let o = ow.remove(&r.0).unwrap_or_default();
        let applicable = applicable(access, &o);
        let p = permissions::channel_permissions_for(&access.inputs, &applicable);
        if p.contains(Permissions::VIEW_CHANNEL) {
            out.push(from_row(r, o));
        }
    }
    Ok(out)
}

/// The overwrites among `all` that apply to the member of `access`.
pub fn applicable(
    access: &permissions::ServerAccess,
    all: &[OverwriteView],
) -> permissions::ChannelOverwrites {
    let mut out = permissions::ChannelOverwrites::default();
    for o in all {
        let ow = permissions::Overwrite {
            allow: o.allow,
            deny: o.deny,
        };
        match o.kind {
            OverwriteKind::Member if o.target_id == access.user_id => out.member = Some(ow),
            OverwriteKind::Role if o.target_id == access.server_id => out.everyone = Some(ow),
            OverwriteKind::Role if access.role_ids.contains(&o.target_id.0) => out.roles.push(ow),
            _ => {}
        }
    }
    out
}
