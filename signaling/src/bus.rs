//! The event bus: one trait, two implementations.
//!
//! Publishers (the api, the gateway itself) publish [`BusEvent`]s; each gateway node
//! subscribes only to the [`Topic`]s its connected clients need (per user, per server, per
//! DM channel, per large-server member list, per voice channel) and receives, through
//! [`EventBus::incoming`], the events published on those topics.
//!
//! - [`InProcessBus`]: the default, one node, no Redis.
//! - [`RedisBus`]: Redis pub/sub on channels `{prefix}:user:{id}`, `{prefix}:server:{id}`, …;
//!   reconnects by itself with backoff when Redis restarts and subscribes again.
//!
//! Pub/sub is fire-and-forget: an event published while Redis is unreachable is lost for
//! the gateway (the publish call returns an error); clients recover by refetching after
//! `invalid_session`.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many received events a node buffers before its router is considered lagging.
const INCOMING_CAPACITY: usize = 16_384;

/// Largest event accepted from Redis, in bytes (bigger ones are dropped and logged).
const MAX_REDIS_PAYLOAD: usize = 1 << 20;

/// A node-local subscription key. Many audiences map onto few topics; the gateway filters
/// each event precisely per connection after receiving it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Events for one user (all their sessions).
    User(Id),
    /// Events for a server's members or for one of its channels.
    Server(Id),
    /// Events for a DM or group DM channel.
    Channel(Id),
    /// Member presence of a large server, for member-list subscribers.
    MemberList(Id),
    /// Voice signalling towards the SFU serving a voice channel.
    Voice(Id),
    /// Every voice event of the instance (what the node hosting the SFU subscribes to).
    VoiceAll,
}

impl Topic {
    /// The topics an audience is published on.
    pub fn for_audience(a: &Audience, out: &mut Vec<Topic>) {
        match a {
            Audience::User(u) | Audience::Session { user_id: u, .. } => out.push(Topic::User(*u)),
            Audience::Users(us) => out.extend(us.iter().map(|u| Topic::User(*u))),
            Audience::Server(s)
            | Audience::Channel {
                server_id: Some(s), ..
            } => out.push(Topic::Server(*s)),
            Audience::Channel {
                server_id: None,
                channel_id,
            } => out.push(Topic::Channel(*channel_id)),
            Audience::MemberList(s) => out.push(Topic::MemberList(*s)),
            Audience::Voice(c) => {
                out.push(Topic::Voice(*c));
                out.push(Topic::VoiceAll);
            }
        }
    }

    /// The distinct topics of an event.
    pub fn for_event(ev: &BusEvent) -> Vec<Topic> {
        let mut out = Vec::with_capacity(ev.audience.len());
        for a in &ev.audience {
            Topic::for_audience(a, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The Redis channel name of this topic under `prefix`.
    pub fn channel_name(&self, prefix: &str) -> String {
        match self {
            Topic::User(id) => format!("{prefix}:user:{id}"),
            Topic::Server(id) => format!("{prefix}:server:{id}"),
            Topic::Channel(id) => format!("{prefix}:channel:{id}"),
            Topic::MemberList(id) => format!("{prefix}:members:{id}"),
            Topic::Voice(id) => format!("{prefix}:voice:{id}"),
            Topic::VoiceAll => format!("{prefix}:voice:all"),
        }
    }
}

/// Why the bus could not do something.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The event could not be serialized.
    #[error("encoding the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The bus's background task has stopped.
    #[error("the bus is closed")]
    Closed,
    /// Redis is currently unreachable; the subscription is recorded and will be made on reconnect.
    #[error("redis is unreachable; will subscribe on reconnect")]
    Disconnected,
}

/// Publish events; subscribe this node to topics; receive what was published on them.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes an event on every topic of its audiences.
    async fn publish(&self, ev: &BusEvent) -> Result<(), BusError>;
    /// Subscribes this node to these topics (idempotent). When it returns `Ok`, events
    /// published afterwards on them are delivered to [`EventBus::incoming`].
    async fn subscribe(&self, topics: &[Topic]) -> Result<(), BusError>;
    /// Unsubscribes this node from these topics.
    async fn unsubscribe(&self, topics: &[Topic]) -> Result<(), BusError>;
    /// The events received on this node's topics (one receiver per router).
    fn incoming(&self) -> broadcast::Receiver<Arc<BusEvent>>;
    /// Whether every publisher of this bus is in this process (one node): then what this
    /// process publishes is everything that happens, and caches may rely on it.
    fn is_local(&self) -> bool {
        false
    }
}

/// The bus of this deployment: [`RedisBus`] when `redis_url` is given (`COPAINS_REDIS_URL`),
/// else [`InProcessBus`]. `prefix` is `copains` in production.
pub async fn from_url(
    redis_url: Option<&str>,
    prefix: &str,
) -> Result<Arc<dyn EventBus>, BusError> {
    Ok(match redis_url {
        Some(url) => Arc::new(RedisBus::connect(url, prefix).await?),
        None => Arc::new(InProcessBus::new()),
    })
}

/// The single-node bus: publishing delivers directly to this process's router.
pub struct InProcessBus {
    topics: Mutex<HashSet<Topic>>,
    tx: broadcast::Sender<Arc<BusEvent>>,
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBus").finish_non_exhaustive()
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self {
            topics: Mutex::new(HashSet::new()),
            tx: broadcast::channel(INCOMING_CAPACITY).0,
        }
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, ev: &BusEvent) -> Result<(), BusError> {
        let wanted = {
            let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
            Topic::for_event(ev).iter().any(|t| topics.contains(t))
        };
        if wanted {
            // No receiver means no router: nothing to deliver to, not an error.
            let _ = self.tx.send(Arc::new(ev.clone()));
        }
        Ok(())
    }

    async fn subscribe(&self, topics: &[Topic]) -> Result<(), BusError> {
        let mut t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        t.extend(topics.iter().cloned());
        Ok(())
    }

    async fn unsubscribe(&self, topics: &[Topic]) -> Result<(), BusError> {
        let mut t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        for topic in topics {
            t.remove(topic);
        }
        Ok(())
    }

    fn incoming(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.tx.subscribe()
    }

    fn is_local(&self) -> bool {
        true
    }
}

enum Ctrl {
    Subscribe(Vec<String>, oneshot::Sender<Result<(), BusError>>),
    Unsubscribe(Vec<String>, oneshot::Sender<Result<(), BusError>>),
}

/// A Redis connection for commands that reconnects by itself, with short timeouts (a dead
/// Redis must not stall callers for long).
pub async fn connection_manager(
    client: &redis::Client,
) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2)
        .set_max_delay(1000);
    redis::aio::ConnectionManager::new_with_config(client.clone(), cfg).await
}

/// Redis pub/sub bus for several api and gateway nodes.
pub struct RedisBus {
    prefix: String,
    publisher: redis::aio::ConnectionManager,
    desired: Arc<Mutex<HashSet<String>>>,
    ctrl: mpsc::UnboundedSender<Ctrl>,
    tx: broadcast::Sender<Arc<BusEvent>>,
    connects: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisBus {
    /// Connects to Redis at `url` (e.g. `redis://127.0.0.1:6379`); channel names start with
    /// `prefix` (`copains` in production, random in tests). Fails if Redis is unreachable now;
    /// later outages are survived.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        let client = redis::Client::open(url)?;
        let publisher = connection_manager(&client).await?;
        // Fail early (and clearly) if pub/sub cannot connect at all.
        drop(client.get_async_pubsub().await?);
        let desired = Arc::new(Mutex::new(HashSet::new()));
        let (ctrl, ctrl_rx) = mpsc::unbounded_channel();
        let tx = broadcast::channel(INCOMING_CAPACITY).0;
        let connects = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(subscriber_loop(
            client,
            desired.clone(),
            ctrl_rx,
            tx.clone(),
            connects.clone(),
        ));
        Ok(Self {
            prefix: prefix.to_owned(),
            publisher,
            desired,
            ctrl,
            tx,
            connects,
            task,
        })
    }

    /// How many times the subscriber connection was established (1 + reconnections).
    pub fn connections_made(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The channel-name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn control(&self, names: Vec<String>, sub: bool) -> Result<(), BusError> {
        let (ack, rx) = oneshot::channel();
        let msg = if sub {
            Ctrl::Subscribe(names, ack)
        } else {
            Ctrl::Unsubscribe(names, ack)
        };
        self.ctrl.send(msg).map_err(|_| BusError::Closed)?;
        rx.await.map_err(|_| BusError::Closed)?
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, ev: &BusEvent) -> Result<(), BusError> {
        let payload = serde_json::to_vec(ev)?;
        let mut pipe = redis::pipe();
        for t in Topic::for_event(ev) {
            pipe.publish(t.channel_name(&self.prefix), &payload)
                .ignore();
        }
        let mut conn = self.publisher.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn subscribe(&self, topics: &[Topic]) -> Result<(), BusError> {
        let names: Vec<String> = topics
            .iter()
            .map(|t| t.channel_name(&self.prefix))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        self.desired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(names.iter().cloned());
        self.control(names, true).await
    }

    async fn unsubscribe(&self, topics: &[Topic]) -> Result<(), BusError> {
        let names: Vec<String> = topics
            .iter()
            .map(|t| t.channel_name(&self.prefix))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        {
            let mut d = self.desired.lock().unwrap_or_else(PoisonError::into_inner);
            for n in &names {
                d.remove(n);
            }
        }
        self.control(names, false).await
    }

    fn incoming(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.tx.subscribe()
    }
}

/// Owns the pub/sub connection: (re)connects with backoff, re-subscribes to every desired
/// channel, forwards messages, applies subscription changes, pings to detect dead links.
async fn subscriber_loop(
    client: redis::Client,
    desired: Arc<Mutex<HashSet<String>>>,
    mut ctrl: mpsc::UnboundedReceiver<Ctrl>,
    tx: broadcast::Sender<Arc<BusEvent>>,
    connects: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let pubsub =
            match tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await {
                Ok(Ok(p)) => p,
                other => {
                    let err = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "connect timeout".to_owned(),
                    };
                    tracing::warn!(%err, ?backoff, "redis bus: cannot connect, retrying");
                    // Answer control requests while disconnected (they are recorded in `desired`).
                    let sleep = tokio::time::sleep(backoff);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            c = ctrl.recv() => match c {
                                None => return,
                                Some(Ctrl::Subscribe(_, ack) | Ctrl::Unsubscribe(_, ack)) => {
                                    let _ = ack.send(Err(BusError::Disconnected));
                                }
                            },
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(1000));
                    continue;
                }
            };
        let (mut sink, mut stream) = pubsub.split();
        let all: Vec<String> = desired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        if !all.is_empty() {
            if let Err(e) = sink.subscribe(all).await {
                tracing::warn!(%e, "redis bus: re-subscribe failed");
                continue;
            }
            tracing::info!("redis bus: (re)connected and re-subscribed");
        }
        backoff = Duration::from_millis(50);
        connects.fetch_add(1, Ordering::Relaxed);
        let mut ping = tokio::time::interval(Duration::from_secs(2));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = stream.next() => {
                    let Some(m) = m else { break };
                    let payload: &[u8] = match m.get_payload_bytes() {
                        p if p.len() <= MAX_REDIS_PAYLOAD => p,
                        _ => { tracing::warn!("redis bus: oversized event dropped"); continue; }
                    };
                    match serde_json::from_slice::<BusEvent>(payload) {
                        Ok(ev) => { let _ = tx.send(Arc::new(ev)); }
                        Err(e) => tracing::warn!(%e, "redis bus: undecodable event dropped"),
                    }
                }
                c = ctrl.recv() => {
                    let Some(c) = c else { return };
                    let (res, ack) = match c {
                        Ctrl::Subscribe(names, ack) => (sink.subscribe(names).await, ack),
                        Ctrl::Unsubscribe(names, ack) => (sink.unsubscribe(names).await, ack),
                    };
                    let failed = res.is_err();
                    let _ = ack.send(res.map_err(BusError::from));
                    if failed { break; }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(Duration::from_secs(2), sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        _ => { tracing::warn!("redis bus: ping failed, reconnecting"); break; }
                    }
                }
            }
        }
        tracing::warn!("redis bus: connection lost, reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use copains_wire::events::Event;

    #[test]
    fn audiences_map_to_few_topics() {
        let ev = BusEvent::new(
            vec![
                Audience::Users(vec![Id(1), Id(2)]),
                Audience::Channel {
                    server_id: Some(Id(9)),
                    channel_id: Id(10),
                },
                Audience::Server(Id(9)),
                Audience::Channel {
                    server_id: None,
                    channel_id: Id(11),
                },
            ],
            Event::ScopeChanged { user_id: Id(1) },
        );
        assert_eq!(
            Topic::for_event(&ev),
            vec![
                Topic::User(Id(1)),
                Topic::User(Id(2)),
                Topic::Server(Id(9)),
                Topic::Channel(Id(11))
            ]
        );
        assert_eq!(
            Topic::Server(Id(9)).channel_name("copains"),
            "copains:server:9"
        );
    }

    #[tokio::test]
    async fn in_process_bus_delivers_only_subscribed_topics() {
        let bus = InProcessBus::new();
        let mut rx = bus.incoming();
        bus.subscribe(&[Topic::User(Id(1))]).await.unwrap();
        bus.publish(&BusEvent::to(
            Audience::User(Id(2)),
            Event::ScopeChanged { user_id: Id(2) },
        ))
        .await
        .unwrap();
        bus.publish(&BusEvent::to(
            Audience::User(Id(1)),
            Event::ScopeChanged { user_id: Id(1) },
        ))
        .await
        .unwrap();
        let got = rx.recv().await.unwrap();
        assert_eq!(got.event, Event::ScopeChanged { user_id: Id(1) });
        assert!(rx.try_recv().is_err());
        bus.unsubscribe(&[Topic::User(Id(1))]).await.unwrap();
        bus.publish(&BusEvent::to(
            Audience::User(Id(1)),
            Event::ScopeChanged { user_id: Id(1) },
        ))
        .await
        .unwrap();
        assert!(rx.try_recv().is_err());
    }
}
