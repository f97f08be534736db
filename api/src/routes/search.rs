//! `GET /servers/{id}/messages/search`: full-text search over the plaintext channels of a
//! server that the caller may read. Encrypted channels and DMs are searched on the client.

use axum::extract::State;
use copains_wire::Id;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Auth, Path, Query};
use crate::messaging::search::{self, SearchQuery, SearchResults};
use crate::state::AppState;

/// The search route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_messages))
}

/// Search messages (newest first) with optional author, channel and date filters.
#[utoipa::path(get, path = "/servers/{server_id}/messages/search", tag = "messages", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), SearchQuery),
    responses((status = 200, body = SearchResults)))]
pub async fn search_messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<axum::Json<SearchResults>> {
    Ok(axum::Json(
        search::search(&state.db, auth.user_id, server_id, q).await?,
    ))
}
