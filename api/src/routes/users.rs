//! `/users`: my profile, password, sessions, account deletion; public profiles.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use copains_wire::Id;

use crate::accounts::{self, PublicUser, SessionInfo, User};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path};
use crate::messaging::dms::{self, DmPolicy};
use crate::state::AppState;
use crate::validate;

/// The `/users` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(get_user))
}

/// `PATCH /users/@me` body: fields to change (absent: unchanged; null: cleared where allowed).
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMe {
    /// New username.
    pub username: Option<String>,
    /// New display name ("" clears it).
    pub display_name: Option<String>,
    /// New bio ("" clears it).
    pub bio: Option<String>,
    /// Who may start a DM with me: `server_members` (default), `friends` or `nobody`.
    pub dm_policy: Option<DmPolicy>,
}

/// `POST /users/@me/password` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    /// The current password.
    pub current_password: String,
    /// The new password (8–128 characters).
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// `DELETE /users/@me` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteMe {
    /// The password, to confirm.
    pub password: String,
}

/// My account.
#[utoipa::path(get, path = "/users/@me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User)))]
pub async fn get_me(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(
        accounts::get_user(&state.db, auth.user_id).await?,
    ))
}

/// Change my username, display name, bio or DM policy.
#[utoipa::path(patch, path = "/users/@me", tag = "users", security(("bearer" = [])), request_body = UpdateMe,
    responses((status = 200, body = User), (status = 409, description = "Username taken", body = crate::error::ErrorBody)))]
pub async fn update_me(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<UpdateMe>,
) -> ApiResult<axum::Json<User>> {
    if let Some(u) = &req.username {
        validate::username(u)?;
    }
    if let Some(d) = req.display_name.as_deref().filter(|d| !d.is_empty()) {
        validate::display_name(d)?;
    }
    if let Some(b) = &req.bio {
        validate::text("bio", b, 512)?;
        if b.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::validation(
                "bio must not contain control characters",
            ));
        }
    }
    let r = sqlx::query(
        "UPDATE users SET
            username = COALESCE($2, username),
            display_name = CASE WHEN $3::TEXT IS NULL THEN display_name WHEN $3 = '' THEN NULL ELSE $3 END,
            bio = CASE WHEN $4::TEXT IS NULL THEN bio WHEN $4 = '' THEN NULL ELSE $4 END
          WHERE id = $1",
    )
    .bind(auth.user_id.0)
    .bind(&req.username)
    .bind(&req.display_name)
    .bind(&req.bio)
    .execute(&state.db)
    .await;
    match r {
        Err(sqlx::Error::Database(d)) if d.constraint() == Some("users_username_lower") => {
            return Err(ApiError::conflict(
                "username_taken",
                "this username is taken",
            ));
        }
        other => {
            other?;
        }
    }
    if let Some(p) = req.dm_policy {
        dms::set_policy(&state.db, auth.user_id, p).await?;
    }
    Ok(axum::Json(
        accounts::get_user(&state.db, auth.user_id).await?,
    ))
}

/// Delete my account (password required). Irreversible.
#[utoipa::path(delete, path = "/users/@me", tag = "users", security(("bearer" = [])), request_body = DeleteMe,
    responses((status = 204, description = "Deleted")))]
pub async fn delete_me(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<DeleteMe>,
) -> ApiResult<StatusCode> {
    accounts::delete_account(&state, auth.user_id, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change my password; every other session ends.
#[utoipa::path(post, path = "/users/@me/password", tag = "users", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 204, description = "Changed")))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<ChangePassword>,
) -> ApiResult<StatusCode> {
    accounts::change_password(
        &state,
        auth.user_id,
        auth.session_id,
        &req.current_password,
        &req.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// My live sessions.
#[utoipa::path(get, path = "/users/@me/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionInfo>)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<SessionInfo>>> {
    Ok(axum::Json(
        accounts::list_sessions(&state.db, auth.user_id, auth.session_id).await?,
    ))
}

/// End one of my sessions.
#[utoipa::path(delete, path = "/users/@me/sessions/{session_id}", tag = "users", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "Session id")),
    responses((status = 204, description = "Ended")))]
pub async fn revoke_session(
    State(state): State<AppState>,
    auth: Auth,
    Path(session_id): Path<Id>,
) -> ApiResult<StatusCode> {
    accounts::revoke_session(&state.db, auth.user_id, session_id, "revoked_by_user").await?;
    accounts::announce_revoked(&state, auth.user_id, &[session_id]).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Someone's public profile.
#[utoipa::path(get, path = "/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = PublicUser)))]
pub async fn get_user(
    State(state): State<AppState>,
    _auth: Auth,
    Path(user_id): Path<Id>,
) -> ApiResult<axum::Json<PublicUser>> {
    Ok(axum::Json(
        accounts::get_public_user(&state.db, user_id).await?,
    ))
}
