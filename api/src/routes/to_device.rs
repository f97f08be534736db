//! `/to-device`: a per-device queue of (encrypted) messages between devices — Olm messages,
//! Megolm room keys, call frame keys. Sending is idempotent by transaction id; messages stay
//! queued until the recipient device acknowledges them.
//!
//! The caller's device is named by the `X-Copains-Device` header (or `?device_id=`); it must
//! be one of the caller's devices (otherwise 404).

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::keys::{self, CallerDevice, KeysResult, events, visibility};
use crate::state::AppState;

/// The `/to-device` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(fetch))
        .routes(routes!(ack))
}

fn default_type() -> String {
    "copains.olm".to_owned()
}

/// `PUT /to-device/{txn_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendToDevice {
    /// Message type, 1 to 64 characters (default `copains.olm`: an Olm envelope).
    #[serde(default = "default_type")]
    pub r#type: String,
    /// Content by recipient user id, then device id (at most 1000 devices; each content at
    /// most 64 KiB of JSON).
    #[schema(value_type = Object)]
    pub messages: BTreeMap<String, BTreeMap<String, Value>>,
}

/// `PUT /to-device/{txn_id}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    /// Messages queued. Unknown devices, users you may not see, and devices whose queue is
    /// full (10,000 pending) are skipped. Repeating a transaction id answers the first result.
    pub queued: i32,
}

/// Queue messages for other devices. Idempotent by (sending device, `txn_id`): a repeated
/// transaction queues nothing and answers as the first did.
#[utoipa::path(put, path = "/to-device/{txn_id}", tag = "keys", security(("bearer" = [])),
    params(("txn_id" = String, Path, description = "Client transaction id (1-64 printable ASCII characters)"),
        ("X-Copains-Device" = String, Header, description = "The sending device")),
    request_body = SendToDevice,
    responses((status = 200, body = SendResult)))]
pub async fn send(
    State(state): State<AppState>,
    caller: CallerDevice,
    Path(txn_id): Path<String>,
    Json(req): Json<SendToDevice>,
) -> KeysResult<axum::Json<SendResult>> {
    if txn_id.is_empty() || txn_id.len() > 64 || !txn_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            ApiError::validation("txn_id must be 1 to 64 printable ASCII characters").into(),
        );
    }
    let ty = req.r#type;
    if ty.is_empty() || ty.len() > 64 || ty.chars().any(char::is_control) {
        return Err(ApiError::validation("type must be 1 to 64 characters").into());
    }
    let total: usize = req.messages.values().map(BTreeMap::len).sum();
    if total > keys::MAX_TO_DEVICE_RECIPIENTS {
        return Err(ApiError::validation(format!(
            "at most {} recipient devices per request",
            keys::MAX_TO_DEVICE_RECIPIENTS
        ))
        .into());
    }
    // Parse and bound everything before touching the database.
    let mut wanted: BTreeMap<(Id, String), String> = BTreeMap::new();
    for (user, devices) in req.messages {
        let user: Id = user
            .parse()
            .map_err(|_| ApiError::validation(format!("{user:?} is not a user id")))?;
        for (device, content) in devices {
            let content = serde_json::to_string(&content).unwrap_or_default();
            if content.is_empty() || content.len() > keys::MAX_TO_DEVICE_CONTENT {
                return Err(ApiError::validation(format!(
                    "each content must be at most {} bytes of JSON",
                    keys::MAX_TO_DEVICE_CONTENT
                ))
                .into());
            }
            if keys::valid_device_id(&device) {
                wanted.insert((user, device), content);
            }
        }
    }
    let me = caller.auth.user_id;
    let users: Vec<Id> = {
        let mut u: Vec<Id> = wanted.keys().map(|(u, _)| *u).collect();
        u.dedup();
        u
    };
    let visible = visibility::visible_users(&state.db, me, &users).await?;
    wanted.retain(|(u, _), _| visible.contains(u));

    let mut tx = state.db.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO to_device_txns (sender_user_id, sender_device_id, txn_id, queued)
         VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
    )
    .bind(me.0)
    .bind(&caller.device_id)
    .bind(&txn_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if fresh == 0 {
        let queued: i32 = sqlx::query_scalar(
            "SELECT queued FROM to_device_txns
              WHERE sender_user_id = $1 AND sender_device_id = $2 AND txn_id = $3",
        )
        .bind(me.0)
        .bind(&caller.device_id)
        .bind(&txn_id)
        .fetch_one(&mut *tx)
        .await?;
        return Ok(axum::Json(SendResult { queued }));
    }
    sqlx::query(
        "DELETE FROM to_device_txns WHERE sender_user_id = $1 AND sender_device_id = $2
            AND created_at < now() - interval '1 day'",
    )
    .bind(me.0)
    .bind(&caller.device_id)
    .execute(&mut *tx)
    .await?;

    let r_users: Vec<i64> = wanted.keys().map(|(u, _)| u.0).collect();
    let r_devices: Vec<String> = wanted.keys().map(|(_, d)| d.clone()).collect();
    let contents: Vec<String> = wanted.values().cloned().collect();
    // Lock the recipient devices in a fixed order (no deadlock between concurrent senders),
    // keeping those whose queue is not full.
    let open: Vec<(i64, String)> = sqlx::query_as(
        "SELECT d.user_id, d.device_id FROM devices d
           JOIN unnest($1::bigint[], $2::text[]) AS r(u, dev) ON d.user_id = r.u AND d.device_id = r.dev
          ORDER BY d.user_id, d.device_id
          FOR UPDATE OF d",
    )
    .bind(&r_users)
    .bind(&r_devices)
    .fetch_all(&mut *tx)
    .await?;
    let full: Vec<(i64, String)> = sqlx::query_as(
        "SELECT m.recipient_user_id, m.recipient_device_id FROM to_device_messages m
          WHERE (m.recipient_user_id, m.recipient_device_id) IN
                (SELECT * FROM unnest($1::bigint[], $2::text[]))
          GROUP BY 1, 2 HAVING count(*) >= $3",
    )
    .bind(&r_users)
    .bind(&r_devices)
    .bind(keys::MAX_TO_DEVICE_PENDING)
    .fetch_all(&mut *tx)
    .await?;
    let targets: Vec<(i64, String)> = open.into_iter().filter(|t| !full.contains(t)).collect();
    let t_users: Vec<i64> = targets.iter().map(|(u, _)| *u).collect();
    let t_devices: Vec<String> = targets.iter().map(|(_, d)| d.clone()).collect();
    let queued: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "WITH bumped AS (
            UPDATE devices d SET to_device_seq = d.to_device_seq + 1
              FROM unnest($1::bigint[], $2::text[]) AS t(u, dev)
             WHERE d.user_id = t.u AND d.device_id = t.dev
            RETURNING d.user_id, d.device_id, d.to_device_seq)
         INSERT INTO to_device_messages
                (recipient_user_id, recipient_device_id, seq, sender_user_id, sender_device_id, msg_type, content)
         SELECT b.user_id, b.device_id, b.to_device_seq, $6, $7, $8, c.content
           FROM bumped b
           JOIN unnest($3::bigint[], $4::text[], $5::text[]) AS c(u, dev, content)
             ON c.u = b.user_id AND c.dev = b.device_id
         RETURNING recipient_user_id, recipient_device_id, seq, content",
    )
    .bind(&t_users)
    .bind(&t_devices)
    .bind(&r_users)
    .bind(&r_devices)
    .bind(&contents)
    .bind(me.0)
    .bind(&caller.device_id)
    .bind(&ty)
    .fetch_all(&mut *tx)
    .await?;
    let n = i32::try_from(queued.len()).unwrap_or(i32::MAX);
    sqlx::query(
        "UPDATE to_device_txns SET queued = $4
          WHERE sender_user_id = $1 AND sender_device_id = $2 AND txn_id = $3",
    )
    .bind(me.0)
    .bind(&caller.device_id)
    .bind(&txn_id)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    for (user, device, seq, content) in queued {
        events::to_device(
            &state,
            Id(user),
            device,
            seq,
            me,
            caller.device_id.clone(),
            serde_json::json!({ "type": ty, "content": parse_content(&content) }),
        )
        .await;
    }
    Ok(axum::Json(SendResult { queued: n }))
}

/// Content is stored as the JSON text the api serialized, so it always parses back.
fn parse_content(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// `GET /to-device` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FetchQuery {
    /// Return messages after this position (default 0).
    #[serde(default)]
    pub since: i64,
    /// Messages per page, 1 to 500 (default 100).
    pub limit: Option<i64>,
    /// The device, when the `X-Copains-Device` header is not sent.
    pub device_id: Option<String>,
}

/// A queued to-device message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToDeviceMessage {
    /// Position in my device's queue (acknowledge up to it).
    pub id: i64,
    /// Sender user.
    pub sender_user_id: Id,
    /// Sender device.
    pub sender_device_id: String,
    /// Message type.
    pub r#type: String,
    /// The content, as sent (ciphertext for `copains.olm`).
    #[schema(value_type = Object)]
    pub content: Value,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// `GET /to-device` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FetchResult {
    /// Messages, oldest first.
    pub messages: Vec<ToDeviceMessage>,
    /// The position to pass as `since` next (and to acknowledge).
    pub next_since: i64,
}

/// My device's queued messages after `since`, oldest first. They stay queued until acknowledged.
#[utoipa::path(get, path = "/to-device", tag = "keys", security(("bearer" = [])),
    params(FetchQuery, ("X-Copains-Device" = String, Header, description = "My device")),
    responses((status = 200, body = FetchResult)))]
pub async fn fetch(
    State(state): State<AppState>,
    caller: CallerDevice,
    Query(q): Query<FetchQuery>,
) -> KeysResult<axum::Json<FetchResult>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=keys::MAX_TO_DEVICE_PAGE).contains(&limit) || q.since < 0 {
        return Err(
            ApiError::bad_request("bad_query", "limit must be 1 to 500 and since ≥ 0").into(),
        );
    }
    #[allow(clippy::type_complexity)]
    let rows: Vec<(i64, i64, String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT seq, sender_user_id, sender_device_id, msg_type, content, created_at
           FROM to_device_messages
          WHERE recipient_user_id = $1 AND recipient_device_id = $2 AND seq > $3
          ORDER BY seq LIMIT $4",
    )
    .bind(caller.auth.user_id.0)
    .bind(&caller.device_id)
    .bind(q.since)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_since = rows.last().map_or(q.since, |r| r.0);
    let messages = rows
        .into_iter()
        .map(
            |(id, sender, sender_device_id, r#type, content, created_at)| ToDeviceMessage {
                id,
                sender_user_id: Id(sender),
                sender_device_id,
                r#type,
                content: parse_content(&content),
                created_at,
            },
        )
        .collect();
    Ok(axum::Json(FetchResult {
        messages,
        next_since,
    }))
}

/// `POST /to-device/ack` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Ack {
    /// Delete my device's messages up to and including this position.
    pub up_to: i64,
}

/// `POST /to-device/ack` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AckResult {
    /// Messages deleted.
    pub deleted: u64,
}

/// Acknowledge (delete) my device's messages up to a position.
#[utoipa::path(post, path = "/to-device/ack", tag = "keys", security(("bearer" = [])),
    params(("X-Copains-Device" = String, Header, description = "My device")),
    request_body = Ack, responses((status = 200, body = AckResult)))]
pub async fn ack(
    State(state): State<AppState>,
    caller: CallerDevice,
    Json(req): Json<Ack>,
) -> KeysResult<axum::Json<AckResult>> {
    let deleted = sqlx::query(
        "DELETE FROM to_device_messages
          WHERE recipient_user_id = $1 AND recipient_device_id = $2 AND seq <= $3",
    )
    .bind(caller.auth.user_id.0)
    .bind(&caller.device_id)
    .bind(req.up_to)
    .execute(&state.db)
    .await?
    .rows_affected();
    Ok(axum::Json(AckResult { deleted }))
}
