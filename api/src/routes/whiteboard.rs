//! `/channels/{id}/whiteboard`: the place's whiteboard — read it page by page, add strokes,
//! clear it. The rules (rights, bounds, encryption, ordering) are in [`crate::whiteboard`].
//!
//! A place the caller cannot see answers 404. Reading without READ_HISTORY, drawing without
//! SEND_MESSAGES (or while timed out) and clearing without MANAGE_MESSAGES answer 403; a full
//! board answers 409 `whiteboard_full`.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Auth, Json, Path, Query};
use crate::messaging::place::Place;
use crate::state::AppState;
use crate::whiteboard::{self, NewStroke, PageQuery, Stroke, StrokePage};

/// The whiteboard routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_board, clear_board))
        .routes(routes!(add_stroke))
}

/// The board, oldest stroke first: the first `limit` strokes, or those after `after`
/// (`has_more` says whether to ask again). Needs READ_HISTORY.
#[utoipa::path(get, path = "/channels/{channel_id}/whiteboard", tag = "whiteboard", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"), PageQuery),
    responses((status = 200, body = StrokePage)))]
pub async fn get_board(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<StrokePage>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    Ok(axum::Json(whiteboard::page(&state.db, &place, q).await?))
}

/// Add a stroke (needs SEND_MESSAGES). Plaintext places take `tool`, `color`, `size` and
/// `points`; encrypted places only `encrypted` (422 for any plaintext field). With a `nonce`
/// the caller already used on this board, answers 200 with that stroke.
#[utoipa::path(post, path = "/channels/{channel_id}/whiteboard/strokes", tag = "whiteboard", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id")),
    request_body = NewStroke,
    responses((status = 201, body = Stroke), (status = 200, description = "Nonce retry: the stroke already stored", body = Stroke),
              (status = 409, description = "The board is full (`whiteboard_full`): clear it first", body = crate::error::ErrorBody)))]
pub async fn add_stroke(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
    Json(req): Json<NewStroke>,
) -> ApiResult<(StatusCode, axum::Json<Stroke>)> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    let (stroke, created) = whiteboard::add(&state, auth.user_id, &place, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(stroke)))
}

/// Clear the board (needs MANAGE_MESSAGES; in DMs and group DMs every recipient may).
#[utoipa::path(delete, path = "/channels/{channel_id}/whiteboard", tag = "whiteboard", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id")),
    responses((status = 204, description = "Cleared")))]
pub async fn clear_board(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
) -> ApiResult<StatusCode> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    whiteboard::clear(&state, auth.user_id, &place).await?;
    Ok(StatusCode::NO_CONTENT)
}
