//! `/channels/{id}/pins`: pin and unpin (MANAGE_MESSAGES; any recipient in DMs), list.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Auth, Path};
use crate::messaging::place::Place;
use crate::messaging::{Message, reads};
use crate::state::AppState;

/// The pin routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pins))
        .routes(routes!(pin_message, unpin_message))
}

/// Pinned messages, most recently pinned first (READ_HISTORY).
#[utoipa::path(get, path = "/channels/{channel_id}/pins", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id")),
    responses((status = 200, body = Vec<Message>)))]
pub async fn list_pins(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
) -> ApiResult<axum::Json<Vec<Message>>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    Ok(axum::Json(
        reads::pins(&state.db, auth.user_id, &place).await?,
    ))
}

/// Pin a message (at most 50 per channel).
#[utoipa::path(put, path = "/channels/{channel_id}/pins/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id")),
    responses((status = 204, description = "Pinned")))]
pub async fn pin_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    reads::set_pinned(&state, auth.user_id, &place, message_id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unpin a message.
#[utoipa::path(delete, path = "/channels/{channel_id}/pins/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id")),
    responses((status = 204, description = "Unpinned")))]
pub async fn unpin_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    reads::set_pinned(&state, auth.user_id, &place, message_id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
