//! `/users/@me/relationships`: friends (request, accept, decline, remove) and blocks.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::friends::{self, Relationship, RequestOutcome};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path};
use crate::state::AppState;

/// The relationship routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_relationships, send_request))
        .routes(routes!(remove_relationship))
        .routes(routes!(accept_request))
        .routes(routes!(decline_request))
        .routes(routes!(block_user, unblock_user))
}

/// `POST /users/@me/relationships` body: who to befriend, by username or id (one of them).
#[derive(Debug, Deserialize, ToSchema)]
pub struct FriendRequest {
    /// Their username.
    pub username: Option<String>,
    /// Their id.
    #[schema(value_type = Option<String>)]
    pub user_id: Option<Id>,
}

/// My friends, pending requests and blocks.
#[utoipa::path(get, path = "/users/@me/relationships", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = Vec<Relationship>)))]
pub async fn list_relationships(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<Relationship>>> {
    Ok(axum::Json(friends::list(&state.db, auth.user_id).await?))
}

/// Send a friend request (accepts theirs if they already asked). 201 sent, 200 already sent
/// or accepted; 403 `friend_request_refused` when either of you blocked the other.
#[utoipa::path(post, path = "/users/@me/relationships", tag = "friends", security(("bearer" = [])),
    request_body = FriendRequest,
    responses((status = 201, body = Relationship), (status = 200, body = Relationship),
              (status = 409, description = "Already friends", body = crate::error::ErrorBody)))]
pub async fn send_request(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<FriendRequest>,
) -> ApiResult<(StatusCode, axum::Json<Relationship>)> {
    let other = match (&req.user_id, &req.username) {
        (Some(id), None) => *id,
        (None, Some(name)) => friends::user_by_name(&state.db, name).await?,
        _ => {
            return Err(ApiError::validation(
                "give exactly one of username and user_id",
            ));
        }
    };
    let outcome = friends::request(&state, auth.user_id, other).await?;
    let status = if outcome == RequestOutcome::Sent {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(friends::view(&state.db, auth.user_id, other).await?),
    ))
}

/// Accept a pending request from this user.
#[utoipa::path(post, path = "/users/@me/relationships/{user_id}/accept", tag = "friends", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = Relationship)))]
pub async fn accept_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<Id>,
) -> ApiResult<axum::Json<Relationship>> {
    friends::accept(&state, auth.user_id, user_id).await?;
    Ok(axum::Json(
        friends::view(&state.db, auth.user_id, user_id).await?,
    ))
}

/// Decline a pending request from this user.
#[utoipa::path(post, path = "/users/@me/relationships/{user_id}/decline", tag = "friends", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Declined")))]
pub async fn decline_request(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<Id>,
) -> ApiResult<StatusCode> {
    friends::decline(&state, auth.user_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End a friendship, or cancel my pending request.
#[utoipa::path(delete, path = "/users/@me/relationships/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_relationship(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<Id>,
) -> ApiResult<StatusCode> {
    friends::remove(&state, auth.user_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Block a user: any friendship or request ends; they cannot send me requests or DMs.
#[utoipa::path(put, path = "/users/@me/blocks/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Blocked"), (status = 409, description = "Limit reached or conflicting state", body = crate::error::ErrorBody)))]
pub async fn block_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<Id>,
) -> ApiResult<StatusCode> {
    friends::block(&state, auth.user_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblock a user.
#[utoipa::path(delete, path = "/users/@me/blocks/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Unblocked")))]
pub async fn unblock_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<Id>,
) -> ApiResult<StatusCode> {
    friends::unblock(&state, auth.user_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
