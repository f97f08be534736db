//! `/servers/{id}/invites` and `/invites/{code}`: create, list, public preview, join, revoke.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use copains_wire::Id;
use copains_wire::events::{Audience, Event};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::audit::{self, Action, AuditReason, Entry};
use crate::communities::invites::{self, Invite, InvitePreview, Joined};
use crate::communities::permissions::{self, Permissions};
use crate::communities::servers::{self, Server};
use crate::communities::{events, members};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path, bearer};
use crate::state::AppState;

/// The invite routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_invites, create_invite))
        .routes(routes!(preview_invite, join_invite, revoke_invite))
}

/// `POST /servers/{id}/invites` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct NewInvite {
    /// How many joins it allows (1–100000; absent: unlimited).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_uses: Option<i32>,
    /// Seconds until it expires (1–2592000, i.e. 30 days; absent: never).
    #[schema(minimum = 1, maximum = 2592000)]
    pub max_age_secs: Option<i64>,
}

/// Create an invite (CREATE_INVITE).
#[utoipa::path(post, path = "/servers/{server_id}/invites", tag = "invites", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = NewInvite, responses((status = 201, body = Invite), (status = 409, description = "Limit reached or conflicting state", body = crate::error::ErrorBody)))]
pub async fn create_invite(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<NewInvite>,
) -> ApiResult<(StatusCode, axum::Json<Invite>)> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::CREATE_INVITE)?;
    if let Some(m) = req.max_uses
        && !(1..=100_000).contains(&m)
    {
        return Err(ApiError::validation(
            "max_uses must be between 1 and 100000",
        ));
    }
    if let Some(a) = req.max_age_secs
        && !(1..=2_592_000).contains(&a)
    {
        return Err(ApiError::validation(
            "max_age_secs must be between 1 and 2592000 (30 days)",
        ));
    }
    let invite = invites::create(
        &state,
        server_id,
        auth.user_id,
        req.max_uses,
        req.max_age_secs,
    )
    .await?;
    audit::record(
        &state.db,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::InviteCreate,
            target: None,
            changes: json!({"code": invite.code, "max_uses": invite.max_uses, "expires_at": invite.expires_at}),
            reason: &reason,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(invite)))
}

/// The invites of a server (MANAGE_SERVER).
#[utoipa::path(get, path = "/servers/{server_id}/invites", tag = "invites", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id")),
    responses((status = 200, body = Vec<Invite>)))]
pub async fn list_invites(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
) -> ApiResult<axum::Json<Vec<Invite>>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MANAGE_SERVER)?;
    Ok(axum::Json(invites::list(&state.db, server_id).await?))
}

/// What an invite opens (no account needed): the server's name, description, icon, member
/// and online counts. With a valid access token, `banned` says whether the caller is banned
/// from it (an invalid or expired token is ignored: the preview stays public). Unknown,
/// expired and used-up codes answer 404.
#[utoipa::path(get, path = "/invites/{code}", tag = "invites",
    params(("code" = String, Path, description = "Invite code")),
    responses((status = 200, body = InvitePreview)))]
pub async fn preview_invite(
    State(state): State<AppState>,
    mut parts: axum::http::request::Parts,
    Path(code): Path<String>,
) -> ApiResult<axum::Json<InvitePreview>> {
    let viewer = if bearer(&parts.headers).is_some() {
        Auth::from_request_parts(&mut parts, &state)
            .await
            .ok()
            .map(|a| a.user_id)
    } else {
        None
    };
    Ok(axum::Json(invites::preview(&state, &code, viewer).await?))
}

/// Join the invite's server. 201 when newly joined, 200 when already a member (no use taken);
/// 403 `banned` for banned users; 404 for unknown, expired or used-up codes.
#[utoipa::path(post, path = "/invites/{code}", tag = "invites", security(("bearer" = [])),
    params(("code" = String, Path, description = "Invite code")),
    responses((status = 201, body = Server), (status = 200, body = Server), (status = 409, description = "Limit reached or conflicting state", body = crate::error::ErrorBody)))]
pub async fn join_invite(
    State(state): State<AppState>,
    auth: Auth,
    Path(code): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Server>)> {
    match invites::join(&state, auth.user_id, &code).await? {
        Joined::Already(server_id) => Ok((
            StatusCode::OK,
            axum::Json(servers::get(&state.db, server_id).await?),
        )),
        Joined::New(server_id) => {
            let server = servers::get(&state.db, server_id).await?;
            if let Ok(m) = members::get(&state.db, server_id, auth.user_id).await {
                events::publish(
                    &state,
                    vec![Audience::Server(server_id)],
                    Event::MemberAdd {
                        server_id,
                        member: events::value(&m),
                    },
                )
                .await;
            }
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
    }
}

/// Revoke an invite (MANAGE_SERVER, or its creator). 404 unless you are a member of its server.
#[utoipa::path(delete, path = "/invites/{code}", tag = "invites", security(("bearer" = [])),
    params(("code" = String, Path, description = "Invite code"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_invite(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(code): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::not_found("unknown invite");
    if !invites::plausible_code(&code) {
        return Err(not_found());
    }
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT server_id, inviter_id FROM invites WHERE code = $1")
            .bind(&code)
            .fetch_optional(&state.db)
            .await?;
    let (server_id, inviter) = row.ok_or_else(not_found)?;
    let server_id = Id(server_id);
    let access = permissions::server_access(&state.db, auth.user_id, server_id)
        .await?
        .ok_or_else(not_found)?;
    if inviter != Some(auth.user_id.0) {
        access.require(Permissions::MANAGE_SERVER)?;
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM invites WHERE code = $1")
        .bind(&code)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::InviteDelete,
            target: None,
            changes: json!({"code": code}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
