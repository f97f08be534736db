//! The history cache across api nodes: every node publishes the invalidations it makes on one
//! Redis channel (`{prefix}:history`) and applies the others' — so the cache can stay on when
//! several api nodes share the database.
//!
//! - A node's cache is used only while its subscription is live: it is off until the first
//!   subscription succeeds, turned off (and emptied) when the connection drops, and turned on
//!   again, empty, once re-subscribed — invalidations published meanwhile were missed, so
//!   nothing cached before can be trusted.
//! - Publishing is fire-and-forget through a bounded queue; a full queue sends "everything
//!   changed" instead of dropping a change silently. If a node cannot publish (its own link to
//!   Redis is down while the others' are up), the others are stale until the cache's time bound
//!   ([`MULTI_NODE_CHANNEL_TTL`], shorter than on one node).
//! - Another node's change reaches this cache after Redis delivers it (typically well under a
//!   millisecond on a LAN), so for that long a page read here may miss it — the same window in
//!   which this node's gateway has not yet delivered the event either. Gap-free `after` paging
//!   does not depend on it: a read that sees a newer head closes older open spans by itself.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::history_cache::{Change, HistoryCache, RemoteInvalidation};

/// How long a place's cached history lives when several nodes share it.
pub const MULTI_NODE_CHANNEL_TTL: Duration = Duration::from_secs(10);
/// Most invalidations waiting to be published.
const QUEUE: usize = 10_000;
/// Most invalidations in one published message.
const PER_MESSAGE: usize = 256;
/// Largest message accepted from Redis, in bytes.
const MAX_PAYLOAD: usize = 64 * 1024;

/// One published message: the changes a node made, and which node made them.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    node: u64,
    changes: Vec<Wire>,
}

/// A [`Change`] as sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Wire {
    Create { c: i64 },
    Message { c: i64, m: i64 },
    All,
}

impl From<Change> for Wire {
    fn from(c: Change) -> Self {
        match c {
            Change::Create(c) => Wire::Create { c },
            Change::Message(c, m) => Wire::Message { c, m },
            Change::All => Wire::All,
        }
    }
}

impl From<Wire> for Change {
    fn from(w: Wire) -> Self {
        match w {
            Wire::Create { c } => Change::Create(c),
            Wire::Message { c, m } => Change::Message(c, m),
            Wire::All => Change::All,
        }
    }
}

/// The publishing side, installed into the [`HistoryCache`].
struct Publisher {
    tx: mpsc::Sender<Change>,
}

impl RemoteInvalidation for Publisher {
    fn publish(&self, change: Change) {
        if self.tx.try_send(change).is_err() {
            // Full (or stopped): make sure the others drop everything rather than miss this.
            let _ = self.tx.try_send(Change::All);
        }
    }
}

/// Connects this node's `cache` to the other api nodes through Redis at `url`, on channel
/// `{prefix}:history`. Fails if Redis is unreachable now; later outages are survived (the
/// cache is off while disconnected). The cache stays off until the subscription is live.
pub async fn start(
    cache: Arc<HistoryCache>,
    url: &str,
    prefix: &str,
) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let publisher = copains_signaling::bus::connection_manager(&client).await?;
    let channel = format!("{prefix}:history");
    let node: u64 = rand::random();
    cache.set_enabled(false);
    cache.set_channel_ttl(MULTI_NODE_CHANNEL_TTL);
    let (tx, rx) = mpsc::channel(QUEUE);
    cache.set_remote(Arc::new(Publisher { tx }));
    tokio::spawn(publish_loop(publisher, channel.clone(), node, rx));
    tokio::spawn(subscribe_loop(client, channel, node, cache));
    Ok(())
}

/// Sends queued changes, several per message.
async fn publish_loop(
    mut conn: redis::aio::ConnectionManager,
    channel: String,
    node: u64,
    mut rx: mpsc::Receiver<Change>,
) {
    let mut buf = Vec::with_capacity(PER_MESSAGE);
    while rx.recv_many(&mut buf, PER_MESSAGE).await > 0 {
        let mut changes: Vec<Wire> = Vec::with_capacity(buf.len());
        for c in buf.drain(..) {
            let w = Wire::from(c);
            if !changes.contains(&w) {
                changes.push(w);
            }
        }
        if changes.contains(&Wire::All) {
            changes = vec![Wire::All];
        }
        let payload = match serde_json::to_vec(&Message { node, changes }) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%e, "history sync: encoding failed");
                continue;
            }
        };
        // A link that just broke reconnects in the background: retry a few times first.
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=4 {
            let sent: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&payload)
                .query_async(&mut conn)
                .await;
            match sent {
                Ok(_) => break,
                Err(e) if attempt == 4 => {
                    tracing::warn!(%e, "history sync: publishing an invalidation failed; other nodes may serve stale history until their cache expires")
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

/// Applies the other nodes' changes while subscribed; keeps the cache off while not.
async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    node: u64,
    cache: Arc<HistoryCache>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let pubsub = match tokio::time::timeout(Duration::from_secs(2), async {
            let mut p = client.get_async_pubsub().await?;
            p.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(p)
        })
        .await
        {
            Ok(Ok(p)) => p,
            other => {
                if let Ok(Err(e)) = other {
                    tracing::warn!(%e, ?backoff, "history sync: cannot subscribe, retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        // Live again: whatever was cached before may have missed changes.
        cache.invalidate_local(Change::All);
        cache.set_enabled(true);
        tracing::info!("history sync: subscribed; history cache on");
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(Duration::from_secs(2));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = stream.next() => {
                    let Some(m) = m else { break };
                    let payload = m.get_payload_bytes();
                    let changes = if payload.len() > MAX_PAYLOAD {
                        vec![Change::All]
                    } else {
                        match serde_json::from_slice::<Message>(payload) {
                            Ok(msg) if msg.node == node => Vec::new(),
                            Ok(msg) => msg.changes.into_iter().map(Change::from).collect(),
                            // Unreadable: assume the worst.
                            Err(_) => vec![Change::All],
                        }
                    };
                    for c in changes {
                        cache.invalidate_local(c);
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(Duration::from_secs(2), sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
        }
        cache.set_enabled(false);
        tracing::warn!("history sync: connection lost; history cache off until re-subscribed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_on_the_wire() {
        for c in [Change::Create(7), Change::Message(7, 9), Change::All] {
            let json = serde_json::to_string(&Wire::from(c)).unwrap();
            let back: Wire = serde_json::from_str(&json).unwrap();
            assert_eq!(Change::from(back), c);
        }
    }
}
