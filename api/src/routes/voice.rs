//! `/voice`: the ICE servers a client uses for calls, with time-limited TURN credentials.

use axum::extract::State;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::http::StatusCode;
use copains_wire::Id;
use copains_wire::events::{Audience, Event};
use serde::Deserialize;

use crate::communities::audit::{self, Action, AuditReason, Entry};
use crate::communities::permissions::Permissions;
use crate::communities::{events, permissions};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path};
use crate::state::AppState;

/// The `/voice` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ice_servers))
        .routes(routes!(set_voice_mute))
}

/// `PUT /servers/{id}/members/{user_id}/voice-mute` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VoiceMute {
    /// Whether the member's audio is dropped by the SFU.
    pub muted: bool,
}

/// Server-mute or unmute a member in voice (MUTE_MEMBERS, and the member ranks below you).
/// The SFU drops a muted member's audio within 2 seconds, in every voice channel of the server.
#[utoipa::path(put, path = "/servers/{server_id}/members/{user_id}/voice-mute", tag = "voice", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("user_id" = String, Path, description = "Member's user id")),
    request_body = VoiceMute, responses((status = 204, description = "Done")))]
pub async fn set_voice_mute(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, user_id)): Path<(Id, Id)>,
    Json(req): Json<VoiceMute>,
) -> ApiResult<StatusCode> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MUTE_MEMBERS)?;
    let target = permissions::member_rank(&state.db, server_id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown member"))?;
    if user_id != auth.user_id && !permissions::can_manage_member(access.rank, target) {
        return Err(ApiError::forbidden(
            "role_hierarchy",
            "this member's highest role is not below yours",
        ));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE members SET voice_muted = $3 WHERE server_id = $1 AND user_id = $2")
        .bind(server_id.0)
        .bind(user_id.0)
        .bind(req.muted)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::MemberUpdate,
            target: Some(user_id),
            changes: serde_json::json!({"voice_muted": req.muted}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::MemberUpdate {
            server_id,
            member: serde_json::json!({"user_id": user_id.to_string(), "voice_muted": req.muted}),
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
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
