//! The bus events of this area: `device_keys_changed` (to everyone who may see the user's
//! keys: the user, their servers, friends and DM partners) and `to_device` (to the recipient user; clients keep those for their own device).
//!
//! Events go on the bus through [`AppState::publish`], after the change is committed.
//! Publishing never fails a request: the database is the source of truth (the to-device
//! queue, the key-change stream), the event only wakes clients up.

use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event};
use serde_json::Value;

use crate::state::AppState;

/// Announces that `user`'s devices or device keys changed: to the user, the servers they
/// are in, their friends and the recipients of their DMs.
pub async fn device_keys_changed(state: &AppState, user: Id) {
    let servers: Vec<i64> = sqlx::query_scalar("SELECT server_id FROM members WHERE user_id = $1")
        .bind(user.0)
        .fetch_all(&state.db)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "device_keys_changed: servers");
            Vec::new()
        });
    let friends: Vec<i64> = sqlx::query_scalar(
        "SELECT other_id FROM relationships WHERE user_id = $1 AND kind = 'friend'
         UNION
         SELECT b.user_id FROM dm_recipients a JOIN dm_recipients b ON a.channel_id = b.channel_id
          WHERE a.user_id = $1 AND b.user_id <> $1",
    )
    .bind(user.0)
    .fetch_all(&state.db)
    .await
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "device_keys_changed: friends");
        Vec::new()
    });
    let mut audience = vec![Audience::User(user)];
    audience.extend(servers.into_iter().map(|s| Audience::Server(Id(s))));
    if !friends.is_empty() {
        audience.push(Audience::Users(friends.into_iter().map(Id).collect()));
    }
    state
        .publish(BusEvent::new(
            audience,
            Event::DeviceKeysChanged { user_id: user },
        ))
        .await;
}

/// Announces a queued to-device message to its recipient.
pub async fn to_device(
    state: &AppState,
    recipient: Id,
    device_id: String,
    seq: i64,
    sender: Id,
    sender_device_id: String,
    message: Value,
) {
    state
        .publish(BusEvent::to(
            Audience::User(recipient),
            Event::ToDevice {
                device_id,
                id: seq,
                sender_user_id: sender,
                sender_device_id,
                message,
            },
        ))
        .await;
}
