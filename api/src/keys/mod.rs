//! End-to-end encryption keys on the server: devices and their identity keys, the signed
//! prekey bundle (one-time and fallback keys), the key-change log, the to-device queue and
//! key backup. The server checks signatures and ownership and stores public keys and
//! ciphertext only; the scheme and its JSON are in `docs/e2ee.md`.
//!
//! The routes live in `routes/{keys,devices,to_device,key_backup}.rs`; the shared rules here:
//! - [`KeysError`]: [`ApiError`] plus the 422 codes of this area (`bad_signature`...).
//! - [`CallerDevice`]: the caller's own device named by `X-Copains-Device` (or `?device_id=`).
//! - [`visibility`]: whose keys a user may see and whom they may send to-device messages to.
//! - [`events`]: the bus events of this area (`device_keys_changed`, `to_device`).
//! - [`log_key_change`]: the ordered key-change stream behind `GET /keys/changes`.

pub mod events;
pub mod visibility;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use copains_crypto::device::DeviceError;
use copains_wire::Id;
use sqlx::{Postgres, Transaction};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Auth;
use crate::state::AppState;

/// Devices one user may register.
pub const MAX_DEVICES_PER_USER: i64 = 100;
/// One-time keys stored per device.
pub const MAX_ONE_TIME_KEYS_STORED: i64 = 500;
/// One-time keys per upload (as in `copains_crypto::device`).
pub const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize =
    copains_crypto::device::MAX_ONE_TIME_KEYS_PER_UPLOAD;
/// Users per `keys/query`.
pub const MAX_QUERY_USERS: usize = 100;
/// Devices per `keys/claim`.
pub const MAX_CLAIM_DEVICES: usize = 500;
/// Largest to-device `content`, serialized, in bytes.
pub const MAX_TO_DEVICE_CONTENT: usize = 64 * 1024;
/// Recipient devices per `PUT /to-device/{txn_id}`.
pub const MAX_TO_DEVICE_RECIPIENTS: usize = 1000;
/// Pending to-device messages per recipient device; beyond it new ones are not queued.
pub const MAX_TO_DEVICE_PENDING: i64 = 10_000;
/// Messages per `GET /to-device` page (the default and the maximum).
pub const MAX_TO_DEVICE_PAGE: i64 = 500;
/// Largest key-backup `auth_data`, in characters.
pub const MAX_BACKUP_AUTH_DATA: usize = 4096;
/// Largest key-backup session blob, in characters.
pub const MAX_BACKUP_SESSION_DATA: usize = 16 * 1024;
/// Session blobs per `PUT /keys/backup/sessions`.
pub const MAX_BACKUP_SESSIONS_PER_REQUEST: usize = 1000;
/// Session blobs stored per user.
pub const MAX_BACKUP_SESSIONS_STORED: i64 = 100_000;
/// The header naming the caller's device.
pub const DEVICE_HEADER: &str = "x-copains-device";

/// The errors of the keys routes: every [`ApiError`], plus 422s with their own codes.
#[derive(Debug)]
pub enum KeysError {
    /// Any API error.
    Api(ApiError),
    /// 422 with a specific code (`bad_signature`, `invalid_key`, `too_many_keys`...).
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
}

impl KeysError {
    /// A 422 with `code`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for KeysError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<sqlx::Error> for KeysError {
    fn from(e: sqlx::Error) -> Self {
        Self::Api(e.into())
    }
}

impl From<DeviceError> for KeysError {
    fn from(e: DeviceError) -> Self {
        let code = match &e {
            DeviceError::BadSignature(_) => "bad_signature",
            DeviceError::InvalidKey { .. } => "invalid_key",
            DeviceError::TooManyKeys(_) => "too_many_keys",
            _ => "validation",
        };
        Self::unprocessable(code, e.to_string())
    }
}

impl IntoResponse for KeysError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Unprocessable { code, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(ErrorBody {
                    code: code.to_owned(),
                    message,
                }),
            )
                .into_response(),
        }
    }
}

/// Result of the keys handlers.
pub type KeysResult<T> = Result<T, KeysError>;

/// Device ids: 1 to 64 characters of `A-Z a-z 0-9 _ -` (the same rule as the schema).
pub fn valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The caller's own device, named by the `X-Copains-Device` header or, failing that, the
/// `device_id` query parameter. A device that does not exist or belongs to another user
/// is a 404 (never a 403), and a missing one a 400 `missing_device`.
#[derive(Debug, Clone)]
pub struct CallerDevice {
    /// The authenticated caller.
    pub auth: Auth,
    /// One of the caller's devices.
    pub device_id: String,
}

fn device_from_query(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "device_id").then(|| v.to_owned())
    })
}

impl FromRequestParts<AppState> for CallerDevice {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        let named = match parts.headers.get(DEVICE_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::not_found("unknown device"))?
                    .to_owned(),
            ),
            None => device_from_query(parts.uri.query()),
        };
        let device_id = named.ok_or_else(|| {
            ApiError::bad_request(
                "missing_device",
                "name your device with the X-Copains-Device header (or ?device_id=)",
            )
        })?;
        if !valid_device_id(&device_id) {
            return Err(ApiError::not_found("unknown device"));
        }
        let stale: Option<bool> = sqlx::query_scalar(
            "SELECT last_seen_at < now() - interval '60 seconds'
               FROM devices WHERE user_id = $1 AND device_id = $2",
        )
        .bind(auth.user_id.0)
        .bind(&device_id)
        .fetch_optional(&state.db)
        .await?;
        match stale {
            None => return Err(ApiError::not_found("unknown device")),
            Some(true) => {
                sqlx::query(
                    "UPDATE devices SET last_seen_at = now() WHERE user_id = $1 AND device_id = $2",
                )
                .bind(auth.user_id.0)
                .bind(&device_id)
                .execute(&state.db)
                .await?;
            }
            Some(false) => {}
        }
        Ok(CallerDevice { auth, device_id })
    }
}

/// Appends a change of `user`'s device to the key-change stream, inside `tx`. A
/// transaction-scoped advisory lock serializes the writers, so stream positions become
/// visible in increasing order and a reader's `next` position never skips a change.
pub async fn log_key_change(
    tx: &mut Transaction<'_, Postgres>,
    user: Id,
    device_id: &str,
    change: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(6000001)")
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO device_key_changes (user_id, device_id, change) VALUES ($1, $2, $3)")
        .bind(user.0)
        .bind(device_id)
        .bind(change)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(valid_device_id("DEVICE_a-1"));
        assert!(valid_device_id(&"a".repeat(64)));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id(&"a".repeat(65)));
        assert!(!valid_device_id("a b"));
        assert!(!valid_device_id("é"));
        assert!(!valid_device_id("a/b"));
    }

    #[test]
    fn device_query_parameter() {
        assert_eq!(
            device_from_query(Some("since=3&device_id=AB")),
            Some("AB".into())
        );
        assert_eq!(device_from_query(Some("since=3")), None);
        assert_eq!(device_from_query(None), None);
    }
}
