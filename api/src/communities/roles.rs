//! Roles: the object and lookups. The @everyone role has the server's id and position 0.

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::permissions::Permissions;
use crate::error::{ApiError, ApiResult};

/// A role as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Role {
    /// Role id (the server id for @everyone).
    pub id: Id,
    /// Its server.
    pub server_id: Id,
    /// Name (1–100 characters).
    pub name: String,
    /// RGB colour, 0 for none.
    pub color: i32,
    /// Rank: higher ranks higher; @everyone is 0.
    pub position: i32,
    /// Permission bitfield (see docs/permissions.md).
    #[schema(value_type = u64)]
    pub permissions: Permissions,
    /// Shown separately in the member list.
    pub hoist: bool,
    /// May be mentioned by anyone.
    pub mentionable: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

type RoleRow = (i64, i64, String, i32, i32, i64, bool, bool, DateTime<Utc>);

const COLUMNS: &str =
    "id, server_id, name, color, position, permissions, hoist, mentionable, created_at";

fn from_row(r: RoleRow) -> Role {
    Role {
        id: Id(r.0),
        server_id: Id(r.1),
        name: r.2,
        color: r.3,
        position: r.4,
        permissions: Permissions::from_db(r.5),
        hoist: r.6,
        mentionable: r.7,
        created_at: r.8,
    }
}

/// The roles of a server, lowest first.
pub async fn list(db: &PgPool, server: Id) -> ApiResult<Vec<Role>> {
    let rows: Vec<RoleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM roles WHERE server_id = $1 ORDER BY position, id LIMIT $2"
    ))
    .bind(server.0)
    .bind(super::MAX_ROLES_PER_SERVER)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// One role of `server` (404 if it belongs to another server).
pub async fn get(db: impl sqlx::PgExecutor<'_>, server: Id, role: Id) -> ApiResult<Role> {
    let row: Option<RoleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM roles WHERE id = $1 AND server_id = $2"
    ))
    .bind(role.0)
    .bind(server.0)
    .fetch_optional(db)
    .await?;
    row.map(from_row)
        .ok_or_else(|| ApiError::not_found("unknown role"))
}
