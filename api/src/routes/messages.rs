//! `/channels/{id}/messages`: send (nonce-idempotent), history (`before`/`after`/`around`),
//! fetch, edit and delete messages in server text channels, threads, DMs and group DMs.
//!
//! A channel the caller cannot see, or a message id of another channel, answers 404. Reading
//! history or a message without READ_HISTORY answers 403 `missing_permission`; sending
//! without SEND_MESSAGES too, and 403 `timed_out` while timed out; slow mode answers 429 with
//! `Retry-After`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use copains_wire::Id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::permissions::Permissions;
use crate::error::ApiResult;
use crate::extract::{Auth, Json, Path, Query};
use crate::messaging::Message;
use crate::messaging::messages::{self, EditMessage, HistoryQuery, NewMessage};
use crate::messaging::place::Place;
use crate::state::AppState;

/// The message routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_message, list_messages))
        .routes(routes!(get_message, edit_message, delete_message))
}

/// Send a message. Plaintext places take `content` (mentions parsed from it); encrypted
/// places (DMs, group DMs, encrypted channels) take only `encrypted` (422 for `content`).
/// With a `nonce` already used by the caller in the last 10 minutes, answers 200 with the
/// original message instead of creating another.
#[utoipa::path(post, path = "/channels/{channel_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id")),
    request_body = NewMessage,
    responses((status = 201, body = Message), (status = 200, description = "Nonce retry: the original message", body = Message)))]
pub async fn create_message(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
    Json(req): Json<NewMessage>,
) -> ApiResult<(StatusCode, axum::Json<Message>)> {
    let place = Place::require_cached(&state, auth.user_id, channel_id).await?;
    let (msg, created) = messages::create(&state, auth.user_id, &place, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(msg)))
}

/// History, oldest first: the newest `limit` messages, or those `before`/`after`/`around` an
/// id (at most one of the three). Needs READ_HISTORY.
#[utoipa::path(get, path = "/channels/{channel_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"), HistoryQuery),
    responses((status = 200, body = Vec<Message>)))]
pub async fn list_messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<impl IntoResponse> {
    let place = Place::require_cached(&state, auth.user_id, channel_id).await?;
    let body = messages::history(&state, auth.user_id, &place, q).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// One message (needs READ_HISTORY; a message of another channel answers 404).
#[utoipa::path(get, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id")),
    responses((status = 200, body = Message)))]
pub async fn get_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
) -> ApiResult<axum::Json<Message>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    place.require_perm(Permissions::READ_HISTORY)?;
    Ok(axum::Json(
        messages::get(&state.db, auth.user_id, channel_id, message_id).await?,
    ))
}

/// Edit my message (`content` in plaintext places, `encrypted` in encrypted ones).
#[utoipa::path(patch, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id")),
    request_body = EditMessage,
    responses((status = 200, body = Message)))]
pub async fn edit_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
    Json(req): Json<EditMessage>,
) -> ApiResult<axum::Json<Message>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    Ok(axum::Json(
        messages::edit(&state, auth.user_id, &place, message_id, req).await?,
    ))
}

/// Delete a message: mine, or anyone's with MANAGE_MESSAGES (server places only).
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    messages::delete(&state, auth.user_id, &place, message_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
