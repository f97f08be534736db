//! Members: the object and lookups.

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// A user as shown inside communities.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserSummary {
    /// User id.
    pub id: Id,
    /// Handle.
    pub username: String,
    /// Display name, if set.
    pub display_name: Option<String>,
}

/// A member as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    /// The server.
    pub server_id: Id,
    /// The user.
    pub user: UserSummary,
    /// Server nickname.
    pub nickname: Option<String>,
    /// Role ids (without @everyone).
    pub roles: Vec<Id>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// Timed out until then (absent when not timed out).
    pub timeout_until: Option<DateTime<Utc>>,
}

type MemberRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Vec<i64>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const SELECT: &str = "SELECT m.server_id, u.id, u.username, u.display_name, m.nickname,
        ARRAY(SELECT role_id FROM member_roles mr WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id ORDER BY role_id),
        m.joined_at, CASE WHEN m.timeout_until > now() THEN m.timeout_until END
   FROM members m JOIN users u ON u.id = m.user_id";

fn from_row(r: MemberRow) -> Member {
    Member {
        server_id: Id(r.0),
        user: UserSummary {
            id: Id(r.1),
            username: r.2,
            display_name: r.3,
        },
        nickname: r.4,
        roles: r.5.into_iter().map(Id).collect(),
        joined_at: r.6,
        timeout_until: r.7,
    }
}

/// One member (404 if `user` is not a member of `server`).
pub async fn get(db: &PgPool, server: Id, user: Id) -> ApiResult<Member> {
    let row: Option<MemberRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE m.server_id = $1 AND m.user_id = $2"
    ))
    .bind(server.0)
    .bind(user.0)
    .fetch_optional(db)
    .await?;
    row.map(from_row)
        .ok_or_else(|| ApiError::not_found("unknown member"))
}

/// A page of members ordered by user id, after `after`.
pub async fn page(
    db: &PgPool,
    server: Id,
    after: Option<Id>,
    limit: i64,
) -> ApiResult<Vec<Member>> {
    let rows: Vec<MemberRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE m.server_id = $1 AND ($2::BIGINT IS NULL OR m.user_id > $2)
          ORDER BY m.user_id LIMIT $3"
    ))
    .bind(server.0)
    .bind(after.map(|a| a.0))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A user's public summary (404 if unknown).
pub async fn user_summary(db: &PgPool, user: Id) -> ApiResult<UserSummary> {
    let row: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, username, display_name FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(db)
            .await?;
    row.map(|(id, username, display_name)| UserSummary {
        id: Id(id),
        username,
        display_name,
    })
    .ok_or_else(|| ApiError::not_found("unknown user"))
}
