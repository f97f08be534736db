//! The IO driver: UDP sockets on a port range, worker threads, and [`SfuHandle`].
//!
//! - Each worker thread binds **one UDP port** of the configured range
//!   (`COPAINS_SFU_PORTS`, e.g. `50000-50100`) and owns a set of rooms; a room lives on worker
//!   `hash(room) % workers`, and its participants get the ICE host candidate
//!   `announced_ip:worker_port`, so every datagram of a room arrives at the thread that owns it:
//!   no cross-thread hand-off and no lock on the media path.
//! - A datagram is routed to its participant in O(1): a map from remote address, learned from
//!   the first STUN binding request whose USERNAME carries the participant's ufrag (a second
//!   map) and that str0m accepts. Datagrams from unknown addresses that are not such STUN are
//!   dropped without touching any room. Each participant keeps at most
//!   [`MAX_ADDRS_PER_PARTICIPANT`] learned addresses.
//! - Receives use `recvmmsg` and sends `sendmmsg` (Linux), up to [`BATCH`] datagrams per
//!   system call. UDP GSO is not used: it only pays for same-size bursts to one destination,
//!   which an SFU's fan-out rarely produces.
//! - [`SfuHandle`] is the async-friendly boundary: commands go to the owning worker over a
//!   bounded channel (the worker is woken by a one-byte datagram from a private socket) and
//!   are answered over a tokio oneshot; events come out over a bounded tokio mpsc channel.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::room::{
    Negotiated, Output, ParticipantId, Room, RoomConfig, RoomError, RoomEvent, TrackId,
};
use crate::router::ViewSize;
use crate::stun;

/// Datagrams per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 32;
/// Learned remote addresses kept per participant (ICE may try several).
pub const MAX_ADDRS_PER_PARTICIPANT: usize = 4;
/// Largest datagram read; longer ones are truncated by the kernel and then rejected.
const MAX_DATAGRAM: usize = 2048;

/// A room, as the application numbers them (e.g. a voice channel id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId(pub u64);

/// An inclusive UDP port range, parsed from `"50000-50100"` or `"50000"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// Number of ports.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Never true for a parsed range; present for completeness.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl FromStr for PortRange {
    type Err = SfuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SfuError::Config(format!("bad port range {s:?}: expected e.g. 50000-50100"));
        let (a, b) = match s.trim().split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let start: u16 = a.parse().map_err(|_| bad())?;
        let end: u16 = b.parse().map_err(|_| bad())?;
        if start == 0 || end < start {
            return Err(bad());
        }
        Ok(PortRange { start, end })
    }
}

/// Configuration of the SFU node.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Address the sockets bind to (e.g. `0.0.0.0`).
    pub bind_ip: IpAddr,
    /// Address announced in ICE host candidates (the public IP behind a 1:1 NAT).
    /// Defaults to `bind_ip`, which must then not be unspecified.
    pub announced_ip: Option<IpAddr>,
    /// UDP ports; one per worker is used, the first free ones of the range.
    pub ports: PortRange,
    /// Worker threads; 0 = one per core. Capped by the number of ports.
    pub workers: usize,
    /// Template for every room (its candidates are filled in per worker).
    pub room: RoomConfig,
    /// Capacity of the event channel; events are dropped (and counted) when it is full.
    pub event_capacity: usize,
    /// Capacity of each worker's command queue.
    pub command_capacity: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            announced_ip: None,
            ports: PortRange {
                start: 50000,
                end: 50100,
            },
            workers: 0,
            room: RoomConfig::default(),
            event_capacity: 4096,
            command_capacity: 1024,
        }
    }
}

/// Errors of the driver and handle.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The room refused the command.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// The worker's command queue is full.
    #[error("sfu busy")]
    Busy,
    /// The SFU has shut down.
    #[error("sfu stopped")]
    Stopped,
}

/// An event from a room, tagged with the room.
#[derive(Debug, Clone, PartialEq)]
pub struct SfuEvent {
    /// The room.
    pub room: RoomId,
    /// What happened.
    pub event: RoomEvent,
}

type Reply<T> = oneshot::Sender<Result<T, RoomError>>;

enum Command {
    Join(RoomId, ParticipantId, String, Reply<Negotiated>),
    Renegotiate(RoomId, ParticipantId, String, Reply<Negotiated>),
    Answer(RoomId, ParticipantId, String, Reply<Option<String>>),
    Leave(RoomId, ParticipantId, Reply<()>),
    Kick(RoomId, ParticipantId, Reply<()>),
    Mute(RoomId, ParticipantId, bool, Reply<()>),
    View(RoomId, ParticipantId, TrackId, ViewSize, Reply<()>),
    Stats(oneshot::Sender<WorkerStats>),
    Shutdown,
}

/// Counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams from unknown addresses that could not be routed.
    pub unrouted: u64,
    /// Datagrams a room rejected (garbage, bad STUN, failed SRTP).
    pub rejected: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// RTP packets forwarded to subscribers (sum over the worker's rooms, live and gone).
    pub rtp_forwarded: u64,
    /// Rooms alive.
    pub rooms: u64,
}

struct WorkerHandle {
    tx: SyncSender<Command>,
    waker: UdpSocket,
    addr: SocketAddr,
}

impl WorkerHandle {
    fn send(&self, cmd: Command) -> Result<(), SfuError> {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SfuError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(SfuError::Stopped),
        }
        // Wake the worker out of its blocking receive; losing this is harmless (the worker
        // also polls its queue at every timeout).
        let _ = self.waker.send_to(&[0], self.addr);
        Ok(())
    }
}

struct Inner {
    workers: Vec<WorkerHandle>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.send(Command::Shutdown);
        }
        if let Ok(mut t) = self.threads.lock() {
            for h in t.drain(..) {
                let _ = h.join();
            }
        }
    }
}

/// The handle the rest of Copains uses to drive the SFU. Cheap to clone; the SFU stops when
/// the last clone is dropped (or on [`SfuHandle::shutdown`]).
///
/// Every method is answered by the worker that owns the room; SDP strings go in and out as
/// the client produced them (relayed by the gateway).
#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Inner>,
}

impl SfuHandle {
    /// Binds the sockets, starts the workers; returns the handle and the event stream.
    pub fn start(config: SfuConfig) -> Result<(SfuHandle, mpsc::Receiver<SfuEvent>), SfuError> {
        let announced = config.announced_ip.unwrap_or(config.bind_ip);
        if announced.is_unspecified() {
            return Err(SfuError::Config(
                "announced_ip is required when binding to an unspecified address".into(),
            ));
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let want = if config.workers == 0 {
            cores
        } else {
            config.workers
        };
        let want = want.min(config.ports.len()).max(1);
        let mut sockets = Vec::new();
        let mut last_err = None;
        for port in config.ports.start..=config.ports.end {
            if sockets.len() == want {
                break;
            }
            match bind(SocketAddr::new(config.bind_ip, port)) {
                Ok(s) => sockets.push((s, port)),
                Err(e) => last_err = Some(e),
            }
        }
        if sockets.is_empty() {
            return Err(last_err
                .map(SfuError::Io)
                .unwrap_or_else(|| SfuError::Config("no port available in the range".into())));
        }
        let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for (i, (socket, port)) in sockets.into_iter().enumerate() {
            let (tx, rx) = sync_channel(config.command_capacity.max(1));
            let local = socket.local_addr()?;
            // The address the waker sends to: loopback when bound to the unspecified address.
            let wake_addr = if local.ip().is_unspecified() {
                match local {
                    SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()),
                    SocketAddr::V6(_) => {
                        SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), local.port())
                    }
                }
            } else {
                local
            };
            let waker = UdpSocket::bind(SocketAddr::new(
                if wake_addr.is_ipv4() {
                    Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                },
                0,
            ))
            .or_else(|_| UdpSocket::bind(SocketAddr::new(wake_addr.ip(), 0)))?;
            let waker_addr = waker.local_addr()?;
            let mut room_cfg = config.room.clone();
            room_cfg.candidates = vec![SocketAddr::new(announced, port)];
            let worker = Worker {
                socket,
                candidate: SocketAddr::new(announced, port),
                waker_addr,
                commands: rx,
                events: ev_tx.clone(),
                room_config: room_cfg,
                rooms: HashMap::new(),
                by_ufrag: HashMap::new(),
                by_addr: HashMap::new(),
                addrs_of: HashMap::new(),
                ufrag_of: HashMap::new(),
                send_buf: Vec::new(),
                stats: WorkerStats::default(),
                forwarded_gone: 0,
            };
            let h = std::thread::Builder::new()
                .name(format!("sfu-worker-{i}"))
                .spawn(move || worker.run())?;
            threads.push(h);
            workers.push(WorkerHandle {
                tx,
                waker,
                addr: wake_addr,
            });
        }
        Ok((
            SfuHandle {
                inner: Arc::new(Inner {
                    workers,
                    threads: std::sync::Mutex::new(threads),
                }),
            },
            ev_rx,
        ))
    }

    /// The UDP addresses the workers are bound to (one per worker).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.workers.iter().map(|w| w.addr).collect()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner.workers.len()
    }

    fn worker(&self, room: RoomId) -> &WorkerHandle {
        let n = self.inner.workers.len() as u64;
        let h = room.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        &self.inner.workers[(h % n) as usize]
    }

    async fn call<T>(
        &self,
        room: RoomId,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.worker(room).send(make(tx))?;
        Ok(rx.await.map_err(|_| SfuError::Stopped)??)
    }

    /// Joins `participant` to `room` with the client's SDP offer. Returns the answer and
    /// maybe a server offer (apply the answer first, then answer the offer with
    /// [`SfuHandle::accept_answer`]).
    pub async fn join(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer: String,
    ) -> Result<Negotiated, SfuError> {
        self.call(room, |r| Command::Join(room, participant, offer, r))
            .await
    }

    /// A new client offer (camera / screen share started or stopped).
    pub async fn renegotiate(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer: String,
    ) -> Result<Negotiated, SfuError> {
        self.call(room, |r| Command::Renegotiate(room, participant, offer, r))
            .await
    }

    /// The client's answer to a server offer; may return the next server offer.
    pub async fn accept_answer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        answer: String,
    ) -> Result<Option<String>, SfuError> {
        self.call(room, |r| Command::Answer(room, participant, answer, r))
            .await
    }

    /// The participant left.
    pub async fn leave(&self, room: RoomId, participant: ParticipantId) -> Result<(), SfuError> {
        self.call(room, |r| Command::Leave(room, participant, r))
            .await
    }

    /// Removes the participant at once (kick, ban, timeout, lost CONNECT).
    pub async fn kick(&self, room: RoomId, participant: ParticipantId) -> Result<(), SfuError> {
        self.call(room, |r| Command::Kick(room, participant, r))
            .await
    }

    /// Server-side mute or unmute (MUTE_MEMBERS).
    pub async fn set_muted(
        &self,
        room: RoomId,
        participant: ParticipantId,
        muted: bool,
    ) -> Result<(), SfuError> {
        self.call(room, |r| Command::Mute(room, participant, muted, r))
            .await
    }

    /// How large `subscriber` shows `track` (tile, focus, hidden).
    pub async fn set_view(
        &self,
        room: RoomId,
        subscriber: ParticipantId,
        track: TrackId,
        size: ViewSize,
    ) -> Result<(), SfuError> {
        self.call(room, |r| Command::View(room, subscriber, track, size, r))
            .await
    }

    /// Counters summed over all workers.
    pub async fn stats(&self) -> Result<WorkerStats, SfuError> {
        let mut total = WorkerStats::default();
        for w in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            w.send(Command::Stats(tx))?;
            let s = rx.await.map_err(|_| SfuError::Stopped)?;
            total.datagrams_in += s.datagrams_in;
            total.datagrams_out += s.datagrams_out;
            total.unrouted += s.unrouted;
            total.rejected += s.rejected;
            total.events_dropped += s.events_dropped;
            total.rtp_forwarded += s.rtp_forwarded;
            total.rooms += s.rooms;
        }
        Ok(total)
    }

    /// Stops the workers (also done when the last handle is dropped).
    pub fn shutdown(&self) {
        for w in &self.inner.workers {
            let _ = w.send(Command::Shutdown);
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Larger kernel buffers absorb bursts (key frames fanned out); best effort.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

struct Worker {
    socket: UdpSocket,
    candidate: SocketAddr,
    waker_addr: SocketAddr,
    commands: Receiver<Command>,
    events: mpsc::Sender<SfuEvent>,
    room_config: RoomConfig,
    rooms: HashMap<RoomId, (Room, Option<Instant>)>,
    by_ufrag: HashMap<String, (RoomId, ParticipantId)>,
    by_addr: HashMap<SocketAddr, (RoomId, ParticipantId)>,
    addrs_of: HashMap<(RoomId, ParticipantId), Vec<SocketAddr>>,
    ufrag_of: HashMap<(RoomId, ParticipantId), String>,
    send_buf: Vec<(SocketAddr, Vec<u8>)>,
    stats: WorkerStats,
    forwarded_gone: u64,
}

impl Worker {
    fn run(mut self) {
        let mut bufs = vec![[0u8; MAX_DATAGRAM]; BATCH];
        let mut meta = vec![(0usize, self.candidate); BATCH];
        loop {
            // Commands first: they are rare and latency-sensitive.
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Shutdown) => return,
                    Ok(cmd) => self.command(cmd),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
            // Timers.
            let now = Instant::now();
            let due: Vec<RoomId> = self
                .rooms
                .iter()
                .filter(|(_, (_, t))| t.is_some_and(|t| t <= now))
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some((room, _)) = self.rooms.get_mut(&id) {
                    room.handle_timeout(now);
                }
                self.flush_room(id);
            }
            self.send_pending();
            let next = self.rooms.values().filter_map(|(_, t)| *t).min();
            let wait = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100))
                .clamp(Duration::from_micros(500), Duration::from_millis(100));
            let _ = self.socket.set_read_timeout(Some(wait));
            let n = match sys::recv_batch(&self.socket, &mut bufs, &mut meta) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    0
                }
                Err(e) => {
                    tracing::warn!("sfu socket receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            let now = Instant::now();
            for i in 0..n {
                let (len, source) = meta[i];
                if source == self.waker_addr {
                    continue;
                }
                self.stats.datagrams_in += 1;
                let data = &bufs[i][..len.min(MAX_DATAGRAM)];
                self.datagram(now, source, data);
            }
            self.send_pending();
        }
    }

    /// Routes one datagram: known address → its participant; otherwise STUN ufrag lookup.
    fn datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let dest = self.candidate;
        let target = match self.by_addr.get(&source) {
            Some(t) => Some(*t),
            None => {
                let Some(ufrag) = stun::binding_request_ufrag(data) else {
                    self.stats.unrouted += 1;
                    return;
                };
                let Some((room_id, pid)) = self.by_ufrag.get(ufrag).copied() else {
                    self.stats.unrouted += 1;
                    return;
                };
                let Some((room, _)) = self.rooms.get(&room_id) else {
                    self.stats.unrouted += 1;
                    return;
                };
                if !room.accepts(now, pid, source, dest, data) {
                    self.stats.rejected += 1;
                    return;
                }
                let addrs = self.addrs_of.entry((room_id, pid)).or_default();
                if addrs.len() >= MAX_ADDRS_PER_PARTICIPANT {
                    let old = addrs.remove(0);
                    self.by_addr.remove(&old);
                }
                addrs.push(source);
                self.by_addr.insert(source, (room_id, pid));
                Some((room_id, pid))
            }
        };
        let Some((room_id, pid)) = target else {
            return;
        };
        if let Some((room, _)) = self.rooms.get_mut(&room_id)
            && room.handle_datagram(now, pid, source, dest, data).is_err()
        {
            self.stats.rejected += 1;
        }
        self.flush_room(room_id);
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join(rid, pid, sdp, reply) => {
                let cfg = &self.room_config;
                let (room, _) = self
                    .rooms
                    .entry(rid)
                    .or_insert_with(|| (Room::new(cfg.clone()), None));
                let res = room.join(now, pid, &sdp);
                if res.is_ok()
                    && let Some(u) = room.ice_ufrag(pid)
                {
                    self.by_ufrag.insert(u.to_string(), (rid, pid));
                    self.ufrag_of.insert((rid, pid), u.to_string());
                }
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::Renegotiate(rid, pid, sdp, reply) => {
                let res = self.with_room(rid, |r| r.renegotiate(now, pid, &sdp));
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::Answer(rid, pid, sdp, reply) => {
                let res = self.with_room(rid, |r| r.accept_answer(now, pid, &sdp));
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::Leave(rid, pid, reply) => {
                let res = self.with_room(rid, |r| r.leave(now, pid));
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::Kick(rid, pid, reply) => {
                let res = self.with_room(rid, |r| r.kick(now, pid));
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::Mute(rid, pid, muted, reply) => {
                let res = self.with_room(rid, |r| r.set_muted(pid, muted));
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::View(rid, pid, track, size, reply) => {
                let res = self.with_room(rid, |r| r.set_view(now, pid, track, size));
                let _ = reply.send(res);
                self.flush_room(rid);
            }
            Command::Stats(reply) => {
                let mut s = self.stats;
                s.rooms = self.rooms.len() as u64;
                s.rtp_forwarded = self.forwarded_gone
                    + self
                        .rooms
                        .values()
                        .map(|(r, _)| r.stats().rtp_forwarded)
                        .sum::<u64>();
                let _ = reply.send(s);
            }
            Command::Shutdown => {}
        }
        self.send_pending();
    }

    fn with_room<T>(
        &mut self,
        rid: RoomId,
        f: impl FnOnce(&mut Room) -> Result<T, RoomError>,
    ) -> Result<T, RoomError> {
        match self.rooms.get_mut(&rid) {
            Some((room, _)) => f(room),
            None => Err(RoomError::UnknownParticipant),
        }
    }

    /// Moves a room's outputs to the send buffer and the event channel; forgets the routes of
    /// participants who left and the room itself once empty.
    fn flush_room(&mut self, rid: RoomId) {
        let Some((room, deadline)) = self.rooms.get_mut(&rid) else {
            return;
        };
        let mut left = Vec::new();
        while let Some(out) = room.poll_output() {
            match out {
                Output::Transmit(t) => self.send_buf.push((t.destination, t.contents)),
                Output::Event(event) => {
                    if let RoomEvent::ParticipantLeft { participant, .. } = &event {
                        left.push(*participant);
                    }
                    if self.events.try_send(SfuEvent { room: rid, event }).is_err() {
                        self.stats.events_dropped += 1;
                    }
                }
            }
            if self.send_buf.len() >= BATCH {
                send_all(&self.socket, &mut self.send_buf, &mut self.stats);
            }
        }
        *deadline = room.poll_timeout();
        let empty = room.is_empty();
        for pid in left {
            if let Some(u) = self.ufrag_of.remove(&(rid, pid)) {
                self.by_ufrag.remove(&u);
            }
            if let Some(addrs) = self.addrs_of.remove(&(rid, pid)) {
                for a in addrs {
                    self.by_addr.remove(&a);
                }
            }
        }
        if empty && let Some((room, _)) = self.rooms.remove(&rid) {
            self.forwarded_gone += room.stats().rtp_forwarded;
        }
    }

    fn send_pending(&mut self) {
        send_all(&self.socket, &mut self.send_buf, &mut self.stats);
    }
}

fn send_all(socket: &UdpSocket, buf: &mut Vec<(SocketAddr, Vec<u8>)>, stats: &mut WorkerStats) {
    let mut off = 0;
    while off < buf.len() {
        let end = (off + BATCH).min(buf.len());
        match sys::send_batch(socket, &buf[off..end]) {
            Ok(0) => off += 1,
            Ok(n) => {
                stats.datagrams_out += n as u64;
                off += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // One bad destination must not block the rest: skip it.
                tracing::debug!("sfu send failed: {e}");
                off += 1;
            }
        }
    }
    buf.clear();
}

/// Batched socket calls. `recvmmsg`/`sendmmsg` on Linux, a loop elsewhere.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod sys {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use socket2::{SockAddr, SockAddrStorage};

    /// Sends up to `pkts.len()` datagrams with one `sendmmsg`; returns how many were sent.
    pub fn send_batch(sock: &UdpSocket, pkts: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
        if pkts.is_empty() {
            return Ok(0);
        }
        let addrs: Vec<SockAddr> = pkts.iter().map(|(a, _)| SockAddr::from(*a)).collect();
        let mut iovs: Vec<libc::iovec> = pkts
            .iter()
            .map(|(_, b)| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(pkts.len());
        for (i, a) in addrs.iter().enumerate() {
            // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = a.as_ptr() as *mut libc::c_void;
            h.msg_namelen = a.len();
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            msgs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // SAFETY: every pointer in `msgs` points into `addrs`, `iovs` and `pkts`, which outlive
        // the call; the kernel only reads them (and writes `msg_len`).
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Receives up to `bufs.len()` datagrams with one `recvmmsg` (blocking for the first, as
    /// long as the socket's read timeout); fills `meta` with (length, source).
    pub fn recv_batch(
        sock: &UdpSocket,
        bufs: &mut [[u8; super::MAX_DATAGRAM]],
        meta: &mut [(usize, SocketAddr)],
    ) -> io::Result<usize> {
        let n = bufs.len().min(meta.len());
        let mut names: Vec<SockAddrStorage> = (0..n).map(|_| SockAddrStorage::zeroed()).collect();
        let mut iovs: Vec<libc::iovec> = bufs[..n]
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: all-zero is a valid msghdr.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = &mut names[i] as *mut SockAddrStorage as *mut libc::c_void;
            h.msg_namelen = names[i].size_of();
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            msgs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // SAFETY: the buffers, names and iovecs outlive the call; each iovec describes a
        // buffer of exactly its length; the kernel writes at most that much.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        let mut ok = 0;
        for i in 0..got {
            let len = msgs[i].msg_len as usize;
            let namelen = msgs[i].msg_hdr.msg_namelen;
            let storage = std::mem::replace(&mut names[i], SockAddrStorage::zeroed());
            // SAFETY: the kernel initialised `namelen` bytes of the storage with a sockaddr.
            let addr = unsafe { SockAddr::new(storage, namelen) }.as_socket();
            if let Some(a) = addr {
                if ok != i {
                    bufs.swap(ok, i);
                }
                meta[ok] = (len, a);
                ok += 1;
            }
        }
        Ok(ok)
    }
}

/// Batched socket calls: portable fallback (one system call per datagram).
#[cfg(not(target_os = "linux"))]
pub mod sys {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    /// Sends the datagrams one by one.
    pub fn send_batch(sock: &UdpSocket, pkts: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
        for (i, (a, b)) in pkts.iter().enumerate() {
            if let Err(e) = sock.send_to(b, a) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(pkts.len())
    }

    /// Receives one datagram.
    pub fn recv_batch(
        sock: &UdpSocket,
        bufs: &mut [[u8; super::MAX_DATAGRAM]],
        meta: &mut [(usize, SocketAddr)],
    ) -> io::Result<usize> {
        let (n, a) = sock.recv_from(&mut bufs[0])?;
        meta[0] = (n, a);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parsing() {
        assert_eq!(
            "50000-50100".parse::<PortRange>().unwrap(),
            PortRange {
                start: 50000,
                end: 50100
            }
        );
        assert_eq!("6000".parse::<PortRange>().unwrap().len(), 1);
        assert_eq!(" 1 - 2 ".parse::<PortRange>().unwrap().len(), 2);
        for bad in ["", "0-10", "10-5", "a-b", "70000", "1-2-3", "-5"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_send_and_receive_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let pkts: Vec<(SocketAddr, Vec<u8>)> =
            (0..10u8).map(|i| (to, vec![i; 100 + i as usize])).collect();
        assert_eq!(sys::send_batch(&a, &pkts).unwrap(), 10);
        b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut bufs = vec![[0u8; MAX_DATAGRAM]; BATCH];
        let mut meta = vec![(0usize, to); BATCH];
        let mut got = 0;
        while got < 10 {
            let n = sys::recv_batch(&b, &mut bufs, &mut meta).unwrap();
            for i in 0..n {
                assert_eq!(meta[i].1, a.local_addr().unwrap());
                assert_eq!(meta[i].0, 100 + got);
                assert!(bufs[i][..meta[i].0].iter().all(|x| *x as usize == got));
                got += 1;
            }
        }
    }
}
