//! The gateway session as a sans-IO state machine: no sockets, no clock reads, no locks.
//!
//! Inputs: client text frames ([`Session::on_client_text`]), the time ([`Session::on_tick`]),
//! bus events ([`Session::on_event`]) and the answers of the driver to the requests it
//! made ([`Session::identified`], [`Session::set_scope`], [`Session::resume`], …).
//! Outputs: frames to send ([`Session::pop_frame`]) and actions for the driver
//! ([`Session::poll_action`]): close with a code, publish an event, (un)subscribe topics,
//! authenticate a token, set presence, refresh the scope, acknowledge to-device messages.
//!
//! Phases: `hello` is queued at creation → `identify`/`resume` within the identify timeout →
//! `ready` → `dispatch` frames with `s` = 1, 2, 3, …. Every dispatched frame is also kept in
//! a replay buffer bounded in count and age, so that after a dropped connection a `resume`
//! with the last `s` received replays exactly the frames after it, or answers
//! `invalid_session` when some of them are no longer kept.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event, PresenceStatus};
use copains_wire::gateway::{ClientFrame, ServerFrame, close};
use serde_json::Value;

use crate::bus::Topic;
use crate::directory::Visibility;
use crate::presence::MAX_CUSTOM_STATUS_CHARS;

/// How long a typing indicator lasts.
pub const TYPING_TTL: Duration = Duration::from_secs(10);

/// Limits and timings of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Heartbeat interval announced in `hello`.
    pub heartbeat_interval: Duration,
    /// Time allowed between `hello` and `identify`/`resume`.
    pub identify_timeout: Duration,
    /// Replay buffer: most events kept.
    pub replay_max_events: usize,
    /// Replay buffer: oldest event kept (also how long a dropped session can be resumed).
    pub replay_max_age: Duration,
    /// Frames waiting to be written before the client is a slow consumer (closed with 4011).
    pub outbound_max_frames: usize,
    /// Token bucket for client ops: capacity.
    pub rate_burst: u32,
    /// Token bucket for client ops: tokens per second.
    pub rate_per_sec: u32,
    /// Minimum time between two typing events of one session in one channel.
    pub typing_interval: Duration,
    /// Most member lists one session may subscribe to.
    pub max_member_subscriptions: usize,
    /// Largest `data` of a `voice_signal`, serialized, in bytes.
    pub max_signal_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(40),
            identify_timeout: Duration::from_secs(10),
            replay_max_events: 1000,
            replay_max_age: Duration::from_secs(120),
            outbound_max_frames: 512,
            rate_burst: 60,
            rate_per_sec: 10,
            typing_interval: Duration::from_secs(5),
            max_member_subscriptions: 100,
            max_signal_bytes: 12 * 1024,
        }
    }
}

/// An event prepared once for every session it goes to.
#[derive(Debug)]
pub struct RoutedEvent {
    /// The event.
    pub ev: Arc<BusEvent>,
    /// `"t":"…","d":{…}}`: the serialized event without its opening brace, so that a
    /// session's dispatch frame is `{"op":"dispatch","s":N,` + this.
    pub tail: Option<Box<str>>,
}

impl RoutedEvent {
    /// Serializes the event once (internal events are not serialized).
    pub fn new(ev: Arc<BusEvent>) -> Self {
        let tail = if ev.event.is_internal() {
            None
        } else {
            serde_json::to_string(&ev.event)
                .ok()
                .and_then(|s| s.strip_prefix('{').map(|t| t.into()))
        };
        Self { ev, tail }
    }
}

/// What the driver must do for the session.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Send a close frame with this code and end the connection. Whether the session stays
    /// resumable is [`Session::is_resumable`].
    Close {
        /// The close code ([`copains_wire::gateway::close`]).
        code: u16,
        /// A short human-readable reason.
        reason: &'static str,
    },
    /// Verify the token and, if good, call [`Session::identified`].
    Identify {
        /// The access token.
        token: String,
        /// The device id the client declared.
        device_id: Option<String>,
    },
    /// Verify the token, find the detached session and call [`Session::resume`] on it.
    Resume {
        /// The access token.
        token: String,
        /// The session to resume.
        session_id: String,
        /// The last `s` the client received.
        seq: u64,
    },
    /// Subscribe the node to these topics for this session.
    Subscribe(Vec<Topic>),
    /// This session no longer needs these topics.
    Unsubscribe(Vec<Topic>),
    /// Publish this event on the bus.
    Publish(BusEvent),
    /// Set this connection's presence.
    SetPresence {
        /// Status.
        status: PresenceStatus,
        /// Custom status text.
        custom_status: Option<String>,
    },
    /// A heartbeat arrived: refresh presence TTLs.
    Heartbeat,
    /// Ask the directory for this user's visibility again and call [`Session::set_scope`].
    RefreshScope,
    /// Acknowledge this device's to-device messages up to `up_to`.
    AckToDevice {
        /// The device.
        device_id: String,
        /// Highest id processed.
        up_to: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingIdentify { deadline: Instant },
    Authenticating,
    Ready,
    Closed,
}

/// A dispatched event kept for resume. The frame is built when written, so sessions share
/// the event (one allocation per event, not per session and event).
#[derive(Debug)]
struct Replayed {
    seq: u64,
    at: Instant,
    ev: Arc<RoutedEvent>,
}

impl Replayed {
    /// Whether this is a typing event whose 10 s are over at `unix_ms`.
    fn expired(&self, unix_ms: u64) -> bool {
        matches!(self.ev.ev.event, Event::TypingStart { expires_at_ms, .. } if unix_ms >= expires_at_ms)
    }
}

/// A frame waiting to be written.
#[derive(Debug)]
enum Out {
    /// Already serialized (hello, ready, acks…).
    Raw(Bytes),
    /// A dispatch, serialized when popped (by the writer, off the router's thread).
    Dispatch(u64, Arc<RoutedEvent>),
    /// A typing event that expired before it could be replayed.
    Noop(u64),
}

impl Out {
    fn into_bytes(self) -> Bytes {
        match self {
            Out::Raw(b) => b,
            Out::Dispatch(seq, ev) => {
                let tail = ev.tail.as_deref().unwrap_or("\"t\":\"noop\",\"d\":{}}");
                let mut f = String::with_capacity(40 + tail.len());
                f.push_str(r#"{"op":"dispatch","s":"#);
                f.push_str(&seq.to_string());
                f.push(',');
                f.push_str(tail);
                Bytes::from(f)
            }
            Out::Noop(seq) => Bytes::from(format!(
                r#"{{"op":"dispatch","s":{seq},"t":"noop","d":{{}}}}"#
            )),
        }
    }
}

/// Token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f32,
    last: Instant,
}

/// The scope of a session, as sets for fast filtering.
#[derive(Debug, Default)]
struct Scope {
    servers: HashSet<Id>,
    large: HashSet<Id>,
    channels: HashMap<Id, Id>,
    dms: HashSet<Id>,
    friends: Vec<Id>,
    /// Friends and co-members of small servers: whose presence this session is told.
    known: HashSet<Id>,
}

impl Scope {
    fn from_visibility(v: &Visibility) -> Self {
        Self {
            servers: v.servers.iter().copied().collect(),
            large: v.large_servers.iter().copied().collect(),
            channels: v.channels.iter().map(|c| (c.id, c.server_id)).collect(),
            dms: v.dm_channels.iter().copied().collect(),
            friends: v.friends.clone(),
            known: v.friends.iter().chain(&v.co_members).copied().collect(),
        }
    }
}

/// The topics a user with this visibility needs (without member-list subscriptions).
pub fn topics_for(user: Id, v: &Visibility) -> HashSet<Topic> {
    let mut t: HashSet<Topic> = HashSet::with_capacity(1 + v.servers.len() + v.dm_channels.len());
    t.insert(Topic::User(user));
    t.extend(v.servers.iter().map(|s| Topic::Server(*s)));
    t.extend(v.dm_channels.iter().map(|c| Topic::Channel(*c)));
    t
}

/// What the driver learned when a token was accepted.
#[derive(Debug)]
pub struct Identified {
    /// The user (`sub`).
    pub user_id: Id,
    /// The login session (`sid`).
    pub token_session: Id,
    /// The device the client declared.
    pub device_id: Option<String>,
    /// The gateway session id (unguessable, for `resume`).
    pub session_id: String,
    /// What the user may see.
    pub visibility: Visibility,
    /// The topics already subscribed for this session (see [`topics_for`]).
    pub topics: HashSet<Topic>,
    /// The `ready` payload (the gateway's additions already merged).
    pub ready: Value,
}

/// Outcome of [`Session::resume`].
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The missed frames are queued, followed by `resumed`.
    Resumed,
    /// Some missed frames are gone: the client must identify again.
    Invalid,
    /// The client claims a `seq` the session never sent.
    BadSeq,
}

/// One gateway session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    cfg: Arc<SessionConfig>,
    phase: Phase,
    user_id: Option<Id>,
    token_session: Option<Id>,
    device_id: Option<String>,
    session_id: String,
    scope: Scope,
    member_subs: HashSet<Id>,
    topics: HashSet<Topic>,
    scope_pending: bool,
    /// Events received before `ready` or while the scope is being recomputed.
    held: VecDeque<Arc<RoutedEvent>>,
    /// Ids of channel-structure events that already triggered a scope refresh (bounded).
    refreshed_for: HashSet<u64>,
    seq: u64,
    replay: VecDeque<Replayed>,
    outbound: VecDeque<Out>,
    /// Frames queued by a replay, allowed on top of the outbound limit.
    replay_credit: usize,
    actions: VecDeque<Action>,
    attached: bool,
    detached_at: Option<Instant>,
    resumable: bool,
    /// Which connection holds the session (see [`Session::epoch`]).
    epoch: u64,
    /// The latest time given as input.
    last_now: Instant,
    last_heartbeat: Instant,
    bucket: Bucket,
    typing: Option<(Id, Instant)>,
    /// (server, channel) of the voice connection; the server is `None` for a DM call.
    voice: Option<(Option<Id>, Id)>,
}

fn frame(f: &ServerFrame) -> Bytes {
    Bytes::from(serde_json::to_vec(f).unwrap_or_default())
}

impl Session {
    /// A new connection's session at `now`: `hello` is queued.
    pub fn new(cfg: Arc<SessionConfig>, now: Instant) -> Self {
        let mut s = Self {
            phase: Phase::AwaitingIdentify {
                deadline: now + cfg.identify_timeout,
            },
            user_id: None,
            token_session: None,
            device_id: None,
            session_id: String::new(),
            scope: Scope::default(),
            member_subs: HashSet::new(),
            topics: HashSet::new(),
            scope_pending: false,
            held: VecDeque::new(),
            refreshed_for: HashSet::new(),
            seq: 0,
            replay: VecDeque::new(),
            outbound: VecDeque::new(),
            replay_credit: 0,
            actions: VecDeque::new(),
            attached: true,
            detached_at: None,
            resumable: false,
            epoch: 0,
            last_now: now,
            last_heartbeat: now,
            bucket: Bucket {
                tokens: cfg.rate_burst as f32,
                last: now,
            },
            typing: None,
            voice: None,
            cfg,
        };
        let hello = ServerFrame::Hello {
            heartbeat_interval_ms: s.cfg.heartbeat_interval.as_millis() as u64,
        };
        s.outbound.push_back(Out::Raw(frame(&hello)));
        s
    }

    /// The authenticated user, once identified.
    pub fn user_id(&self) -> Option<Id> {
        self.user_id
    }

    /// The login session (token `sid`), once identified.
    pub fn token_session(&self) -> Option<Id> {
        self.token_session
    }

    /// The gateway session id (empty before `ready`).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The last sequence number dispatched.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The topics this session is subscribed to.
    pub fn topics(&self) -> &HashSet<Topic> {
        &self.topics
    }

    /// The user's friends (presence audience).
    pub fn friends(&self) -> &[Id] {
        &self.scope.friends
    }

    /// Friends and co-members of small servers (whose presence the user is shown).
    pub fn known_users(&self) -> &HashSet<Id> {
        &self.scope.known
    }

    /// The servers of the user: (server, is large).
    pub fn servers(&self) -> impl Iterator<Item = (Id, bool)> + '_ {
        self.scope
            .servers
            .iter()
            .map(|s| (*s, self.scope.large.contains(s)))
    }

    /// Whether the session has been closed (for this connection).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed || !self.attached
    }

    /// Whether a later `resume` may take this session over (it reached `ready` and was not
    /// closed for a non-resumable reason).
    pub fn is_resumable(&self) -> bool {
        self.resumable
    }

    /// When the session was detached from its connection, if it is.
    pub fn detached_at(&self) -> Option<Instant> {
        self.detached_at
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether actions are waiting.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next frame to write.
    pub fn pop_frame(&mut self) -> Option<Bytes> {
        let f = self.outbound.pop_front()?;
        self.replay_credit = self.replay_credit.saturating_sub(1);
        Some(f.into_bytes())
    }

    /// Whether frames are waiting to be written.
    pub fn has_frames(&self) -> bool {
        !self.outbound.is_empty()
    }

    /// The earliest time [`Session::on_tick`] must be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingIdentify { deadline } => Some(deadline),
            Phase::Ready if self.attached => Some(self.last_heartbeat + self.heartbeat_timeout()),
            _ => None,
        }
    }

    fn heartbeat_timeout(&self) -> Duration {
        self.cfg.heartbeat_interval + self.cfg.heartbeat_interval / 2
    }

    fn send(&mut self, f: &ServerFrame) {
        self.outbound.push_back(Out::Raw(frame(f)));
    }

    /// Closes this connection. A `ready` session stays resumable after a resumable code.
    fn close(&mut self, code: u16, reason: &'static str) {
        if self.is_closed() {
            return;
        }
        self.resumable = self.phase == Phase::Ready && close::is_resumable(code);
        self.outbound.clear();
        self.replay_credit = 0;
        if self.phase == Phase::Ready {
            self.attached = false;
            self.detached_at.get_or_insert(self.last_now);
        } else {
            self.phase = Phase::Closed;
        }
        self.actions.push_back(Action::Close { code, reason });
    }

    /// The connection ended (socket error, client close, shutdown) at `now`, with `resumable`
    /// telling whether a later `resume` may take the session over.
    ///
    /// `epoch` is [`Session::epoch`] as the ending connection saw it: when the session was
    /// resumed by another connection since, nothing happens and `false` is returned.
    pub fn detach(&mut self, now: Instant, resumable: bool, epoch: u64) -> bool {
        if epoch != self.epoch {
            return false;
        }
        if self.phase == Phase::Ready {
            if self.attached {
                self.resumable = resumable;
            } else {
                self.resumable &= resumable;
            }
            self.attached = false;
            self.detached_at.get_or_insert(now);
            self.outbound.clear();
            self.replay_credit = 0;
        } else {
            self.phase = Phase::Closed;
            self.resumable = false;
        }
        true
    }

    /// Incremented each time a connection takes the session (identify, resume).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Server shutdown: send `reconnect` and close with 1001 (resumable elsewhere if the
    /// client's next node has the session, else it will get `invalid_session`).
    pub fn shutdown(&mut self) {
        if self.is_closed() {
            return;
        }
        self.send(&ServerFrame::Reconnect);
        let out = std::mem::take(&mut self.outbound);
        self.close(close::GOING_AWAY, "server shutting down");
        self.outbound = out;
    }

    /// The time passed: identify and heartbeat timeouts.
    pub fn on_tick(&mut self, now: Instant) {
        self.last_now = now;
        match self.phase {
            Phase::AwaitingIdentify { deadline } if now >= deadline => {
                self.close(close::NOT_AUTHENTICATED, "identify timeout")
            }
            Phase::Ready
                if self.attached && now >= self.last_heartbeat + self.heartbeat_timeout() =>
            {
                self.close(close::SESSION_TIMED_OUT, "heartbeat timeout")
            }
            _ => {}
        }
        self.trim_replay(now);
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let b = &mut self.bucket;
        let dt = now.saturating_duration_since(b.last).as_secs_f32();
        b.last = now;
        b.tokens = (b.tokens + dt * self.cfg.rate_per_sec as f32).min(self.cfg.rate_burst as f32);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A text frame from the client. `unix_ms` is the wall clock (typing timestamps).
    pub fn on_client_text(&mut self, now: Instant, unix_ms: u64, text: &str) {
        self.last_now = now;
        if self.is_closed() {
            return;
        }
        if !self.take_token(now) {
            return self.close(close::RATE_LIMITED, "rate limited");
        }
        let f: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(_) => return self.decode_error(text),
        };
        match (self.phase, f) {
            (_, ClientFrame::Heartbeat { .. }) => {
                self.last_heartbeat = now;
                self.send(&ServerFrame::HeartbeatAck);
                if self.phase == Phase::Ready {
                    self.actions.push_back(Action::Heartbeat);
                }
            }
            (Phase::AwaitingIdentify { .. }, ClientFrame::Identify { token, device_id }) => {
                if device_id
                    .as_ref()
                    .is_some_and(|d| d.is_empty() || d.len() > 128)
                {
                    return self.close(close::DECODE_ERROR, "bad device_id");
                }
                self.phase = Phase::Authenticating;
                self.actions
                    .push_back(Action::Identify { token, device_id });
            }
            (
                Phase::AwaitingIdentify { .. },
                ClientFrame::Resume {
                    token,
                    session_id,
                    seq,
                },
            ) => {
                self.phase = Phase::Authenticating;
                self.actions.push_back(Action::Resume {
                    token,
                    session_id,
                    seq,
                });
            }
            (_, ClientFrame::Identify { .. } | ClientFrame::Resume { .. }) => {
                self.close(close::ALREADY_AUTHENTICATED, "already authenticated")
            }
            (Phase::Ready, op) => self.on_op(now, unix_ms, op),
            _ => self.close(close::NOT_AUTHENTICATED, "not authenticated"),
        }
    }

    /// The transport found a protocol violation (e.g. a frame over the size limit: 1009).
    pub fn protocol_close(&mut self, code: u16, reason: &'static str) {
        self.close(code, reason);
    }

    /// A binary frame (not part of the protocol).
    /// A WebSocket ping or pong from the client: it takes a token of the op rate limit like
    /// any frame (a flood of pings, each answered with a pong, is closed with 4008).
    pub fn on_client_control(&mut self, now: Instant) {
        self.last_now = now;
        if self.is_closed() {
            return;
        }
        if !self.take_token(now) {
            self.close(close::RATE_LIMITED, "rate limited");
        }
    }

    /// A binary frame from the client (refused).
    pub fn on_client_binary(&mut self) {
        self.close(close::DECODE_ERROR, "binary frames are not accepted");
    }

    fn decode_error(&mut self, text: &str) {
        #[derive(serde::Deserialize)]
        struct OpOnly {
            op: String,
        }
        const KNOWN: &[&str] = &[
            "identify",
            "resume",
            "heartbeat",
            "presence_update",
            "typing_start",
            "subscribe_members",
            "voice_state_update",
            "voice_signal",
            "to_device_ack",
        ];
        match serde_json::from_str::<OpOnly>(text) {
            Ok(o) if !KNOWN.contains(&o.op.as_str()) => self.close(close::UNKNOWN_OP, "unknown op"),
            _ => self.close(close::DECODE_ERROR, "decode error"),
        }
    }

    fn on_op(&mut self, now: Instant, unix_ms: u64, op: ClientFrame) {
        let Some(me) = self.user_id else { return };
        match op {
            ClientFrame::PresenceUpdate {
                status,
                custom_status,
            } => {
                if status == PresenceStatus::Offline
                    || custom_status
                        .as_ref()
                        .is_some_and(|c| c.chars().count() > MAX_CUSTOM_STATUS_CHARS)
                {
                    return self.close(close::DECODE_ERROR, "bad presence");
                }
                self.actions.push_back(Action::SetPresence {
                    status,
                    custom_status,
                });
            }
            ClientFrame::TypingStart { channel_id } => {
                // Unknown or invisible channels are ignored silently (no existence oracle).
                let server_id = match self.scope.channels.get(&channel_id) {
                    Some(s) => Some(*s),
                    None if self.scope.dms.contains(&channel_id) => None,
                    None => return,
                };
                if let Some((c, at)) = self.typing
                    && c == channel_id
                    && now < at + self.cfg.typing_interval
                {
                    return;
                }
                self.typing = Some((channel_id, now));
                let ev = Event::TypingStart {
                    channel_id,
                    server_id,
                    user_id: me,
                    timestamp_ms: unix_ms,
                    expires_at_ms: unix_ms + TYPING_TTL.as_millis() as u64,
                };
                self.actions.push_back(Action::Publish(BusEvent::to(
                    Audience::Channel {
                        server_id,
                        channel_id,
                    },
                    ev,
                )));
            }
            ClientFrame::SubscribeMembers { server_id } => {
                if !self.scope.servers.contains(&server_id)
                    || self.member_subs.len() >= self.cfg.max_member_subscriptions
                    || !self.member_subs.insert(server_id)
                {
                    return;
                }
                if self.scope.large.contains(&server_id) {
                    let t = Topic::MemberList(server_id);
                    if self.topics.insert(t.clone()) {
                        self.actions.push_back(Action::Subscribe(vec![t]));
                    }
                }
            }
            ClientFrame::VoiceStateUpdate {
                server_id,
                channel_id,
                self_mute,
                self_deaf,
                self_video,
                self_stream,
            } => {
                match server_id {
                    Some(server_id) => {
                        if !self.scope.servers.contains(&server_id) {
                            return;
                        }
                        if let Some(c) = channel_id
                            && self.scope.channels.get(&c) != Some(&server_id)
                        {
                            return;
                        }
                    }
                    // A DM call: the channel must be one of my DMs.
                    None => {
                        if let Some(c) = channel_id
                            && !self.scope.dms.contains(&c)
                        {
                            return;
                        }
                    }
                }
                let previous = self.voice.map(|(_, c)| c);
                self.voice = channel_id.map(|c| (server_id, c));
                let ev = Event::VoiceStateUpdate {
                    server_id,
                    channel_id,
                    user_id: me,
                    session_id: self.session_id.clone(),
                    self_mute,
                    self_deaf,
                    self_video,
                    self_stream,
                };
                // Members (or the DM's recipients) see the state; the SFU hears of leaving or
                // moving (voice audience).
                let mut audience = match server_id {
                    Some(s) => vec![Audience::Server(s)],
                    None => previous
                        .or(channel_id)
                        .map(|c| Audience::Channel {
                            server_id: None,
                            channel_id: c,
                        })
                        .into_iter()
                        .collect(),
                };
                audience.extend(previous.or(channel_id).map(Audience::Voice));
                self.actions
                    .push_back(Action::Publish(BusEvent::new(audience, ev)));
            }
            ClientFrame::VoiceSignal {
                channel_id,
                kind,
                data,
            } => {
                if self.voice.map(|(_, c)| c) != Some(channel_id) {
                    return;
                }
                if serde_json::to_vec(&data)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX)
                    > self.cfg.max_signal_bytes
                {
                    return self.close(close::DECODE_ERROR, "voice signal too large");
                }
                let ev = Event::VoiceSignal {
                    channel_id,
                    user_id: me,
                    session_id: self.session_id.clone(),
                    kind,
                    data,
                };
                self.actions.push_back(Action::Publish(BusEvent::to(
                    Audience::Voice(channel_id),
                    ev,
                )));
            }
            ClientFrame::ToDeviceAck { up_to } => {
                if let Some(device_id) = self.device_id.clone() {
                    self.actions
                        .push_back(Action::AckToDevice { device_id, up_to });
                }
            }
            ClientFrame::Heartbeat { .. }
            | ClientFrame::Identify { .. }
            | ClientFrame::Resume { .. } => {}
        }
    }

    /// The driver refused the token (or the login session is revoked).
    pub fn auth_failed(&mut self, code: u16, reason: &'static str) {
        self.close(code, reason);
    }

    /// `resume` could not be honoured: send `invalid_session` and wait for `identify` again.
    pub fn resume_rejected(&mut self, now: Instant) {
        if self.phase == Phase::Authenticating {
            self.phase = Phase::AwaitingIdentify {
                deadline: now + self.cfg.identify_timeout,
            };
            self.send(&ServerFrame::InvalidSession { resumable: false });
        }
    }

    /// The token was accepted and the topics subscribed: queue `ready`, then whatever
    /// arrived meanwhile.
    pub fn identified(&mut self, now: Instant, unix_ms: u64, id: Identified) {
        if self.phase != Phase::Authenticating {
            return;
        }
        self.phase = Phase::Ready;
        self.epoch += 1;
        self.user_id = Some(id.user_id);
        self.token_session = Some(id.token_session);
        self.device_id = id.device_id;
        self.session_id = id.session_id;
        self.scope = Scope::from_visibility(&id.visibility);
        self.topics = id.topics;
        self.last_heartbeat = now;
        self.send(&ServerFrame::Ready {
            session_id: self.session_id.clone(),
            d: id.ready,
        });
        self.release_held(now, unix_ms);
    }

    /// A new connection takes over this (detached) session after `resume` with `seq`.
    pub fn resume(&mut self, now: Instant, unix_ms: u64, seq: u64) -> ResumeOutcome {
        self.trim_replay(now);
        if self.phase != Phase::Ready || !self.resumable || self.attached {
            return ResumeOutcome::Invalid;
        }
        if seq > self.seq {
            return ResumeOutcome::BadSeq;
        }
        let oldest = self.replay.front().map(|r| r.seq).unwrap_or(self.seq + 1);
        if seq + 1 < oldest {
            return ResumeOutcome::Invalid;
        }
        self.attached = true;
        self.epoch += 1;
        self.detached_at = None;
        self.resumable = false;
        self.last_heartbeat = now;
        self.bucket = Bucket {
            tokens: self.cfg.rate_burst as f32,
            last: now,
        };
        self.outbound.clear();
        for r in self.replay.iter().filter(|r| r.seq > seq) {
            if r.expired(unix_ms) {
                // An expired typing event: send a no-op placeholder so `s` stays gapless.
                self.outbound.push_back(Out::Noop(r.seq));
            } else {
                self.outbound.push_back(Out::Dispatch(r.seq, r.ev.clone()));
            }
        }
        self.replay_credit = self.outbound.len();
        self.send(&ServerFrame::Resumed {
            session_id: self.session_id.clone(),
        });
        self.release_held(now, unix_ms);
        ResumeOutcome::Resumed
    }

    /// New visibility from the directory (after `scope_changed`): returns nothing, queues
    /// subscribe/unsubscribe actions and releases the events held meanwhile.
    pub fn set_scope(&mut self, now: Instant, unix_ms: u64, v: &Visibility) {
        let Some(me) = self.user_id else { return };
        self.scope = Scope::from_visibility(v);
        self.member_subs.retain(|s| self.scope.servers.contains(s));
        let mut want = topics_for(me, v);
        want.extend(
            self.member_subs
                .iter()
                .filter(|s| self.scope.large.contains(s))
                .map(|s| Topic::MemberList(*s)),
        );
        let add: Vec<Topic> = want.difference(&self.topics).cloned().collect();
        let remove: Vec<Topic> = self.topics.difference(&want).cloned().collect();
        self.topics = want;
        if !add.is_empty() {
            self.actions.push_back(Action::Subscribe(add));
        }
        if !remove.is_empty() {
            self.actions.push_back(Action::Unsubscribe(remove));
        }
        if self.voice.is_some_and(|(_, c)| {
            !self.scope.channels.contains_key(&c) && !self.scope.dms.contains(&c)
        }) {
            self.voice = None;
        }
        self.scope_pending = false;
        self.release_held(now, unix_ms);
    }

    /// The directory failed to answer a scope refresh: close (not resumable) rather than
    /// risk delivering with a stale scope.
    pub fn scope_failed(&mut self) {
        self.invalidate();
    }

    /// Events of this session were lost: close it for good (the client identifies again and
    /// refetches) rather than let a `resume` pretend nothing is missing.
    pub fn invalidate(&mut self) {
        self.held.clear();
        self.scope_pending = false;
        if self.attached {
            self.close(close::INTERNAL_ERROR, "events lost, identify again");
        }
        self.resumable = false;
    }

    fn release_held(&mut self, now: Instant, unix_ms: u64) {
        while !self.scope_pending {
            let Some(ev) = self.held.pop_front() else {
                break;
            };
            self.deliver(now, unix_ms, &ev);
        }
    }

    fn hold(&mut self, ev: &Arc<RoutedEvent>) {
        if self.held.len() >= self.cfg.replay_max_events {
            // Too much arrived before we could filter it: those events are dropped.
            self.invalidate();
            return;
        }
        self.held.push_back(ev.clone());
    }

    fn matches(&self, a: &Audience) -> bool {
        let Some(me) = self.user_id else { return false };
        match a {
            Audience::User(u) => *u == me,
            Audience::Users(us) => us.contains(&me),
            Audience::Session {
                user_id,
                session_id,
            } => *user_id == me && *session_id == self.session_id,
            Audience::Server(s) => self.scope.servers.contains(s),
            Audience::Channel { channel_id, .. } => {
                self.scope.channels.contains_key(channel_id) || self.scope.dms.contains(channel_id)
            }
            Audience::MemberList(s) => {
                self.member_subs.contains(s) && self.scope.servers.contains(s)
            }
            Audience::Voice(_) => false,
        }
    }

    /// An event from the bus (already known to concern one of this session's topics).
    pub fn on_event(&mut self, now: Instant, unix_ms: u64, ev: &Arc<RoutedEvent>) {
        self.last_now = now;
        match self.phase {
            Phase::Authenticating => self.hold(ev),
            Phase::Ready if self.scope_pending => self.hold(ev),
            Phase::Ready => self.deliver(now, unix_ms, ev),
            _ => {}
        }
    }

    fn deliver(&mut self, now: Instant, unix_ms: u64, r: &Arc<RoutedEvent>) {
        if self.phase != Phase::Ready {
            return;
        }
        if self.needs_scope_refresh(r) {
            // A channel of one of my servers was created or changed (overwrites may have
            // shown or hidden it): recompute what I see, then filter this event again.
            self.scope_pending = true;
            self.actions.push_back(Action::RefreshScope);
            self.hold(r);
            return;
        }
        if !r.ev.audience.iter().any(|a| self.matches(a)) {
            return;
        }
        match &r.ev.event {
            Event::SessionRevoked { session_id, .. } => {
                if Some(*session_id) == self.token_session {
                    self.resumable = false;
                    if self.attached {
                        self.close(close::SESSION_REVOKED, "session revoked");
                    }
                    self.resumable = false;
                    self.phase = Phase::Closed;
                }
                return;
            }
            Event::ScopeChanged { user_id } => {
                if Some(*user_id) == self.user_id && !self.scope_pending {
                    self.scope_pending = true;
                    self.actions.push_back(Action::RefreshScope);
                }
                return;
            }
            Event::ToDevice { device_id, .. }
                if self.device_id.as_deref() != Some(device_id.as_str()) =>
            {
                return;
            }
            Event::TypingStart {
                expires_at_ms,
                user_id,
                ..
            } if unix_ms >= *expires_at_ms || Some(*user_id) == self.user_id => return,
            _ => {}
        }
        if r.tail.is_none() {
            return;
        }
        self.seq += 1;
        self.replay.push_back(Replayed {
            seq: self.seq,
            at: now,
            ev: r.clone(),
        });
        self.trim_replay(now);
        if self.attached {
            if self.outbound.len() >= self.cfg.outbound_max_frames + self.replay_credit {
                self.close(close::SLOW_CONSUMER, "slow consumer");
            } else {
                self.outbound.push_back(Out::Dispatch(self.seq, r.clone()));
            }
        }
    }

    /// Whether `r` creates or changes a channel of one of my servers and has not yet made
    /// this session refresh its scope (each such event triggers at most one refresh).
    fn needs_scope_refresh(&mut self, r: &Arc<RoutedEvent>) -> bool {
        if !matches!(
            r.ev.event,
            Event::ChannelCreate { .. } | Event::ChannelUpdate { .. }
        ) {
            return false;
        }
        let mine = r.ev.audience.iter().any(|a| match a {
            Audience::Channel {
                server_id: Some(s), ..
            } => self.scope.servers.contains(s),
            _ => false,
        });
        if !mine || self.refreshed_for.contains(&r.ev.id) {
            return false;
        }
        if self.refreshed_for.len() >= 1024 {
            self.refreshed_for.clear();
        }
        self.refreshed_for.insert(r.ev.id);
        true
    }

    fn trim_replay(&mut self, now: Instant) {
        while self.replay.len() > self.cfg.replay_max_events
            || self
                .replay
                .front()
                .is_some_and(|r| now.saturating_duration_since(r.at) > self.cfg.replay_max_age)
        {
            self.replay.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::VisibleChannel;

    fn cfg() -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            replay_max_events: 5,
            outbound_max_frames: 3,
            ..Default::default()
        })
    }

    fn ready(now: Instant) -> Session {
        let mut s = Session::new(cfg(), now);
        s.on_client_text(now, 0, r#"{"op":"identify","token":"t"}"#);
        assert!(matches!(s.poll_action(), Some(Action::Identify { .. })));
        let visibility = Visibility {
            servers: vec![Id(10)],
            channels: vec![VisibleChannel {
                id: Id(11),
                server_id: Id(10),
            }],
            ..Default::default()
        };
        let topics = topics_for(Id(1), &visibility);
        s.identified(
            now,
            0,
            Identified {
                user_id: Id(1),
                token_session: Id(2),
                device_id: None,
                session_id: "abc".into(),
                visibility,
                topics,
                ready: serde_json::json!({}),
            },
        );
        while s.pop_frame().is_some() {}
        s
    }

    fn msg(channel: i64) -> Arc<RoutedEvent> {
        Arc::new(RoutedEvent::new(Arc::new(BusEvent::to(
            Audience::Channel {
                server_id: Some(Id(10)),
                channel_id: Id(channel),
            },
            Event::MessageCreate {
                message: serde_json::json!({"channel_id": channel.to_string()}),
            },
        ))))
    }

    #[test]
    fn hello_then_ops_before_identify_are_refused() {
        let now = Instant::now();
        let mut s = Session::new(cfg(), now);
        let hello = s.pop_frame().unwrap();
        assert!(
            std::str::from_utf8(&hello)
                .unwrap()
                .contains("heartbeat_interval_ms")
        );
        s.on_client_text(now, 0, r#"{"op":"typing_start","channel_id":"1"}"#);
        assert_eq!(
            s.poll_action(),
            Some(Action::Close {
                code: 4003,
                reason: "not authenticated"
            })
        );
    }

    #[test]
    fn unknown_op_decode_error_and_identify_timeout() {
        let now = Instant::now();
        let mut s = Session::new(cfg(), now);
        s.on_client_text(now, 0, r#"{"op":"dance"}"#);
        assert!(matches!(
            s.poll_action(),
            Some(Action::Close { code: 4001, .. })
        ));
        let mut s = Session::new(cfg(), now);
        s.on_client_text(now, 0, "{not json");
        assert!(matches!(
            s.poll_action(),
            Some(Action::Close { code: 4002, .. })
        ));
        let mut s = Session::new(cfg(), now);
        s.on_tick(now + Duration::from_secs(11));
        assert!(matches!(
            s.poll_action(),
            Some(Action::Close { code: 4003, .. })
        ));
    }

    #[test]
    fn dispatch_filters_and_numbers_events() {
        let now = Instant::now();
        let mut s = ready(now);
        s.on_event(now, 0, &msg(11));
        s.on_event(now, 0, &msg(12)); // not visible
        s.on_event(now, 0, &msg(11));
        let a = String::from_utf8(s.pop_frame().unwrap().to_vec()).unwrap();
        let b = String::from_utf8(s.pop_frame().unwrap().to_vec()).unwrap();
        assert!(s.pop_frame().is_none());
        let a: Value = serde_json::from_str(&a).unwrap();
        let b: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            (a["op"].as_str(), a["s"].as_u64(), a["t"].as_str()),
            (Some("dispatch"), Some(1), Some("message_create"))
        );
        assert_eq!(b["s"], 2);
    }

    #[test]
    fn slow_consumer_then_resume_replays_missed_or_invalidates() {
        let now = Instant::now();
        let mut s = ready(now);
        for _ in 0..4 {
            s.on_event(now, 0, &msg(11));
        }
        assert!(matches!(
            s.poll_action(),
            Some(Action::Close { code: 4011, .. })
        ));
        assert!(s.is_resumable());
        s.on_event(now, 0, &msg(11)); // buffered while detached
        assert_eq!(s.seq(), 5);
        assert_eq!(s.resume(now, 0, 9), ResumeOutcome::BadSeq);
        assert_eq!(s.resume(now, 0, 2), ResumeOutcome::Resumed);
        let frames: Vec<Value> = std::iter::from_fn(|| s.pop_frame())
            .map(|b| serde_json::from_slice(&b).unwrap())
            .collect();
        let seqs: Vec<u64> = frames.iter().filter_map(|f| f["s"].as_u64()).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(frames.last().unwrap()["op"], "resumed");
        // Overflow the replay buffer while detached: resume from 0 is impossible.
        assert!(
            !s.detach(now, true, 1),
            "a stale connection must not detach the resumed session"
        );
        assert!(s.detach(now, true, s.epoch()));
        for _ in 0..10 {
            s.on_event(now, 0, &msg(11));
        }
        assert_eq!(s.resume(now, 0, 5), ResumeOutcome::Invalid);
    }

    #[test]
    fn rate_limit_closes_with_4008() {
        let now = Instant::now();
        let mut s = ready(now);
        for _ in 0..100 {
            s.on_client_text(now, 0, r#"{"op":"heartbeat","seq":0}"#);
        }
        assert!(
            std::iter::from_fn(|| s.poll_action())
                .any(|a| matches!(a, Action::Close { code: 4008, .. }))
        );
    }

    #[test]
    fn scope_change_holds_events_until_new_scope() {
        let now = Instant::now();
        let mut s = ready(now);
        let changed = Arc::new(RoutedEvent::new(Arc::new(BusEvent::to(
            Audience::User(Id(1)),
            Event::ScopeChanged { user_id: Id(1) },
        ))));
        s.on_event(now, 0, &changed);
        assert_eq!(s.poll_action(), Some(Action::RefreshScope));
        s.on_event(now, 0, &msg(11)); // held: the user just lost the channel
        assert!(!s.has_frames());
        s.set_scope(now, 0, &Visibility::default());
        assert!(
            !s.has_frames(),
            "event of a channel no longer visible was delivered"
        );
        assert_eq!(
            s.poll_action(),
            Some(Action::Unsubscribe(vec![Topic::Server(Id(10))]))
        );
    }

    #[test]
    fn channel_create_refreshes_the_scope_then_is_filtered_by_it() {
        let now = Instant::now();
        let mut s = ready(now);
        let created = Arc::new(RoutedEvent::new(Arc::new(BusEvent::to(
            Audience::Channel {
                server_id: Some(Id(10)),
                channel_id: Id(12),
            },
            Event::ChannelCreate {
                channel: serde_json::json!({"id": "12"}),
            },
        ))));
        s.on_event(now, 0, &created);
        assert_eq!(s.poll_action(), Some(Action::RefreshScope));
        assert!(!s.has_frames());
        let v = Visibility {
            servers: vec![Id(10)],
            channels: vec![
                VisibleChannel {
                    id: Id(11),
                    server_id: Id(10),
                },
                VisibleChannel {
                    id: Id(12),
                    server_id: Id(10),
                },
            ],
            ..Default::default()
        };
        s.set_scope(now, 0, &v);
        let f: Value = serde_json::from_slice(&s.pop_frame().unwrap()).unwrap();
        assert_eq!(f["t"], "channel_create");
        // The same event does not trigger a second refresh.
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn typing_is_rate_limited_and_expires() {
        let now = Instant::now();
        let mut s = ready(now);
        s.on_client_text(now, 1_000, r#"{"op":"typing_start","channel_id":"11"}"#);
        s.on_client_text(now, 1_000, r#"{"op":"typing_start","channel_id":"11"}"#);
        s.on_client_text(now, 1_000, r#"{"op":"typing_start","channel_id":"999"}"#);
        let pubs: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
        assert_eq!(pubs.len(), 1);
        let Action::Publish(ev) = &pubs[0] else {
            panic!()
        };
        let mut other = ev.clone();
        if let Event::TypingStart { user_id, .. } = &mut other.event {
            *user_id = Id(99);
        }
        let r = Arc::new(RoutedEvent::new(Arc::new(other)));
        s.on_event(now, 12_000, &r); // 11 s later: expired
        assert!(!s.has_frames());
        s.on_event(now, 2_000, &r);
        assert!(s.has_frames());
    }
}
