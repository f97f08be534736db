//! Moderation: bans (kicks and timeouts are member changes; see the routes).

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::members::UserSummary;
use crate::error::ApiResult;

/// Longest message-deletion window on ban, in seconds (7 days).
pub const MAX_DELETE_MESSAGE_SECS: i32 = 7 * 24 * 3600;

/// A ban as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ban {
    /// The banned user.
    pub user: UserSummary,
    /// Why (the audit reason given when banning).
    pub reason: Option<String>,
    /// Who banned them.
    pub moderator_id: Option<Id>,
    /// Seconds of their most recent messages deleted with the ban.
    pub delete_message_secs: i32,
    /// When.
    pub created_at: DateTime<Utc>,
}

type BanRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i32,
    DateTime<Utc>,
);

/// A page of a server's bans ordered by user id, after `after`.
pub async fn list(db: &PgPool, server: Id, after: Option<Id>, limit: i64) -> ApiResult<Vec<Ban>> {
    let rows: Vec<BanRow> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, b.reason, b.moderator_id, b.delete_message_secs, b.created_at
           FROM bans b JOIN users u ON u.id = b.user_id
          WHERE b.server_id = $1 AND ($2::BIGINT IS NULL OR b.user_id > $2)
          ORDER BY b.user_id LIMIT $3",
    )
    .bind(server.0)
    .bind(after.map(|a| a.0))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Ban {
            user: UserSummary {
                id: Id(r.0),
                username: r.1,
                display_name: r.2,
            },
            reason: r.3,
            moderator_id: r.4.map(Id),
            delete_message_secs: r.5,
            created_at: r.6,
        })
        .collect())
}

/// Whether `user` is banned from `server`.
pub async fn is_banned(db: &PgPool, server: Id, user: Id) -> ApiResult<bool> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM bans WHERE server_id = $1 AND user_id = $2")
            .bind(server.0)
            .bind(user.0)
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}
