//! `/users/@me/channels`: open a 1:1 DM (get-or-create) or a group DM, list mine; group DM
//! membership at `/channels/{id}/recipients/{user_id}` (the owner adds and removes; anyone
//! leaves). DMs are always end-to-end encrypted. A block between the two users answers 403
//! `blocked`.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Auth, Json, Path};
use crate::messaging::dms::{self, DmChannel, NewDm};
use crate::state::AppState;

/// The DM routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_dm, list_dms))
        .routes(routes!(add_recipient, remove_recipient))
}

/// Open a DM: one recipient gives the 1:1 DM with them (200 when it exists, 201 when
/// created); two to nine create a group DM owned by me (201).
#[utoipa::path(post, path = "/users/@me/channels", tag = "messages", security(("bearer" = [])),
    request_body = NewDm,
    responses((status = 201, body = DmChannel), (status = 200, description = "The existing DM", body = DmChannel)))]
pub async fn open_dm(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<NewDm>,
) -> ApiResult<(StatusCode, axum::Json<DmChannel>)> {
    let (ch, created) = dms::open(&state, auth.user_id, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(ch)))
}

/// My DMs and group DMs, most recently active first.
#[utoipa::path(get, path = "/users/@me/channels", tag = "messages", security(("bearer" = [])),
    responses((status = 200, body = Vec<DmChannel>)))]
pub async fn list_dms(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<DmChannel>>> {
    Ok(axum::Json(dms::list(&state.db, auth.user_id).await?))
}

/// Add a member to my group DM (owner only; at most 10 members).
#[utoipa::path(put, path = "/channels/{channel_id}/recipients/{user_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Group DM id"),
           ("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = DmChannel)))]
pub async fn add_recipient(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, user_id)): Path<(Id, Id)>,
) -> ApiResult<axum::Json<DmChannel>> {
    Ok(axum::Json(
        dms::add(&state, auth.user_id, channel_id, user_id).await?,
    ))
}

/// Remove a member from my group DM (owner), or leave it (my own id).
#[utoipa::path(delete, path = "/channels/{channel_id}/recipients/{user_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Group DM id"),
           ("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_recipient(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, user_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    dms::remove(&state, auth.user_id, channel_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
