//! `/devices`: list and delete my devices (their keys, queued messages and pending
//! one-time keys go with them).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Auth, Path};
use crate::keys::{self, KeysResult, events};
use crate::routes::keys::IdentityKeysBody;
use crate::state::AppState;

/// The `/devices` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(delete_device))
}

/// One of my devices.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyDevice {
    /// Device id.
    pub device_id: String,
    /// The name I gave it, if any.
    pub display_name: Option<String>,
    /// Its identity keys.
    pub identity_keys: IdentityKeysBody,
    /// Unclaimed one-time keys stored for it.
    pub one_time_keys: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last called the API naming itself (to the minute).
    pub last_seen_at: DateTime<Utc>,
}

/// My devices.
#[utoipa::path(get, path = "/devices", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<MyDevice>)))]
pub async fn list_devices(
    State(state): State<AppState>,
    auth: Auth,
) -> KeysResult<axum::Json<Vec<MyDevice>>> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        Option<String>,
        String,
        String,
        i64,
        DateTime<Utc>,
        DateTime<Utc>,
    )> = sqlx::query_as(
        "SELECT d.device_id, d.display_name, d.curve25519, d.ed25519,
                    (SELECT count(*) FROM one_time_keys o
                      WHERE o.user_id = d.user_id AND o.device_id = d.device_id),
                    d.created_at, d.last_seen_at
               FROM devices d WHERE d.user_id = $1 ORDER BY d.created_at, d.device_id",
    )
    .bind(auth.user_id.0)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(
                |(
                    device_id,
                    display_name,
                    curve25519,
                    ed25519,
                    one_time_keys,
                    created_at,
                    last_seen_at,
                )| {
                    MyDevice {
                        device_id,
                        display_name,
                        identity_keys: IdentityKeysBody {
                            curve25519,
                            ed25519,
                        },
                        one_time_keys,
                        created_at,
                        last_seen_at,
                    }
                },
            )
            .collect(),
    ))
}

/// Delete one of my devices (someone else's, or an unknown one: 404). Its keys, one-time
/// keys and to-device queue are deleted; others see a key change.
#[utoipa::path(delete, path = "/devices/{device_id}", tag = "keys", security(("bearer" = [])),
    params(("device_id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_device(
    State(state): State<AppState>,
    auth: Auth,
    Path(device_id): Path<String>,
) -> KeysResult<StatusCode> {
    if !keys::valid_device_id(&device_id) {
        return Err(ApiError::not_found("unknown device").into());
    }
    let mut tx = state.db.begin().await?;
    let deleted = sqlx::query("DELETE FROM devices WHERE user_id = $1 AND device_id = $2")
        .bind(auth.user_id.0)
        .bind(&device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found("unknown device").into());
    }
    keys::log_key_change(&mut tx, auth.user_id, &device_id, "removed").await?;
    tx.commit().await?;
    events::device_keys_changed(&state, auth.user_id).await;
    Ok(StatusCode::NO_CONTENT)
}
