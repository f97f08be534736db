//! `/servers`: create, read, update, delete, transfer ownership; `/users/@me/servers`: my
//! servers, leave.

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
use crate::communities::events;
use crate::communities::permissions::{self, Permissions};
use crate::communities::servers::{self, Server};
use crate::communities::{self as c};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path};
use crate::state::AppState;

/// The server routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_server))
        .routes(routes!(my_servers))
        .routes(routes!(get_server, update_server, delete_server))
        .routes(routes!(transfer_server))
        .routes(routes!(leave_server))
}

/// `POST /servers` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewServer {
    /// Name (1–100 characters).
    pub name: String,
    /// Description (≤ 1024 characters).
    pub description: Option<String>,
    /// Icon URL or attachment reference (≤ 512 characters).
    pub icon: Option<String>,
}

/// `PATCH /servers/{id}` body: absent fields are unchanged; "" clears description and icon.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateServer {
    /// New name.
    pub name: Option<String>,
    /// New description ("" clears).
    pub description: Option<String>,
    /// New icon ("" clears).
    pub icon: Option<String>,
}

/// `POST /servers/{id}/transfer` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Transfer {
    /// The member who becomes owner.
    pub user_id: Id,
}

/// Create a server; the caller owns it. It starts with an @everyone role and a `general`
/// text channel. A user may belong to at most 100 servers.
#[utoipa::path(post, path = "/servers", tag = "servers", security(("bearer" = [])), request_body = NewServer,
    responses((status = 201, body = Server), (status = 409, description = "Too many servers", body = crate::error::ErrorBody)))]
pub async fn create_server(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<NewServer>,
) -> ApiResult<(StatusCode, axum::Json<Server>)> {
    let name = c::name("name", &req.name, 100)?;
    let description = match &req.description {
        Some(d) => c::text("description", d, 1024)?,
        None => None,
    };
    let icon = match &req.icon {
        Some(i) => c::text("icon", i, 512)?,
        None => None,
    };
    let server = servers::create(
        &state,
        auth.user_id,
        &name,
        description.as_deref(),
        icon.as_deref(),
    )
    .await?;
    events::publish(
        &state,
        vec![Audience::User(auth.user_id)],
        Event::ServerCreate {
            server: events::value(&server),
        },
    )
    .await;
    events::scope_changed(&state, &[auth.user_id]).await;
    Ok((StatusCode::CREATED, axum::Json(server)))
}

/// The servers I belong to.
#[utoipa::path(get, path = "/users/@me/servers", tag = "servers", security(("bearer" = [])),
    responses((status = 200, body = Vec<Server>)))]
pub async fn my_servers(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<Server>>> {
    Ok(axum::Json(servers::of_user(&state.db, auth.user_id).await?))
}

/// A server I belong to (404 otherwise).
#[utoipa::path(get, path = "/servers/{server_id}", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id")),
    responses((status = 200, body = Server)))]
pub async fn get_server(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
) -> ApiResult<axum::Json<Server>> {
    permissions::require_member(&state.db, auth.user_id, server_id).await?;
    Ok(axum::Json(servers::get(&state.db, server_id).await?))
}

/// Change a server's name, description or icon (MANAGE_SERVER).
#[utoipa::path(patch, path = "/servers/{server_id}", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = UpdateServer, responses((status = 200, body = Server)))]
pub async fn update_server(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<UpdateServer>,
) -> ApiResult<axum::Json<Server>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MANAGE_SERVER)?;
    let name = req
        .name
        .as_deref()
        .map(|n| c::name("name", n, 100))
        .transpose()?;
    let description = req
        .description
        .as_deref()
        .map(|d| c::text("description", d, 1024))
        .transpose()?;
    let icon = req
        .icon
        .as_deref()
        .map(|i| c::text("icon", i, 512))
        .transpose()?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE servers SET name = COALESCE($2, name),
            description = CASE WHEN $3 THEN $4 ELSE description END,
            icon = CASE WHEN $5 THEN $6 ELSE icon END
          WHERE id = $1",
    )
    .bind(server_id.0)
    .bind(&name)
    .bind(description.is_some())
    .bind(description.clone().flatten())
    .bind(icon.is_some())
    .bind(icon.clone().flatten())
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::ServerUpdate,
            target: Some(server_id),
            changes: json!({"name": name, "description": description, "icon": icon}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let server = servers::get(&state.db, server_id).await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::ServerUpdate {
            server: events::value(&server),
        },
    )
    .await;
    Ok(axum::Json(server))
}

/// Delete a server (owner only). Irreversible.
#[utoipa::path(delete, path = "/servers/{server_id}", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_server(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
) -> ApiResult<StatusCode> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    if !access.is_owner() {
        return Err(ApiError::forbidden(
            "not_owner",
            "only the owner may delete a server",
        ));
    }
    let members = servers::member_ids(&state.db, server_id, 100_000).await?;
    sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(server_id.0)
        .execute(&state.db)
        .await?;
    events::publish(
        &state,
        vec![
            Audience::Server(server_id),
            Audience::Users(members.clone()),
        ],
        Event::ServerDelete { server_id },
    )
    .await;
    events::scope_changed(&state, &members).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Give the server to another member (owner only).
#[utoipa::path(post, path = "/servers/{server_id}/transfer", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = Transfer, responses((status = 200, body = Server)))]
pub async fn transfer_server(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<Transfer>,
) -> ApiResult<axum::Json<Server>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    if !access.is_owner() {
        return Err(ApiError::forbidden(
            "not_owner",
            "only the owner may transfer a server",
        ));
    }
    let mut tx = state.db.begin().await?;
    let r = sqlx::query(
        "UPDATE servers SET owner_id = $2 WHERE id = $1 AND owner_id = $3
            AND EXISTS (SELECT 1 FROM members WHERE server_id = $1 AND user_id = $2)",
    )
    .bind(server_id.0)
    .bind(req.user_id.0)
    .bind(auth.user_id.0)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("unknown member"));
    }
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::ServerTransfer,
            target: Some(req.user_id),
            changes: json!({"owner_id": {"old": auth.user_id, "new": req.user_id}}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let server = servers::get(&state.db, server_id).await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::ServerUpdate {
            server: events::value(&server),
        },
    )
    .await;
    events::scope_changed(&state, &[auth.user_id, req.user_id]).await;
    Ok(axum::Json(server))
}

/// Leave a server (the owner must transfer it or delete it instead).
#[utoipa::path(delete, path = "/users/@me/servers/{server_id}", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id")),
    responses((status = 204, description = "Left"), (status = 409, description = "The owner cannot leave", body = crate::error::ErrorBody)))]
pub async fn leave_server(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
) -> ApiResult<StatusCode> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    if access.is_owner() {
        return Err(ApiError::conflict(
            "owner_cannot_leave",
            "the owner cannot leave; transfer the server or delete it",
        ));
    }
    sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
        .bind(server_id.0)
        .bind(auth.user_id.0)
        .execute(&state.db)
        .await?;
    crate::routes::members::removed(&state, server_id, auth.user_id).await;
    Ok(StatusCode::NO_CONTENT)
}
