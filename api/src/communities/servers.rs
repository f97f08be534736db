//! Servers: the object, creation (owner, @everyone, a first channel) and lookups.

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::permissions::Permissions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A server as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Server {
    /// Server id (also the id of its @everyone role).
    pub id: Id,
    /// Name (1–100 characters).
    pub name: String,
    /// Description (≤ 1024 characters).
    pub description: Option<String>,
    /// Icon URL or attachment reference (≤ 512 characters).
    pub icon: Option<String>,
    /// The owner.
    pub owner_id: Id,
    /// Number of members.
    pub member_count: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

type ServerRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    DateTime<Utc>,
);

const SERVER_COLUMNS: &str = "s.id, s.name, s.description, s.icon, s.owner_id,
    (SELECT count(*) FROM members c WHERE c.server_id = s.id), s.created_at";

fn from_row(r: ServerRow) -> Server {
    Server {
        id: Id(r.0),
        name: r.1,
        description: r.2,
        icon: r.3,
        owner_id: Id(r.4),
        member_count: r.5,
        created_at: r.6,
    }
}

/// Loads a server (no visibility check: callers check membership first).
pub async fn get(db: &PgPool, id: Id) -> ApiResult<Server> {
    let row: Option<ServerRow> = sqlx::query_as(&format!(
        "SELECT {SERVER_COLUMNS} FROM servers s WHERE s.id = $1"
    ))
    .bind(id.0)
    .fetch_optional(db)
    .await?;
    row.map(from_row)
        .ok_or_else(|| ApiError::not_found("unknown server"))
}

/// The servers `user` belongs to, oldest first (at most [`super::MAX_SERVERS_PER_USER`]).
pub async fn of_user(db: &PgPool, user: Id) -> ApiResult<Vec<Server>> {
    let rows: Vec<ServerRow> = sqlx::query_as(&format!(
        "SELECT {SERVER_COLUMNS} FROM servers s JOIN members m ON m.server_id = s.id
          WHERE m.user_id = $1 ORDER BY s.id LIMIT $2"
    ))
    .bind(user.0)
    .bind(super::MAX_SERVERS_PER_USER)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Refuses when `user` already belongs to [`super::MAX_SERVERS_PER_USER`] servers.
pub async fn check_server_quota(db: impl sqlx::PgExecutor<'_>, user: Id) -> ApiResult<()> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM members WHERE user_id = $1")
        .bind(user.0)
        .fetch_one(db)
        .await?;
    if n >= super::MAX_SERVERS_PER_USER {
        return Err(ApiError::conflict(
            "too_many_servers",
            format!(
                "you may belong to at most {} servers",
                super::MAX_SERVERS_PER_USER
            ),
        ));
    }
    Ok(())
}

/// Creates a server owned by `owner`, with its @everyone role (default permissions), the
/// owner as first member, and the channels a new server starts with: a "Text channels"
/// category holding `#general` and a "Voice channels" category holding a "General" voice
/// channel.
pub async fn create(
    state: &AppState,
    owner: Id,
    name: &str,
    description: Option<&str>,
    icon: Option<&str>,
) -> ApiResult<Server> {
    let id = state.ids.next();
    let mut tx = state.db.begin().await?;
    // Serialise this user's joins and creations so the quota holds under concurrency.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(owner.0)
        .execute(&mut *tx)
        .await?;
    check_server_quota(&mut *tx, owner).await?;
    sqlx::query(
        "INSERT INTO servers (id, owner_id, name, description, icon) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.0)
    .bind(owner.0)
    .bind(name)
    .bind(description)
    .bind(icon)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO roles (id, server_id, name, position, permissions) VALUES ($1, $1, '@everyone', 0, $2)",
    )
    .bind(id.0)
    .bind(Permissions::DEFAULT_EVERYONE.to_db())
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO members (server_id, user_id) VALUES ($1, $2)")
        .bind(id.0)
        .bind(owner.0)
        .execute(&mut *tx)
        .await?;
    // `#general` takes the first id so it stays first in the listing (position, then id).
    let general = state.ids.next();
    let text_cat = state.ids.next();
    let voice_cat = state.ids.next();
    let voice = state.ids.next();
    sqlx::query(
        "INSERT INTO channels (id, server_id, kind, name, parent_id, position) VALUES \
         ($3, $1, 'category', 'Text channels', NULL, 0), \
         ($4, $1, 'category', 'Voice channels', NULL, 1), \
         ($2, $1, 'text', 'general', $3, 0), \
         ($5, $1, 'voice', 'General', $4, 0)",
    )
    .bind(id.0)
    .bind(general.0)
    .bind(text_cat.0)
    .bind(voice_cat.0)
    .bind(voice.0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get(&state.db, id).await
}

/// The ids of every member of a server (for scope-change events), at most `cap`.
pub async fn member_ids(db: &PgPool, server: Id, cap: i64) -> ApiResult<Vec<Id>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT user_id FROM members WHERE server_id = $1 ORDER BY user_id LIMIT $2",
    )
    .bind(server.0)
    .bind(cap)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(u,)| Id(u)).collect())
}
