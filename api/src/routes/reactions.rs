//! `/channels/{id}/messages/{message_id}/reactions`: add and remove my reaction, list who
//! reacted with an emoji. Counts are part of every message (`reactions`).

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::members::UserSummary;
use crate::error::ApiResult;
use crate::extract::{Auth, Path, Query};
use crate::messaging::place::Place;
use crate::messaging::reactions;
use crate::state::AppState;

/// The reaction routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_reaction, remove_reaction))
        .routes(routes!(list_reactions))
}

/// Add my reaction (ADD_REACTIONS; idempotent).
#[utoipa::path(put, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id"),
           ("emoji" = String, Path, description = "The emoji (URL-encoded)")),
    responses((status = 204, description = "Reacted")))]
pub async fn add_reaction(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id, emoji)): Path<(Id, Id, String)>,
) -> ApiResult<StatusCode> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    reactions::add(&state, auth.user_id, &place, message_id, &emoji).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove my reaction (idempotent).
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id"),
           ("emoji" = String, Path, description = "The emoji (URL-encoded)")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_reaction(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id, emoji)): Path<(Id, Id, String)>,
) -> ApiResult<StatusCode> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    reactions::remove(&state, auth.user_id, &place, message_id, &emoji).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/reactions/{emoji}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReactionsQuery {
    /// Users with an id above this one (cursor).
    #[param(value_type = Option<String>)]
    pub after: Option<Id>,
    /// Page size, 1–100 (default 25).
    pub limit: Option<i64>,
}

/// Who reacted with `emoji`, by user id.
#[utoipa::path(get, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("message_id" = String, Path, description = "Message id"),
           ("emoji" = String, Path, description = "The emoji (URL-encoded)"), ReactionsQuery),
    responses((status = 200, body = Vec<UserSummary>)))]
pub async fn list_reactions(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id, emoji)): Path<(Id, Id, String)>,
    Query(q): Query<ReactionsQuery>,
) -> ApiResult<axum::Json<Vec<UserSummary>>> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    let limit = crate::communities::limit(q.limit, 25, 100)?;
    Ok(axum::Json(
        reactions::users(&state.db, &place, message_id, &emoji, q.after, limit).await?,
    ))
}
