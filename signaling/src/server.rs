//! The WebSocket endpoint `/gateway` (axum 0.8): drives one [`Session`] per connection with
//! a reader task (client frames, timers, actions) and a writer task (queued frames).
//!
//! Limits: Origin allow-list; the token only in `identify`/`resume`; inbound messages and
//! frames ≤ 16 KiB (close 1009); small read/write buffers so idle connections stay cheap;
//! a bounded outbound queue per session (slow consumers are closed with 4011, resumable);
//! a cap on live connections per user (4010); graceful shutdown (`reconnect`, then 1001).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use copains_wire::events::{Audience, BusEvent, Event, PresenceStatus};
use copains_wire::gateway::{MAX_INBOUND_FRAME, close};
use copains_wire::{Id, TokenVerifier};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;

use crate::bus::EventBus;
use crate::directory::Directory;
use crate::hub::{Hub, SessionHandle};
use crate::presence::{ConnPresence, PresenceStore, UserPresence, unix_ms};
use crate::session::{Action, Identified, ResumeOutcome, Session, SessionConfig, topics_for};

/// Gateway settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Session limits and timings.
    pub session: SessionConfig,
    /// Accepted `Origin` header values (e.g. `https://chat.example.org`); `None` accepts any.
    /// Requests without an `Origin` (non-browser clients) are accepted.
    pub allowed_origins: Option<Vec<String>>,
    /// Most live connections per user on one node.
    pub max_connections_per_user: usize,
    /// Most WebSocket connections on this node (authenticated or not); upgrades beyond are
    /// refused with 503.
    pub max_connections: usize,
    /// Largest inbound message and frame, bytes.
    pub max_inbound_frame: usize,
    /// tungstenite read buffer per connection, bytes (grows only for a large frame).
    pub read_buffer_size: usize,
    /// tungstenite write buffer target per connection, bytes (0: write each frame at once).
    pub write_buffer_size: usize,
    /// How long a connection's presence lives without a heartbeat.
    pub presence_ttl: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let session = SessionConfig::default();
        Self {
            presence_ttl: session.heartbeat_interval * 3,
            session,
            allowed_origins: None,
            max_connections_per_user: 10,
            max_connections: 50_000,
            max_inbound_frame: MAX_INBOUND_FRAME,
            read_buffer_size: 4096,
            write_buffer_size: 0,
        }
    }
}

/// Everything the gateway needs.
#[derive(Clone)]
pub struct GatewayState {
    /// Verifies access tokens (public key only).
    pub verifier: TokenVerifier,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// What users may see.
    pub directory: Arc<dyn Directory>,
    /// Presence store.
    pub presence: Arc<dyn PresenceStore>,
    /// Settings.
    pub config: GatewayConfig,
}

struct Shared {
    state: GatewayState,
    hub: Arc<Hub>,
    cfg: Arc<SessionConfig>,
    shutdown: watch::Sender<bool>,
    live: AtomicUsize,
}

/// A running gateway node: its router task, its reaper of expired sessions, its endpoint.
pub struct Gateway {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("live", &self.live_connections())
            .finish_non_exhaustive()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Gateway {
    /// Starts the node (must be called inside a tokio runtime).
    pub fn start(state: GatewayState) -> Self {
        let hub = Hub::new(state.bus.clone());
        let cfg = Arc::new(state.config.session.clone());
        let shared = Arc::new(Shared {
            state,
            hub: hub.clone(),
            cfg,
            shutdown: watch::channel(false).0,
            live: AtomicUsize::new(0),
        });
        let router = tokio::spawn(hub.clone().run());
        let reaper = tokio::spawn(reaper(shared.clone()));
        Self {
            shared,
            tasks: vec![router, reaper],
        }
    }

    /// The axum router serving `/gateway`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/gateway", get(upgrade))
            .with_state(self.shared.clone())
    }

    /// The node's router (sessions and topics).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// Live WebSocket connections.
    pub fn live_connections(&self) -> usize {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Sends `reconnect` and closes (1001) every connection, then waits up to `grace` for
    /// them to end. New upgrades are refused with 503.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.shared.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while self.live_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts a gateway node and returns its router (the node lives as long as the router).
pub fn router(state: GatewayState) -> Router {
    let gw = Arc::new(Gateway::start(state));
    let keep = gw.clone();
    gw.router().layer(axum::Extension(keep))
}

async fn reaper(sh: Arc<Shared>) {
    let period =
        (sh.cfg.replay_max_age / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for h in sh.hub.sessions() {
            let expired = {
                let s = h.lock();
                match s.detached_at() {
                    Some(at) => {
                        !s.is_resumable()
                            || now.saturating_duration_since(at) > sh.cfg.replay_max_age
                    }
                    None => false,
                }
            };
            if expired {
                sh.hub.unregister(&h).await;
            }
        }
    }
}

async fn upgrade(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if *sh.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if sh.live.load(Ordering::Relaxed) >= sh.state.config.max_connections {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    }
    if let (Some(allowed), Some(origin)) = (
        &sh.state.config.allowed_origins,
        headers.get(header::ORIGIN),
    ) && !allowed.iter().any(|a| a.as_bytes() == origin.as_bytes())
    {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let c = &sh.state.config;
    ws.read_buffer_size(c.read_buffer_size)
        .write_buffer_size(c.write_buffer_size)
        // tungstenite refuses frames beyond a hard limit (that connection ends abruptly: the
        // unread payload turns the close into a TCP reset); up to it, the whole message is
        // read and anything over `max_inbound_frame` gets a clean 1009 close.
        .max_message_size(c.max_inbound_frame.saturating_mul(HARD_LIMIT_FACTOR))
        .max_frame_size(c.max_inbound_frame.saturating_mul(HARD_LIMIT_FACTOR))
        .on_upgrade(move |socket| connection(sh, socket))
}

/// tungstenite's own limit is this many times `max_inbound_frame`.
const HARD_LIMIT_FACTOR: usize = 4;

struct LiveGuard(Arc<Shared>);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Most presences sent to a session whose scope grew (one event each).
const MAX_PRESENCE_CATCH_UP: usize = 256;

/// A session's scope before a refresh.
struct ScopeBefore {
    known: HashSet<Id>,
    servers: HashSet<Id>,
    friends: HashSet<Id>,
}

/// What a scope refresh added: users to learn the presence of, audiences to tell mine.
struct ScopeGrowth {
    session_id: String,
    users: Vec<Id>,
    audience: Vec<Audience>,
}

impl ScopeBefore {
    fn of(s: &Session) -> Self {
        Self {
            known: s.known_users().clone(),
            servers: s.servers().map(|(id, _)| id).collect(),
            friends: s.friends().iter().copied().collect(),
        }
    }

    fn growth(&self, s: &Session) -> ScopeGrowth {
        let me = s.user_id();
        let users = s
            .known_users()
            .iter()
            .filter(|u| !self.known.contains(u) && Some(**u) != me)
            .copied()
            .collect();
        let mut audience: Vec<Audience> = s
            .servers()
            .filter(|(id, _)| !self.servers.contains(id))
            .map(|(id, large)| {
                if large {
                    Audience::MemberList(id)
                } else {
                    Audience::Server(id)
                }
            })
            .collect();
        let friends: Vec<Id> = s
            .friends()
            .iter()
            .filter(|f| !self.friends.contains(f))
            .copied()
            .collect();
        if !friends.is_empty() {
            audience.push(Audience::Users(friends));
        }
        ScopeGrowth {
            session_id: s.session_id().to_owned(),
            users,
            audience,
        }
    }
}

/// The connection's state besides the session.
struct Conn {
    sh: Arc<Shared>,
    handle: Arc<SessionHandle>,
    current: watch::Sender<Arc<SessionHandle>>,
    close: watch::Sender<Option<(u16, &'static str)>>,
    /// The user counted in the per-user cap by this connection.
    attached_user: Option<Id>,
    /// Our own presence entry: the user (the entry's key is `presence_key`).
    presence: Option<Id>,
    /// This connection's presence entry key (unique per connection, not per session).
    presence_key: u64,
    /// The session epoch this connection attached with (shared with its writer, which only
    /// takes frames of the session while it still belongs to this connection).
    epoch: Arc<AtomicU64>,
    ended: bool,
}

async fn connection(sh: Arc<Shared>, socket: WebSocket) {
    sh.live.fetch_add(1, Ordering::Relaxed);
    let _guard = LiveGuard(sh.clone());
    let handle = SessionHandle::new(Session::new(sh.cfg.clone(), Instant::now()));
    let (sink, mut stream) = socket.split();
    let (current, cur_rx) = watch::channel(handle.clone());
    let (close_tx, close_rx) = watch::channel(None);
    let epoch = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(writer(sink, cur_rx, close_rx, epoch.clone()));
    let mut conn = Conn {
        sh,
        handle,
        current,
        close: close_tx,
        attached_user: None,
        presence: None,
        presence_key: rand::random(),
        epoch,
        ended: false,
    };
    let client_resumable = conn.read_loop(&mut stream).await;
    // Let the writer send what is queued and the close frame, but not forever.
    let _ = conn.close.send_if_modified(|c| {
        if c.is_none() {
            *c = Some((close::NORMAL, "bye"));
            true
        } else {
            false
        }
    });
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
    if conn.ended {
        // We closed: read (and discard) until the client answers the close or goes away, so
        // that unread bytes do not turn our close into a TCP reset that loses the close frame.
        let drain = async {
            let mut errors = 0;
            while let Some(r) = stream.next().await {
                if r.is_err() {
                    errors += 1;
                    if errors > 4 {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
    conn.cleanup(client_resumable).await;
}

async fn writer(
    mut sink: Sink,
    mut cur: watch::Receiver<Arc<SessionHandle>>,
    mut close_rx: watch::Receiver<Option<(u16, &'static str)>>,
    epoch: Arc<AtomicU64>,
) {
    loop {
        let h = cur.borrow_and_update().clone();
        loop {
            let next = take_frame(&h, &epoch);
            let Some(b) = next else { break };
            let Ok(text) = Utf8Bytes::try_from(b) else {
                continue;
            };
            if sink.feed(Message::Text(text)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        let closing = *close_rx.borrow_and_update();
        if let Some((code, reason)) = closing {
            // Frames queued just before the close (reconnect, invalid_session) go first.
            loop {
                let next = take_frame(&h, &epoch);
                let Some(b) = next else { break };
                if let Ok(text) = Utf8Bytes::try_from(b) {
                    let _ = sink.feed(Message::Text(text)).await;
                }
            }
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            let _ = sink.close().await;
            return;
        }
        tokio::select! {
            _ = h.writer_wake.notified() => {}
            r = cur.changed() => if r.is_err() { return },
            r = close_rx.changed() => if r.is_err() { return },
        }
    }
}

/// The next frame of the session, unless another connection took the session over.
fn take_frame(h: &SessionHandle, epoch: &AtomicU64) -> Option<bytes::Bytes> {
    let mut s = h.lock();
    if s.epoch() == epoch.load(Ordering::Relaxed) {
        s.pop_frame()
    } else {
        None
    }
}

fn is_capacity_error(e: axum::Error) -> bool {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => true,
        Some(_) => false,
        None => inner.to_string().contains("Space limit exceeded"),
    }
}

impl Conn {
    /// Reads until the connection ends; returns whether the client left in a way that
    /// allows resuming (an abrupt drop does, a close frame with 1000 does not).
    async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) -> bool {
        let mut shutdown = self.sh.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            let mut s = self.handle.lock();
            s.shutdown();
            self.handle.wake(&s);
        }
        loop {
            // Boxed so that the idle connection's future stays small.
            Box::pin(self.run_actions()).await;
            if self.ended {
                return true;
            }
            let h = self.handle.clone();
            let deadline = h.lock().next_deadline();
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = shutdown.changed() => {
                    if r.is_ok() && *shutdown.borrow() {
                        let mut s = h.lock();
                        s.shutdown();
                        h.wake(&s);
                    }
                }
                _ = h.reader_wake.notified() => {}
                _ = sleep => {
                    let mut s = h.lock();
                    s.on_tick(Instant::now());
                    h.wake(&s);
                }
                m = stream.next() => {
                    let now = Instant::now();
                    match m {
                        Some(Ok(Message::Text(t))) => {
                            let mut s = h.lock();
                            if t.len() > self.sh.state.config.max_inbound_frame {
                                s.protocol_close(close::FRAME_TOO_BIG, "frame too big");
                            } else {
                                s.on_client_text(now, unix_ms(), t.as_str());
                            }
                            h.wake(&s);
                        }
                        Some(Ok(Message::Binary(b))) => {
                            let mut s = h.lock();
                            if b.len() > self.sh.state.config.max_inbound_frame {
                                s.protocol_close(close::FRAME_TOO_BIG, "frame too big");
                            } else {
                                s.on_client_binary();
                            }
                            h.wake(&s);
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            // Each ping costs a pong: pings share the op rate limit.
                            let mut s = h.lock();
                            s.on_client_control(now);
                            h.wake(&s);
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map(|f| f.code).unwrap_or(close::NORMAL);
                            return code != close::NORMAL;
                        }
                        None => return true,
                        Some(Err(e)) => {
                            tracing::debug!(%e, "websocket read error");
                            if is_capacity_error(e) {
                                {
                                    let mut s = h.lock();
                                    s.protocol_close(close::FRAME_TOO_BIG, "frame too big");
                                    h.wake(&s);
                                }
                                Box::pin(self.run_actions()).await;
                                self.ended = true;
                                return false;
                            }
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// Runs every queued action of the current session.
    async fn run_actions(&mut self) {
        loop {
            let next = self.handle.lock().poll_action();
            let Some(a) = next else { return };
            self.run_action(a).await;
        }
    }

    async fn run_action(&mut self, a: Action) {
        let sh = self.sh.clone();
        let st = &sh.state;
        match a {
            Action::Close { code, reason } => {
                self.ended = true;
                let _ = self.close.send(Some((code, reason)));
            }
            Action::Identify { token, device_id } => self.identify(token, device_id).await,
            Action::Resume {
                token,
                session_id,
                seq,
            } => self.resume(token, session_id, seq).await,
            Action::Subscribe(t) => sh.hub.add_topics(self.handle.key, &t).await,
            Action::Unsubscribe(t) => sh.hub.remove_topics(self.handle.key, &t).await,
            Action::Publish(ev) => {
                if let Err(e) = st.bus.publish(&ev).await {
                    tracing::warn!(%e, "publish failed");
                }
            }
            Action::SetPresence {
                status,
                custom_status,
            } => self.set_presence(status, custom_status).await,
            Action::Heartbeat => {
                if let Some(user) = self.presence {
                    let exp = unix_ms() + st.config.presence_ttl.as_millis() as u64;
                    if let Err(e) = st.presence.refresh(user, self.presence_key, exp).await {
                        tracing::warn!(%e, "presence refresh failed");
                    }
                }
            }
            Action::RefreshScope => {
                let user = self.handle.lock().user_id();
                let Some(user) = user else { return };
                let v = st.directory.visible(user).await;
                let growth = {
                    let mut s = self.handle.lock();
                    let growth = match v {
                        Ok(v) => {
                            let before = ScopeBefore::of(&s);
                            s.set_scope(Instant::now(), unix_ms(), &v);
                            Some(before.growth(&s))
                        }
                        Err(e) => {
                            tracing::warn!(%e, "scope refresh failed");
                            s.scope_failed();
                            None
                        }
                    };
                    self.handle.wake(&s);
                    growth
                };
                if let Some(g) = growth {
                    self.exchange_presence(user, g).await;
                }
            }
            Action::AckToDevice { device_id, up_to } => {
                let user = self.handle.lock().user_id();
                if let Some(user) = user
                    && let Err(e) = st.directory.ack_to_device(user, &device_id, up_to).await
                {
                    tracing::warn!(%e, "to-device ack failed");
                }
            }
        }
    }

    fn fail(&self, code: u16, reason: &'static str) {
        let mut s = self.handle.lock();
        s.auth_failed(code, reason);
        self.handle.wake(&s);
    }

    async fn identify(&mut self, token: String, device_id: Option<String>) {
        let st = self.sh.state.clone();
        let Ok(claims) = st.verifier.verify(&token) else {
            return self.fail(close::AUTHENTICATION_FAILED, "authentication failed");
        };
        // The session must be the token subject's own: a token signed for one user naming
        // another user's session is refused.
        match st.directory.is_session_active(claims.sub, claims.sid).await {
            Ok(true) => {}
            Ok(false) => return self.fail(close::AUTHENTICATION_FAILED, "authentication failed"),
            Err(e) => {
                tracing::warn!(%e, "directory unavailable at identify");
                return self.fail(close::GOING_AWAY, "try again");
            }
        }
        if !self
            .sh
            .hub
            .try_attach_user(claims.sub, st.config.max_connections_per_user)
        {
            return self.fail(close::TOO_MANY_CONNECTIONS, "too many connections");
        }
        self.attached_user = Some(claims.sub);
        let visibility = match st.directory.visible(claims.sub).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%e, "directory unavailable at identify");
                return self.fail(close::GOING_AWAY, "try again");
            }
        };
        let topics = topics_for(claims.sub, &visibility);
        let session_id = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        // Subscribe before reading the ready payload: nothing published after it is missed.
        self.sh
            .hub
            .register(&self.handle, &session_id, &topics)
            .await;
        let mut ready = match st.directory.ready_payload(claims.sub).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%e, "directory unavailable at identify");
                let t: Vec<_> = topics.into_iter().collect();
                self.sh.hub.remove_topics(self.handle.key, &t).await;
                return self.fail(close::GOING_AWAY, "try again");
            }
        };
        let mut known: Vec<Id> = visibility.friends.clone();
        known.extend(visibility.co_members.iter().copied());
        known.sort_unstable();
        known.dedup();
        let presences = st.presence.get(&known).await.unwrap_or_default();
        if let Some(obj) = ready.as_object_mut() {
            obj.insert(
                "presences".into(),
                serde_json::to_value(presences).unwrap_or_default(),
            );
        }
        {
            let mut s = self.handle.lock();
            let id = Identified {
                user_id: claims.sub,
                token_session: claims.sid,
                device_id,
                session_id,
                visibility,
                topics,
                ready,
            };
            s.identified(Instant::now(), unix_ms(), id);
            self.epoch.store(s.epoch(), Ordering::Relaxed);
            self.handle.wake(&s);
        }
        self.set_presence(PresenceStatus::Online, None).await;
    }

    async fn resume(&mut self, token: String, session_id: String, seq: u64) {
        let st = self.sh.state.clone();
        let Ok(claims) = st.verifier.verify(&token) else {
            return self.fail(close::AUTHENTICATION_FAILED, "authentication failed");
        };
        let reject = |h: &Arc<SessionHandle>| {
            let mut s = h.lock();
            s.resume_rejected(Instant::now());
            h.wake(&s);
        };
        let Some(old) = self.sh.hub.find(&session_id) else {
            return reject(&self.handle);
        };
        let (owner, tsid) = {
            let s = old.lock();
            (s.user_id(), s.token_session())
        };
        if owner != Some(claims.sub) {
            return reject(&self.handle);
        }
        // Both the presented token's session and the one the resumed session was opened
        // with must be the subject's own and still live.
        let mut sids = vec![claims.sid];
        sids.extend(tsid.filter(|t| *t != claims.sid));
        for sid in sids {
            if !matches!(
                st.directory.is_session_active(claims.sub, sid).await,
                Ok(true)
            ) {
                return reject(&self.handle);
            }
        }
        if !self
            .sh
            .hub
            .try_attach_user(claims.sub, st.config.max_connections_per_user)
        {
            return self.fail(close::TOO_MANY_CONNECTIONS, "too many connections");
        }
        let outcome = old.lock().resume(Instant::now(), unix_ms(), seq);
        match outcome {
            ResumeOutcome::Resumed => {
                self.attached_user = Some(claims.sub);
                self.handle = old.clone();
                let _ = self.current.send(old.clone());
                {
                    let s = old.lock();
                    self.epoch.store(s.epoch(), Ordering::Relaxed);
                    old.wake(&s);
                }
                self.set_presence(PresenceStatus::Online, None).await;
            }
            ResumeOutcome::BadSeq => {
                self.sh.hub.detach_user(claims.sub);
                self.fail(close::INVALID_SEQ, "invalid seq");
            }
            ResumeOutcome::Invalid => {
                self.sh.hub.detach_user(claims.sub);
                reject(&self.handle);
            }
        }
    }

    async fn set_presence(&mut self, status: PresenceStatus, custom_status: Option<String>) {
        let st = self.sh.state.clone();
        let Some(user) = self.handle.lock().user_id() else {
            return;
        };
        let now = unix_ms();
        let p = ConnPresence {
            status,
            custom_status,
            set_at_ms: now,
            expires_at_ms: now + st.config.presence_ttl.as_millis() as u64,
        };
        match st.presence.set(user, self.presence_key, p).await {
            Ok((before, after)) => {
                self.presence = Some(user);
                self.publish_presence(before, after).await;
            }
            Err(e) => tracing::warn!(%e, "presence set failed"),
        }
    }

    /// The scope grew (a join, a new friendship): presence is only published when it changes,
    /// so tell this session the current presence of the users it newly sees (at most
    /// [`MAX_PRESENCE_CATCH_UP`], online ones only), and tell the new servers and friends mine.
    async fn exchange_presence(&self, me: Id, g: ScopeGrowth) {
        let st = &self.sh.state;
        if !g.users.is_empty() {
            let mut users = g.users;
            users.sort_unstable();
            match st.presence.get(&users).await {
                Ok(list) => {
                    let shown = list
                        .into_iter()
                        .filter(|p| {
                            p.status != PresenceStatus::Offline
                                && p.status != PresenceStatus::Invisible
                        })
                        .take(MAX_PRESENCE_CATCH_UP);
                    for p in shown {
                        let ev = BusEvent::new(
                            vec![Audience::Session {
                                user_id: me,
                                session_id: g.session_id.clone(),
                            }],
                            Event::PresenceUpdate {
                                user_id: p.user_id,
                                status: p.status,
                                custom_status: p.custom_status,
                            },
                        );
                        if let Err(e) = st.bus.publish(&ev).await {
                            tracing::warn!(%e, "presence catch-up publish failed");
                            break;
                        }
                    }
                }
                Err(e) => tracing::warn!(%e, "presence catch-up failed"),
            }
        }
        if g.audience.is_empty() {
            return;
        }
        let mine = match st.presence.get(&[me]).await {
            Ok(list) => list.into_iter().find(|p| p.user_id == me),
            Err(e) => {
                tracing::warn!(%e, "presence lookup failed");
                None
            }
        };
        // Offline or invisible: the new audience already shows me offline.
        let Some(p) = mine.filter(|p| {
            p.status != PresenceStatus::Offline && p.status != PresenceStatus::Invisible
        }) else {
            return;
        };
        let ev = BusEvent::new(
            g.audience,
            Event::PresenceUpdate {
                user_id: me,
                status: p.status,
                custom_status: p.custom_status,
            },
        );
        if let Err(e) = st.bus.publish(&ev).await {
            tracing::warn!(%e, "presence publish failed");
        }
    }

    async fn publish_presence(&self, before: UserPresence, after: UserPresence) {
        if before == after {
            return;
        }
        let audience = {
            let s = self.handle.lock();
            let mut a = vec![Audience::User(after.user_id)];
            if !s.friends().is_empty() {
                a.push(Audience::Users(s.friends().to_vec()));
            }
            a.extend(s.servers().map(|(id, large)| {
                if large {
                    Audience::MemberList(id)
                } else {
                    Audience::Server(id)
                }
            }));
            a
        };
        let ev = BusEvent::new(
            audience,
            Event::PresenceUpdate {
                user_id: after.user_id,
                status: after.status,
                custom_status: after.custom_status,
            },
        );
        if let Err(e) = self.sh.state.bus.publish(&ev).await {
            tracing::warn!(%e, "presence publish failed");
        }
    }

    async fn cleanup(&mut self, client_resumable: bool) {
        let h = self.handle.clone();
        let unregister = {
            let mut s = h.lock();
            s.detach(
                Instant::now(),
                client_resumable,
                self.epoch.load(Ordering::Relaxed),
            ) && !s.is_resumable()
        };
        if let Some(user) = self.attached_user.take() {
            self.sh.hub.detach_user(user);
        }
        if let Some(user) = self.presence.take() {
            match self.sh.state.presence.remove(user, self.presence_key).await {
                Ok((before, after)) => self.publish_presence(before, after).await,
                Err(e) => tracing::warn!(%e, "presence remove failed"),
            }
        }
        if unregister {
            self.sh.hub.unregister(&h).await;
        }
    }
}
