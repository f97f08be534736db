//! Read states: acknowledge a message (`POST …/ack`) and read my unread and mention counts
//! per channel (`GET /users/@me/read-states`).

use axum::extract::State;
use copains_wire::Id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Auth, Path};
use crate::messaging::place::Place;
use crate::messaging::reads::{self, ReadState};
use crate::state::AppState;

/// The read-state routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ack_message))
        .routes(routes!(my_read_states))
}

/// Mark everything up to this message as read (moving back marks later messages unread).
#[utoipa::path(post, path = "/channels/{channel_id}/messages/{message_id}/ack", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id")),
    responses((status = 200, body = ReadState)))]
pub async fn ack_message(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
) -> ApiResult<axum::Json<ReadState>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    Ok(axum::Json(
        reads::ack(&state, auth.user_id, &place, message_id).await?,
    ))
}

/// My read states: every DM, and every text channel I can see in my servers.
#[utoipa::path(get, path = "/users/@me/read-states", tag = "messages", security(("bearer" = [])),
    responses((status = 200, body = Vec<ReadState>)))]
pub async fn my_read_states(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<ReadState>>> {
    Ok(axum::Json(reads::mine(&state.db, auth.user_id).await?))
}
