//! Threads: start one from a message (`POST …/messages/{id}/threads`), list a channel's
//! active (or archived) threads. Messages of a thread use `/channels/{thread_id}/messages`.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Auth, Json, Path, Query};
use crate::messaging::place::Place;
use crate::messaging::threads::{self, NewThread, Thread};
use crate::state::AppState;

/// The thread routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_thread))
        .routes(routes!(list_threads))
}

/// Start a thread from a message of a text channel (SEND_MESSAGES; one per message).
#[utoipa::path(post, path = "/channels/{channel_id}/messages/{message_id}/threads", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Text channel id"),
           ("message_id" = String, Path, description = "Message id")),
    request_body = NewThread,
    responses((status = 201, body = Thread)))]
pub async fn start_thread(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(Id, Id)>,
    Json(req): Json<NewThread>,
) -> ApiResult<(StatusCode, axum::Json<Thread>)> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    let t = threads::create(&state, auth.user_id, &place, message_id, req).await?;
    Ok((StatusCode::CREATED, axum::Json(t)))
}

/// `GET /channels/{id}/threads` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThreadsQuery {
    /// `true`: the archived threads instead of the active ones.
    pub archived: Option<bool>,
}

/// A text channel's active threads (or archived ones), most recently active first.
#[utoipa::path(get, path = "/channels/{channel_id}/threads", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Text channel id"), ThreadsQuery),
    responses((status = 200, body = Vec<Thread>)))]
pub async fn list_threads(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
    Query(q): Query<ThreadsQuery>,
) -> ApiResult<axum::Json<Vec<Thread>>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    Ok(axum::Json(
        threads::list(&state.db, &place, q.archived.unwrap_or(false)).await?,
    ))
}
