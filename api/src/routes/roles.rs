//! `/servers/{id}/roles`: list, create, update, delete, reorder. Nobody manages a role at
//! or above their own highest role (the owner excepted), nor grants permissions they lack.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use copains_wire::events::{Audience, Event};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::audit::{self, Action, AuditReason, Entry};
use crate::communities::permissions::{self, Permissions, ServerAccess};
use crate::communities::roles::{self, Role};
use crate::communities::{self as c, events, servers};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path};
use crate::state::AppState;

/// The role routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role, reorder_roles))
        .routes(routes!(update_role, delete_role))
}

/// `POST /servers/{id}/roles` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewRole {
    /// Name (1–100 characters).
    pub name: String,
    /// Permission bitfield (default 0); only permissions you hold.
    #[schema(minimum = 0, maximum = 8388607)]
    pub permissions: Option<u64>,
    /// RGB colour (0–16777215).
    #[schema(minimum = 0, maximum = 16777215)]
    pub color: Option<i32>,
    /// Shown separately in the member list.
    pub hoist: Option<bool>,
    /// May be mentioned by anyone.
    pub mentionable: Option<bool>,
}

/// `PATCH /servers/{id}/roles/{role_id}` body; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateRole {
    /// New name (not for @everyone).
    pub name: Option<String>,
    /// New permission bitfield; only permissions you hold may be added.
    #[schema(minimum = 0, maximum = 8388607)]
    pub permissions: Option<u64>,
    /// New colour.
    #[schema(minimum = 0, maximum = 16777215)]
    pub color: Option<i32>,
    /// Shown separately.
    pub hoist: Option<bool>,
    /// Mentionable.
    pub mentionable: Option<bool>,
}

/// One entry of a reorder.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RolePosition {
    /// The role (not @everyone).
    pub id: Id,
    /// Its new position (≥ 1); positions are renumbered 1..n afterwards, keeping the order.
    #[schema(minimum = 1, maximum = 10000)]
    pub position: i32,
}

fn check_color(c: Option<i32>) -> ApiResult<()> {
    if let Some(c) = c
        && !(0..=0xFF_FFFF).contains(&c)
    {
        return Err(ApiError::validation("color must be between 0 and 16777215"));
    }
    Ok(())
}

/// Refuses to grant permissions the actor lacks (the owner may grant anything).
fn check_grant(access: &ServerAccess, old: Permissions, new: Permissions) -> ApiResult<()> {
    if access.is_owner() {
        return Ok(());
    }
    let added = new.minus(old);
    if !access.permissions.contains(added) {
        return Err(ApiError::forbidden(
            "missing_permission",
            format!(
                "you cannot grant permissions you do not have: {}",
                added.minus(access.permissions).names().join(", ")
            ),
        ));
    }
    Ok(())
}

fn hierarchy_error() -> ApiError {
    ApiError::forbidden(
        "role_hierarchy",
        "you can only manage roles below your highest role",
    )
}

/// The roles of a server I belong to, lowest first.
#[utoipa::path(get, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id")),
    responses((status = 200, body = Vec<Role>)))]
pub async fn list_roles(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
) -> ApiResult<axum::Json<Vec<Role>>> {
    permissions::require_member(&state.db, auth.user_id, server_id).await?;
    Ok(axum::Json(roles::list(&state.db, server_id).await?))
}

/// Create a role (MANAGE_ROLES). It is placed at position 1, just above @everyone.
#[utoipa::path(post, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = NewRole, responses((status = 201, body = Role), (status = 409, description = "Limit reached or conflicting state", body = crate::error::ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<NewRole>,
) -> ApiResult<(StatusCode, axum::Json<Role>)> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MANAGE_ROLES)?;
    let name = c::name("name", &req.name, 100)?;
    let perms = Permissions::from_request("permissions", req.permissions.unwrap_or(0))?;
    check_color(req.color)?;
    check_grant(&access, Permissions::NONE, perms)?;
    let id = state.ids.next();
    let mut tx = state.db.begin().await?;
    // Serialise role changes of this server (positions are renumbered).
    sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR NO KEY UPDATE")
        .bind(server_id.0)
        .execute(&mut *tx)
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM roles WHERE server_id = $1")
        .bind(server_id.0)
        .fetch_one(&mut *tx)
        .await?;
    if n >= c::MAX_ROLES_PER_SERVER {
        return Err(ApiError::conflict(
            "too_many_roles",
            format!(
                "a server may have at most {} roles",
                c::MAX_ROLES_PER_SERVER
            ),
        ));
    }
    sqlx::query("UPDATE roles SET position = position + 1 WHERE server_id = $1 AND position >= 1")
        .bind(server_id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO roles (id, server_id, name, color, position, permissions, hoist, mentionable)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7)",
    )
    .bind(id.0)
    .bind(server_id.0)
    .bind(&name)
    .bind(req.color.unwrap_or(0))
    .bind(perms.to_db())
    .bind(req.hoist.unwrap_or(false))
    .bind(req.mentionable.unwrap_or(false))
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::RoleCreate,
            target: Some(id),
            changes: json!({"name": name, "permissions": perms}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let role = roles::get(&state.db, server_id, id).await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::RoleCreate {
            server_id,
            role: events::value(&role),
        },
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(role)))
}

/// Change a role below your highest role (MANAGE_ROLES).
#[utoipa::path(patch, path = "/servers/{server_id}/roles/{role_id}", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("role_id" = String, Path, description = "Role id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = UpdateRole, responses((status = 200, body = Role)))]
pub async fn update_role(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, role_id)): Path<(Id, Id)>,
    Json(req): Json<UpdateRole>,
) -> ApiResult<axum::Json<Role>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    let old = roles::get(&state.db, server_id, role_id).await?;
    access.require(Permissions::MANAGE_ROLES)?;
    if !permissions::can_manage_role(access.rank, old.position) {
        return Err(hierarchy_error());
    }
    let name = match &req.name {
        Some(_) if role_id == server_id => {
            return Err(ApiError::validation("@everyone cannot be renamed"));
        }
        Some(n) => Some(c::name("name", n, 100)?),
        None => None,
    };
    let perms = req
        .permissions
        .map(|p| Permissions::from_request("permissions", p))
        .transpose()?;
    check_color(req.color)?;
    if let Some(p) = perms {
        check_grant(&access, old.permissions, p)?;
    }
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE roles SET name = COALESCE($3, name), permissions = COALESCE($4, permissions),
            color = COALESCE($5, color), hoist = COALESCE($6, hoist), mentionable = COALESCE($7, mentionable)
          WHERE id = $1 AND server_id = $2",
    )
    .bind(role_id.0)
    .bind(server_id.0)
    .bind(&name)
    .bind(perms.map(Permissions::to_db))
    .bind(req.color)
    .bind(req.hoist)
    .bind(req.mentionable)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::RoleUpdate,
            target: Some(role_id),
            changes: json!({
                "name": name.as_ref().map(|n| json!({"old": old.name, "new": n})),
                "permissions": perms.map(|p| json!({"old": old.permissions, "new": p})),
                "color": req.color, "hoist": req.hoist, "mentionable": req.mentionable,
            }),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let role = roles::get(&state.db, server_id, role_id).await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::RoleUpdate {
            server_id,
            role: events::value(&role),
        },
    )
    .await;
    if perms.is_some() {
        role_scope_changed(&state, server_id, role_id).await?;
    }
    Ok(axum::Json(role))
}

/// Publishes scope changes for the holders of a role (every member for @everyone).
async fn role_scope_changed(state: &AppState, server_id: Id, role_id: Id) -> ApiResult<()> {
    let users = if role_id == server_id {
        servers::member_ids(&state.db, server_id, 100_000).await?
    } else {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT user_id FROM member_roles WHERE role_id = $1 ORDER BY user_id LIMIT 100000",
        )
        .bind(role_id.0)
        .fetch_all(&state.db)
        .await?;
        rows.into_iter().map(|(u,)| Id(u)).collect()
    };
    events::scope_changed(state, &users).await;
    Ok(())
}

/// Delete a role below your highest role (MANAGE_ROLES); @everyone cannot be deleted.
#[utoipa::path(delete, path = "/servers/{server_id}/roles/{role_id}", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("role_id" = String, Path, description = "Role id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_role(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, role_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    let old = roles::get(&state.db, server_id, role_id).await?;
    access.require(Permissions::MANAGE_ROLES)?;
    if role_id == server_id {
        return Err(ApiError::validation("@everyone cannot be deleted"));
    }
    if !permissions::can_manage_role(access.rank, old.position) {
        return Err(hierarchy_error());
    }
    let holders: Vec<(i64,)> =
        sqlx::query_as("SELECT user_id FROM member_roles WHERE role_id = $1 LIMIT 100000")
            .bind(role_id.0)
            .fetch_all(&state.db)
            .await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR NO KEY UPDATE")
        .bind(server_id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM overwrites WHERE target_id = $1 AND target_kind = 'role'
            AND channel_id IN (SELECT id FROM channels WHERE server_id = $2)",
    )
    .bind(role_id.0)
    .bind(server_id.0)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM roles WHERE id = $1 AND server_id = $2")
        .bind(role_id.0)
        .bind(server_id.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE roles SET position = position - 1 WHERE server_id = $1 AND position > $2")
        .bind(server_id.0)
        .bind(old.position)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::RoleDelete,
            target: Some(role_id),
            changes: json!({"name": old.name, "permissions": old.permissions}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::RoleDelete { server_id, role_id },
    )
    .await;
    let holders: Vec<Id> = holders.into_iter().map(|(u,)| Id(u)).collect();
    events::scope_changed(&state, &holders).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Reorder roles (MANAGE_ROLES): only roles below your highest, only to positions below it.
/// Returns every role, lowest first.
#[utoipa::path(patch, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = Vec<RolePosition>, responses((status = 200, body = Vec<Role>)))]
pub async fn reorder_roles(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<Vec<RolePosition>>,
) -> ApiResult<axum::Json<Vec<Role>>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MANAGE_ROLES)?;
    if req.is_empty() || req.len() > c::MAX_ROLES_PER_SERVER as usize {
        return Err(ApiError::validation("give 1 to 250 roles to move"));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR NO KEY UPDATE")
        .bind(server_id.0)
        .execute(&mut *tx)
        .await?;
    let current: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT id, position FROM roles WHERE server_id = $1 AND id <> server_id ORDER BY position, id",
    )
    .bind(server_id.0)
    .fetch_all(&mut *tx)
    .await?;
    // Sort key per role: (position, moved first?, id). Moved roles take their new position.
    let mut order: Vec<(i32, u8, i64)> = Vec::with_capacity(current.len());
    for (id, pos) in &current {
        match req.iter().find(|r| r.id.0 == *id) {
            Some(r) => {
                if !(1..=10_000).contains(&r.position) {
                    return Err(ApiError::validation("position must be between 1 and 10000"));
                }
                if !permissions::can_manage_role(access.rank, *pos)
                    || !permissions::can_manage_role(access.rank, r.position)
                {
                    return Err(hierarchy_error());
                }
                order.push((r.position, 0, *id));
            }
            None => order.push((*pos, 1, *id)),
        }
    }
    if req
        .iter()
        .any(|r| !current.iter().any(|(id, _)| *id == r.id.0))
    {
        return Err(ApiError::validation(
            "every id must be a role of this server (not @everyone)",
        ));
    }
    order.sort_unstable();
    let ids: Vec<i64> = order.iter().map(|(_, _, id)| *id).collect();
    sqlx::query(
        "UPDATE roles r SET position = o.n FROM unnest($2::BIGINT[]) WITH ORDINALITY AS o(id, n)
          WHERE r.id = o.id AND r.server_id = $1",
    )
    .bind(server_id.0)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    // Renumbering must not lift a role the actor could not manage above the actor.
    if let permissions::Rank::Position(_) = access.rank {
        let (new_top,): (i32,) = sqlx::query_as(
            "SELECT COALESCE(max(r.position), 0) FROM member_roles mr JOIN roles r ON r.id = mr.role_id
              WHERE mr.server_id = $1 AND mr.user_id = $2",
        )
        .bind(server_id.0)
        .bind(auth.user_id.0)
        .fetch_one(&mut *tx)
        .await?;
        let old_rank_below: Vec<i64> = current
            .iter()
            .filter(|(_, p)| permissions::can_manage_role(access.rank, *p))
            .map(|(id, _)| *id)
            .collect();
        let (breach,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM roles WHERE server_id = $1 AND id = ANY($2) AND position >= $3",
        )
        .bind(server_id.0)
        .bind(&old_rank_below)
        .bind(new_top)
        .fetch_one(&mut *tx)
        .await?;
        if breach > 0 {
            return Err(hierarchy_error());
        }
    }
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::RoleReorder,
            target: None,
            changes: json!({"order": ids.iter().map(|i| Id(*i)).collect::<Vec<_>>()}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let all = roles::list(&state.db, server_id).await?;
    for r in &all {
        events::publish(
            &state,
            vec![Audience::Server(server_id)],
            Event::RoleUpdate {
                server_id,
                role: events::value(r),
            },
        )
        .await;
    }
    events::scope_changed(
        &state,
        &servers::member_ids(&state.db, server_id, 100_000).await?,
    )
    .await;
    Ok(axum::Json(all))
}
