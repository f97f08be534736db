//! `/keys`: upload a device's signed keys, query devices, claim one-time keys, key changes.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use copains_crypto::device::{IdentityKeys, KeysUpload, SignedFallbackKey, SignedKey};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Auth, Json, Path, Query};
use crate::keys::{self, KeysError, KeysResult, events, visibility};
use crate::messaging::place::Place;
use crate::ratelimit;
use crate::state::AppState;

/// The `/keys` routes; `keys/claim` is rate-limited per client IP (a burst of six times the
/// auth burst, one more earned every tenth of the auth period: 60 at once, then 100 a minute
/// with the default settings).
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let cfg = &state.config;
    let claim_rl = ratelimit::config(
        cfg.auth_rate_burst.saturating_mul(6),
        cfg.auth_rate_period / 10,
        &cfg.trusted_proxies,
    );
    ratelimit::spawn_janitor(vec![claim_rl.clone()]);
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(query))
        .routes(routes!(changes))
        .routes(routes!(place_readers))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(claim))
                .layer(ratelimit::layer(claim_rl)),
        )
}

/// A device's public identity keys (base64, no padding).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityKeysBody {
    /// Curve25519 key (Olm's triple Diffie-Hellman).
    pub curve25519: String,
    /// Ed25519 key (signatures; the device fingerprint).
    pub ed25519: String,
}

/// A signed one-time key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignedKeyBody {
    /// Curve25519 public key, base64.
    pub key: String,
    /// Ed25519 signature by the device over `copains.one_time_key.v1\0user\0device\0key_id\0key`.
    pub signature: String,
}

/// A signed fallback key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FallbackKeyBody {
    /// Key id.
    pub key_id: String,
    /// Curve25519 public key, base64.
    pub key: String,
    /// Ed25519 signature by the device over `copains.fallback_key.v1\0user\0device\0key_id\0key`.
    pub signature: String,
}

/// `POST /keys/upload` body: `copains_crypto::device::KeysUpload` plus an optional display name.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadKeys {
    /// The caller's user id (it is part of every signature).
    pub user_id: String,
    /// The device id the client chose: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
    pub device_id: String,
    /// The device's identity keys; they cannot change once registered.
    pub identity_keys: IdentityKeysBody,
    /// Signature over `copains.device_keys.v1\0user\0device\0curve25519\0ed25519`.
    pub signature: String,
    /// New one-time keys by key id (at most 100 per upload, 500 stored per device).
    #[serde(default)]
    pub one_time_keys: BTreeMap<String, SignedKeyBody>,
    /// A new fallback key, replacing the previous one.
    #[serde(default)]
    pub fallback_key: Option<FallbackKeyBody>,
    /// A name for the device, shown only to its owner (≤ 64 characters).
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `POST /keys/upload` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadResult {
    /// Unclaimed one-time keys stored for the device, by algorithm (`curve25519`).
    pub one_time_key_counts: BTreeMap<String, i64>,
    /// Whether the device has a fallback key that has not been handed out yet.
    pub fallback_key_unused: bool,
}

/// Upload a device's signed identity keys, one-time keys and fallback key. The first upload
/// with a new `device_id` registers the device. Every signature is checked (422
/// `bad_signature`); a registered device's identity keys cannot change (409
/// `device_keys_changed`: use a new device id).
#[utoipa::path(post, path = "/keys/upload", tag = "keys", security(("bearer" = [])), request_body = UploadKeys,
    responses((status = 200, body = UploadResult),
        (status = 409, description = "Identity keys changed, or too many devices", body = crate::error::ErrorBody),
        (status = 422, description = "bad_signature, invalid_key, too_many_keys or validation", body = crate::error::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<UploadKeys>,
) -> KeysResult<axum::Json<UploadResult>> {
    if req.user_id != auth.user_id.to_string() {
        return Err(KeysError::unprocessable(
            "validation",
            "user_id must be your own user id",
        ));
    }
    if !keys::valid_device_id(&req.device_id) {
        return Err(KeysError::unprocessable(
            "validation",
            "device_id must be 1 to 64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    if req
        .display_name
        .as_ref()
        .is_some_and(|d| d.chars().count() > 64 || d.chars().any(char::is_control))
    {
        return Err(KeysError::unprocessable(
            "validation",
            "display_name must be at most 64 characters with no control characters",
        ));
    }
    let key_ids_ok = req
        .one_time_keys
        .keys()
        .chain(req.fallback_key.iter().map(|f| &f.key_id))
        .all(|id| valid_key_id(id));
    if !key_ids_ok {
        return Err(KeysError::unprocessable(
            "invalid_key",
            "key ids must be 1 to 16 characters of the base64 alphabet",
        ));
    }
    let upload = KeysUpload {
        user_id: req.user_id,
        device_id: req.device_id,
        identity_keys: IdentityKeys {
            curve25519: req.identity_keys.curve25519,
            ed25519: req.identity_keys.ed25519,
        },
        signature: req.signature,
        one_time_keys: req
            .one_time_keys
            .into_iter()
            .map(|(id, k)| {
                (
                    id,
                    SignedKey {
                        key: k.key,
                        signature: k.signature,
                    },
                )
            })
            .collect(),
        fallback_key: req.fallback_key.map(|f| SignedFallbackKey {
            key_id: f.key_id,
            key: f.key,
            signature: f.signature,
        }),
    };
    upload.verify()?;
    let user = auth.user_id;
    let device = upload.device_id.as_str();

    let mut tx = state.db.begin().await?;
    let existing: Option<(String, String)> = sqlx::query_as(
        "SELECT curve25519, ed25519 FROM devices WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
    )
    .bind(user.0)
    .bind(device)
    .fetch_optional(&mut *tx)
    .await?;
    let mut added = false;
    match existing {
        Some((curve, ed)) => {
            if curve != upload.identity_keys.curve25519 || ed != upload.identity_keys.ed25519 {
                return Err(ApiError::conflict(
                    "device_keys_changed",
                    "this device is registered with other identity keys; use a new device id",
                )
                .into());
            }
            sqlx::query(
                "UPDATE devices SET last_seen_at = now(), display_name = COALESCE($3, display_name)
                  WHERE user_id = $1 AND device_id = $2",
            )
            .bind(user.0)
            .bind(device)
            .bind(&req.display_name)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE user_id = $1")
                .bind(user.0)
                .fetch_one(&mut *tx)
                .await?;
            if count >= keys::MAX_DEVICES_PER_USER {
                return Err(ApiError::conflict(
                    "too_many_devices",
                    format!(
                        "at most {} devices per account; delete one first",
                        keys::MAX_DEVICES_PER_USER
                    ),
                )
                .into());
            }
            let inserted = sqlx::query(
                "INSERT INTO devices (user_id, device_id, display_name, curve25519, ed25519, signature)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(user.0)
            .bind(device)
            .bind(&req.display_name)
            .bind(&upload.identity_keys.curve25519)
            .bind(&upload.identity_keys.ed25519)
            .bind(&upload.signature)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                // A concurrent first upload of the same device won; let the client retry.
                return Err(ApiError::conflict(
                    "device_keys_changed",
                    "this device was registered concurrently; retry",
                )
                .into());
            }
            keys::log_key_change(&mut tx, user, device, "added").await?;
            added = true;
        }
    }

    if !upload.one_time_keys.is_empty() {
        let ids: Vec<&str> = upload.one_time_keys.keys().map(String::as_str).collect();
        let already: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = ANY($3)",
        )
        .bind(user.0)
        .bind(device)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user.0)
        .bind(device)
        .fetch_one(&mut *tx)
        .await?;
        let new = i64::try_from(ids.len()).unwrap_or(i64::MAX) - already;
        if stored + new > keys::MAX_ONE_TIME_KEYS_STORED {
            return Err(KeysError::unprocessable(
                "too_many_keys",
                format!(
                    "at most {} one-time keys are stored per device ({stored} now)",
                    keys::MAX_ONE_TIME_KEYS_STORED
                ),
            ));
        }
        let keys_: Vec<&str> = upload
            .one_time_keys
            .values()
            .map(|k| k.key.as_str())
            .collect();
        let sigs: Vec<&str> = upload
            .one_time_keys
            .values()
            .map(|k| k.signature.as_str())
            .collect();
        sqlx::query(
            "INSERT INTO one_time_keys (user_id, device_id, key_id, key, signature)
             SELECT $1, $2, k.id, k.key, k.sig FROM unnest($3::text[], $4::text[], $5::text[]) AS k(id, key, sig)
             ON CONFLICT DO NOTHING",
        )
        .bind(user.0)
        .bind(device)
        .bind(&ids)
        .bind(&keys_)
        .bind(&sigs)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(fb) = &upload.fallback_key {
        sqlx::query(
            "INSERT INTO fallback_keys (user_id, device_id, key_id, key, signature)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, device_id) DO UPDATE
                SET key_id = EXCLUDED.key_id, key = EXCLUDED.key, signature = EXCLUDED.signature,
                    used = FALSE, created_at = now()
              WHERE fallback_keys.key_id <> EXCLUDED.key_id OR fallback_keys.key <> EXCLUDED.key",
        )
        .bind(user.0)
        .bind(device)
        .bind(&fb.key_id)
        .bind(&fb.key)
        .bind(&fb.signature)
        .execute(&mut *tx)
        .await?;
    }
    let result = counts(&mut tx, user, device).await?;
    tx.commit().await?;
    if added {
        events::device_keys_changed(&state, user).await;
    }
    Ok(axum::Json(result))
}

/// Key ids as vodozemac makes them: base64 (no padding) of a counter.
fn valid_key_id(id: &str) -> bool {
    (1..=16).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

async fn counts(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: Id,
    device: &str,
) -> Result<UploadResult, sqlx::Error> {
    let (otks, fallback_unused): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2),
                EXISTS (SELECT 1 FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used)",
    )
    .bind(user.0)
    .bind(device)
    .fetch_one(&mut **tx)
    .await?;
    Ok(UploadResult {
        one_time_key_counts: BTreeMap::from([("curve25519".to_owned(), otks)]),
        fallback_key_unused: fallback_unused,
    })
}

/// `POST /keys/query` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryKeys {
    /// Users whose devices to list (at most 100).
    pub user_ids: Vec<Id>,
}

/// A device's public keys as others see them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceKeys {
    /// Owner.
    pub user_id: Id,
    /// Device id.
    pub device_id: String,
    /// Identity keys.
    pub identity_keys: IdentityKeysBody,
    /// The device's signature over its keys (check it with the ed25519 key).
    pub signature: String,
}

/// `POST /keys/query` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResult {
    /// Devices by user id, then device id. Users you may not see (no shared server, not a
    /// friend) or who do not exist are left out.
    pub devices: BTreeMap<String, BTreeMap<String, DeviceKeys>>,
}

/// The devices and identity keys of users who share a server with you, are your friends,
/// or yourself.
#[utoipa::path(post, path = "/keys/query", tag = "keys", security(("bearer" = [])), request_body = QueryKeys,
    responses((status = 200, body = QueryResult)))]
pub async fn query(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<QueryKeys>,
) -> KeysResult<axum::Json<QueryResult>> {
    if req.user_ids.len() > keys::MAX_QUERY_USERS {
        return Err(ApiError::validation(format!(
            "at most {} user_ids per query",
            keys::MAX_QUERY_USERS
        ))
        .into());
    }
    let visible = visibility::visible_users(&state.db, auth.user_id, &req.user_ids).await?;
    let ids: Vec<i64> = visible.iter().map(|u| u.0).collect();
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT user_id, device_id, curve25519, ed25519, signature FROM devices
          WHERE user_id = ANY($1) ORDER BY user_id, device_id",
    )
    .bind(&ids)
    .fetch_all(&state.db)
    .await?;
    let mut devices: BTreeMap<String, BTreeMap<String, DeviceKeys>> = visible
        .iter()
        .map(|u| (u.to_string(), BTreeMap::new()))
        .collect();
    for (user, device, curve25519, ed25519, signature) in rows {
        devices.entry(user.to_string()).or_default().insert(
            device.clone(),
            DeviceKeys {
                user_id: Id(user),
                device_id: device,
                identity_keys: IdentityKeysBody {
                    curve25519,
                    ed25519,
                },
                signature,
            },
        );
    }
    Ok(axum::Json(QueryResult { devices }))
}

/// `GET /keys/places/{place_id}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlaceReaders {
    /// The place (server channel, thread, DM or group DM).
    pub place_id: Id,
    /// Every user who may read the place now, ordered by id: server members with
    /// VIEW_CHANNEL (a thread: on its parent channel), or a DM's recipients.
    pub user_ids: Vec<Id>,
    /// The device ids of each of those users (their keys: `POST /keys/query`).
    pub devices: BTreeMap<String, Vec<String>>,
}

/// Who may read a place, under the server's permission rules: the users and devices an
/// end-to-end encrypting client shares the place's room keys with (and answers key requests
/// from). 404 when the caller cannot see the place; 409 `too_many_readers` when its server is
/// too large to share room keys with every reader.
#[utoipa::path(get, path = "/keys/places/{place_id}", tag = "keys", security(("bearer" = [])),
    params(("place_id" = String, Path, description = "Channel, thread or DM id")),
    responses((status = 200, body = PlaceReaders)))]
pub async fn place_readers(
    State(state): State<AppState>,
    auth: Auth,
    Path(place_id): Path<Id>,
) -> KeysResult<axum::Json<PlaceReaders>> {
    let place = Place::require(&state.db, auth.user_id, place_id).await?;
    let user_ids = place.readers(&state.db).await?;
    let ids: Vec<i64> = user_ids.iter().map(|u| u.0).collect();
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT user_id, device_id FROM devices WHERE user_id = ANY($1) ORDER BY user_id, device_id",
    )
    .bind(&ids)
    .fetch_all(&state.db)
    .await?;
    let mut devices: BTreeMap<String, Vec<String>> = user_ids
        .iter()
        .map(|u| (u.to_string(), Vec::new()))
        .collect();
    for (user, device) in rows {
        devices.entry(user.to_string()).or_default().push(device);
    }
    Ok(axum::Json(PlaceReaders {
        place_id,
        user_ids,
        devices,
    }))
}

/// `POST /keys/claim` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClaimKeys {
    /// Device ids to claim a key for, by user id (at most 500 devices in all).
    pub device_keys: BTreeMap<String, Vec<String>>,
}

/// A claimed key, with what the client needs to check it (`copains_crypto::device::ClaimedKey`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimedKeyBody {
    /// Owner.
    pub user_id: Id,
    /// Device.
    pub device_id: String,
    /// The device's identity keys.
    pub identity_keys: IdentityKeysBody,
    /// Key id.
    pub key_id: String,
    /// The curve25519 key, base64.
    pub key: String,
    /// The device's signature over it.
    pub signature: String,
    /// True when the device had no one-time key left and this is its fallback key.
    pub fallback: bool,
}

/// `POST /keys/claim` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimResult {
    /// One key per device, by user id then device id. Devices with no key left (nor a
    /// fallback key), unknown devices and users you may not see are left out.
    pub one_time_keys: BTreeMap<String, BTreeMap<String, ClaimedKeyBody>>,
}

/// Claim one key per requested device to open Olm sessions: a one-time key, each handed out
/// exactly once even under concurrent claims, or the device's fallback key when none is left.
/// Rate-limited per client IP.
#[utoipa::path(post, path = "/keys/claim", tag = "keys", security(("bearer" = [])), request_body = ClaimKeys,
    responses((status = 200, body = ClaimResult)))]
pub async fn claim(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<ClaimKeys>,
) -> KeysResult<axum::Json<ClaimResult>> {
    let total: usize = req.device_keys.values().map(Vec::len).sum();
    if total > keys::MAX_CLAIM_DEVICES || req.device_keys.len() > keys::MAX_QUERY_USERS {
        return Err(ApiError::validation(format!(
            "at most {} devices of {} users per claim",
            keys::MAX_CLAIM_DEVICES,
            keys::MAX_QUERY_USERS
        ))
        .into());
    }
    let mut wanted: BTreeMap<Id, BTreeSet<String>> = BTreeMap::new();
    for (user, devices) in req.device_keys {
        let user: Id = user
            .parse()
            .map_err(|_| ApiError::validation(format!("{user:?} is not a user id")))?;
        let set = wanted.entry(user).or_default();
        set.extend(devices.into_iter().filter(|d| keys::valid_device_id(d)));
    }
    let users: Vec<Id> = wanted.keys().copied().collect();
    let visible: BTreeSet<Id> = visibility::visible_users(&state.db, auth.user_id, &users)
        .await?
        .into_iter()
        .collect();
    let mut out: BTreeMap<String, BTreeMap<String, ClaimedKeyBody>> = BTreeMap::new();
    for (user, devices) in wanted {
        if !visible.contains(&user) {
            continue;
        }
        for device in devices {
            if let Some(k) = claim_one(&state, user, &device).await? {
                out.entry(user.to_string()).or_default().insert(device, k);
            }
        }
    }
    Ok(axum::Json(ClaimResult { one_time_keys: out }))
}

/// Takes one one-time key of a device (deleting it atomically: `FOR UPDATE SKIP LOCKED`
/// means two concurrent claims never pick the same row), else its fallback key.
async fn claim_one(state: &AppState, user: Id, device: &str) -> KeysResult<Option<ClaimedKeyBody>> {
    let identity: Option<(String, String)> = sqlx::query_as(
        "SELECT curve25519, ed25519 FROM devices WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user.0)
    .bind(device)
    .fetch_optional(&state.db)
    .await?;
    let Some((curve25519, ed25519)) = identity else {
        return Ok(None);
    };
    let otk: Option<(String, String, String)> = sqlx::query_as(
        "DELETE FROM one_time_keys o
          WHERE (o.user_id, o.device_id, o.key_id) = (
                SELECT user_id, device_id, key_id FROM one_time_keys
                 WHERE user_id = $1 AND device_id = $2
                 ORDER BY created_at, key_id LIMIT 1
                 FOR UPDATE SKIP LOCKED)
         RETURNING o.key_id, o.key, o.signature",
    )
    .bind(user.0)
    .bind(device)
    .fetch_optional(&state.db)
    .await?;
    let (found, fallback) = match otk {
        Some(k) => (Some(k), false),
        None => {
            let fb: Option<(String, String, String)> = sqlx::query_as(
                "UPDATE fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2
                 RETURNING key_id, key, signature",
            )
            .bind(user.0)
            .bind(device)
            .fetch_optional(&state.db)
            .await?;
            (fb, true)
        }
    };
    Ok(found.map(|(key_id, key, signature)| ClaimedKeyBody {
        user_id: user,
        device_id: device.to_owned(),
        identity_keys: IdentityKeysBody {
            curve25519,
            ed25519,
        },
        key_id,
        key,
        signature,
        fallback,
    }))
}

/// `GET /keys/changes` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ChangesQuery {
    /// The `next` position of the previous call (0 or absent: from the beginning).
    #[serde(default)]
    pub since: i64,
}

/// `GET /keys/changes` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangesResult {
    /// Users you may see whose devices were added, removed or changed since `since`.
    pub changed: Vec<Id>,
    /// The position to pass as `since` next time.
    pub next: i64,
}

/// Users whose device list changed since a stream position: re-query their keys.
#[utoipa::path(get, path = "/keys/changes", tag = "keys", security(("bearer" = [])), params(ChangesQuery),
    responses((status = 200, body = ChangesResult)))]
pub async fn changes(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<ChangesQuery>,
) -> KeysResult<axum::Json<ChangesResult>> {
    if q.since < 0 {
        return Err(ApiError::bad_request("bad_query", "since must be ≥ 0").into());
    }
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM device_key_changes")
        .fetch_one(&state.db)
        .await?;
    let changed = if q.since >= next {
        Vec::new()
    } else {
        visibility::changed_since(&state.db, auth.user_id, q.since, next).await?
    };
    Ok(axum::Json(ChangesResult {
        changed,
        next: next.max(q.since),
    }))
}
