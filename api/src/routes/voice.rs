//! `/voice`: the ICE servers a client uses for calls, with time-limited TURN credentials.

use axum::extract::State;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::Auth;
use crate::state::AppState;

/// The `/voice` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ice_servers))
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServer {
    /// STUN or TURN URLs.
    pub urls: Vec<String>,
    /// TURN username (`expiry:user_id`), absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password (base64 HMAC-SHA1 of the username under the shared secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What `GET /voice/ice-servers` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServers {
    /// Pass as `iceServers` to `RTCPeerConnection`.
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid.
    pub ttl_secs: u64,
}

/// coturn's `use-auth-secret` password for `username`.
pub fn turn_password(secret: &str, username: &str) -> Result<String, ApiError> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .map_err(|e| ApiError::Internal(format!("hmac key: {e}")))?;
    mac.update(username.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// STUN and TURN servers for calls, with TURN credentials valid for `ttl_secs`.
#[utoipa::path(get, path = "/voice/ice-servers", tag = "voice", security(("bearer" = [])),
    responses((status = 200, body = IceServers)))]
pub async fn ice_servers(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<IceServers>> {
    let ice = &state.config.ice;
    let mut out = Vec::new();
    if !ice.stun_urls.is_empty() {
        out.push(IceServer {
            urls: ice.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (Some(secret), false) = (&ice.turn_secret, ice.turn_urls.is_empty()) {
        let expiry = chrono::Utc::now().timestamp() + ice.turn_ttl.as_secs() as i64;
        let username = format!("{expiry}:{}", auth.user_id);
        let credential = turn_password(secret, &username)?;
        out.push(IceServer {
            urls: ice.turn_urls.clone(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    Ok(axum::Json(IceServers {
        ice_servers: out,
        ttl_secs: ice.turn_ttl.as_secs(),
    }))
}
