//! The sans-IO room: one str0m [`Rtc`] per participant, in RTP mode.
//!
//! A [`Room`] is fed with time (every method takes `now`), with datagrams addressed to a
//! participant ([`Room::handle_datagram`]) and with commands (join, leave, kick, mute, view
//! size). It is drained with [`Room::poll_output`] (datagrams to send, events for the app) and
//! [`Room::poll_timeout`] (when to call [`Room::handle_timeout`] next). It reads no clock,
//! owns no socket and takes no lock, so tests drive it with a simulated clock.
//!
//! Media is forwarded in RTP mode: each RTP packet a publisher's `Rtc` decrypts is written,
//! with the **same payload bytes**, to every subscriber's `Rtc` through
//! `direct_api().stream_tx(..).write_rtp(..)`, which encrypts it again for that subscriber.
//! Only the RTP header (sequence number, timestamp, SSRC, payload type) is rewritten, so
//! end-to-end encrypted frames pass through untouched.
//!
//! ## Signaling
//!
//! Every signaling call returns what the participant must apply next:
//! - [`Room::join`] takes the client's offer and returns [`Negotiated`]: the answer, then
//!   possibly a server offer adding the tracks of participants already in the room. The client
//!   applies the answer first, then answers the offer with [`Room::accept_answer`].
//! - [`Room::renegotiate`] takes a new client offer (camera or screen share started or
//!   stopped) and returns the same shape. While a server offer is unanswered it fails with
//!   [`RoomError::NegotiationInProgress`]: the client answers the offer first, then retries.
//! - When another participant publishes or stops a track, the room emits
//!   [`RoomEvent::Offer`] for each subscriber that has no offer outstanding; the client answers
//!   with [`Room::accept_answer`], which may return a further offer if more changed meanwhile.
//!
//! ## Tracks
//!
//! Opus audio, VP8 video. A video m-line that announces simulcast (rids "q", "h", "f") is a
//! camera; a video m-line without simulcast is treated as a screen share
//! ([`TrackKind::Screen`]), forwarded as is. Each subscriber gets one send m-line per track.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc, RtcConfig};

use crate::router::{
    Layer, LayerBitrates, LayerWant, Rebaser, SpeakerConfig, SpeakerDetector, Throttle, ViewSize,
    choose_layers, vp8_is_keyframe,
};

/// A participant, as the application numbers them (e.g. a voice session id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A published track: its publisher and the m-line (mid) in the publisher's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackId {
    /// Who publishes it.
    pub publisher: ParticipantId,
    /// The publisher's m-line.
    pub mid: Mid,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Opus audio.
    Audio,
    /// VP8 camera video (simulcast when the publisher offers it).
    Video,
    /// VP8 screen share (a video m-line without simulcast).
    Screen,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// [`Room::leave`].
    Left,
    /// [`Room::kick`] (kick, ban, timeout, lost CONNECT).
    Kicked,
    /// The connection failed, closed or never came up.
    Disconnected,
}

/// Something the application should know or relay.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A participant joined (their answer was produced).
    ParticipantJoined {
        /// Who.
        participant: ParticipantId,
    },
    /// ICE and DTLS are up for this participant: media can flow.
    Connected {
        /// Who.
        participant: ParticipantId,
    },
    /// A participant left; everything they published is gone.
    ParticipantLeft {
        /// Who.
        participant: ParticipantId,
        /// Why.
        reason: LeaveReason,
    },
    /// A track was published.
    TrackPublished {
        /// Which.
        track: TrackId,
        /// Audio, camera or screen.
        kind: TrackKind,
    },
    /// A track was unpublished (stopped or its publisher left).
    TrackUnpublished {
        /// Which.
        track: TrackId,
    },
    /// The loudest participant changed (`None`: nobody speaks).
    ActiveSpeakerChanged {
        /// The new active speaker.
        participant: Option<ParticipantId>,
    },
    /// A key frame was requested from a publisher (after throttling).
    KeyframeRequested {
        /// The track.
        track: TrackId,
        /// The simulcast layer, if any.
        layer: Option<Layer>,
    },
    /// A subscriber now receives another layer of a video track.
    LayerSwitched {
        /// The subscriber.
        subscriber: ParticipantId,
        /// The track.
        track: TrackId,
        /// The layer now forwarded.
        layer: Layer,
    },
    /// A server offer for a participant: relay it to the client, who answers with
    /// [`Room::accept_answer`].
    Offer {
        /// The participant.
        participant: ParticipantId,
        /// The SDP offer.
        sdp: String,
    },
    /// A participant was muted or unmuted by a moderator.
    MuteChanged {
        /// Who.
        participant: ParticipantId,
        /// Muted now?
        muted: bool,
    },
}

/// One datagram to send to a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The participant it is for.
    pub participant: ParticipantId,
    /// The local address (the SFU candidate) it is sent from.
    pub source: SocketAddr,
    /// The remote address.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// What [`Room::poll_output`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A datagram to send.
    Transmit(Transmit),
    /// An event for the application.
    Event(RoomEvent),
}

/// The result of a signaling call: the answer to relay, then maybe a server offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The SDP answer to the client's offer.
    pub answer: String,
    /// A server offer to relay after the answer (new send m-lines for the client).
    pub offer: Option<String>,
}

/// Errors of the room API. None is fatal to the room; most concern one call only.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoomError {
    /// No such participant in this room.
    #[error("unknown participant")]
    UnknownParticipant,
    /// The participant is already in the room.
    #[error("participant already joined")]
    AlreadyJoined,
    /// The room is at its participant cap.
    #[error("room is full")]
    Full,
    /// The SDP could not be parsed or accepted.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// A server offer is outstanding: answer it first.
    #[error("a server offer is outstanding; answer it first")]
    NegotiationInProgress,
    /// An answer arrived but no server offer was outstanding.
    #[error("no server offer outstanding")]
    NoPendingOffer,
    /// The datagram is not STUN, DTLS, RTP or RTCP.
    #[error("malformed datagram")]
    Malformed,
    /// str0m refused the input.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// No such track.
    #[error("unknown track")]
    UnknownTrack,
}

/// Tunables of a [`Room`].
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The SFU's ICE host candidates (announced address and port of the worker socket).
    pub candidates: Vec<SocketAddr>,
    /// Participant cap.
    pub max_participants: usize,
    /// Tracks one participant may publish (more are ignored).
    pub max_tracks_per_participant: usize,
    /// Nominal layer bitrates used to fit layers into the bandwidth estimate.
    pub layer_bitrates: LayerBitrates,
    /// Starting bandwidth estimate for each subscriber, bits/s.
    pub initial_bitrate: u64,
    /// Minimum interval between key frame requests sent to one publisher stream.
    pub keyframe_interval: Duration,
    /// Active speaker detection.
    pub speaker: SpeakerConfig,
    /// Datagrams queued before [`Room::poll_output`] drops new ones.
    pub max_queued_transmits: usize,
    /// Events queued before the oldest are dropped.
    pub max_queued_events: usize,
    /// A participant who is not connected this long after joining is removed.
    pub connect_timeout: Duration,
    /// Run str0m's bandwidth estimation (TWCC) towards subscribers. When off, layers are
    /// chosen from `initial_bitrate` and the bandwidth cap only, and nothing is paced.
    pub bwe: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            candidates: Vec::new(),
            max_participants: 200,
            max_tracks_per_participant: 4,
            layer_bitrates: LayerBitrates::default(),
            initial_bitrate: 1_000_000,
            keyframe_interval: Duration::from_secs(1),
            speaker: SpeakerConfig::default(),
            max_queued_transmits: 16_384,
            max_queued_events: 1024,
            connect_timeout: Duration::from_secs(30),
            bwe: true,
        }
    }
}

/// Counters, for tests, metrics and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets written to subscribers.
    pub rtp_forwarded: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Datagrams rejected as malformed or refused by str0m.
    pub datagrams_rejected: u64,
    /// Key frame requests sent to publishers.
    pub keyframe_requests: u64,
    /// Key frame requests suppressed by the throttle.
    pub keyframe_requests_throttled: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

struct TrackOut {
    state: OutState,
    kind: TrackKind,
    size: ViewSize,
    current: Option<Layer>,
    target: Option<Layer>,
    rebaser: Rebaser,
    pt: Option<str0m::format::PayloadParams>,
}

impl TrackOut {
    fn new(kind: TrackKind) -> Self {
        TrackOut {
            state: OutState::ToOpen,
            kind,
            size: match kind {
                TrackKind::Video => ViewSize::Tile,
                _ => ViewSize::Focus,
            },
            current: None,
            target: None,
            rebaser: Rebaser::new(if kind == TrackKind::Audio {
                48_000
            } else {
                90_000
            }),
            pt: None,
        }
    }
}

struct TrackIn {
    kind: TrackKind,
    simulcast: bool,
    subscribers: Vec<ParticipantId>,
    last_seen: [Option<Instant>; 3],
}

struct Participant {
    rtc: Rtc,
    ufrag: String,
    muted: bool,
    connected: bool,
    joined_at: Instant,
    published: Vec<Mid>,
    outs: HashMap<TrackId, TrackOut>,
    out_by_mid: HashMap<Mid, TrackId>,
    pending: Option<SdpPendingOffer>,
    estimate: u64,
    cap: Option<u64>,
    timeout: Instant,
}

/// A voice/video room: the sans-IO state machine. See the module docs.
pub struct Room {
    config: RoomConfig,
    participants: HashMap<ParticipantId, Participant>,
    tracks: HashMap<TrackId, TrackIn>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RoomEvent>,
    work: VecDeque<(ParticipantId, Event)>,
    dirty: HashSet<ParticipantId>,
    doomed: Vec<(ParticipantId, LeaveReason)>,
    throttle: Throttle<(TrackId, Option<Layer>)>,
    speaker: SpeakerDetector<ParticipantId>,
    next_tick: Option<Instant>,
    stats: RoomStats,
}

/// Most timeout rounds run for one participant in one call (each may release one packet).
const MAX_TIMER_ROUNDS: usize = 256;

/// How long a simulcast layer may be silent before it counts as stopped.
const LAYER_ACTIVE_FOR: Duration = Duration::from_millis(1500);

fn layer_of(rid: Option<Rid>) -> Option<Layer> {
    match rid {
        None => Some(Layer::Q),
        Some(r) => Layer::from_rid(&r),
    }
}

impl Room {
    /// An empty room.
    pub fn new(config: RoomConfig) -> Self {
        Room {
            throttle: Throttle::new(config.keyframe_interval),
            speaker: SpeakerDetector::new(config.speaker),
            config,
            participants: HashMap::new(),
            tracks: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            work: VecDeque::new(),
            dirty: HashSet::new(),
            doomed: Vec::new(),
            next_tick: None,
            stats: RoomStats::default(),
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> RoomStats {
        self.stats
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// True if the participant is in the room.
    pub fn contains(&self, participant: ParticipantId) -> bool {
        self.participants.contains_key(&participant)
    }

    /// The participants, in no particular order.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.participants.keys().copied()
    }

    /// The local ICE username fragment of a participant's session: STUN binding requests
    /// from that client carry it, which is how the IO driver routes its first datagram.
    pub fn ice_ufrag(&self, participant: ParticipantId) -> Option<&str> {
        self.participants
            .get(&participant)
            .map(|p| p.ufrag.as_str())
    }

    /// The tracks currently published.
    pub fn tracks(&self) -> impl Iterator<Item = (TrackId, TrackKind)> + '_ {
        self.tracks.iter().map(|(id, t)| (*id, t.kind))
    }

    /// The layer a subscriber currently receives of a track (`None` before the first key
    /// frame, when hidden, or for unknown ids).
    pub fn current_layer(&self, subscriber: ParticipantId, track: TrackId) -> Option<Layer> {
        self.participants
            .get(&subscriber)?
            .outs
            .get(&track)?
            .current
    }

    /// The active speaker.
    pub fn active_speaker(&self) -> Option<ParticipantId> {
        self.speaker.active()
    }

    /// Is the participant server-muted?
    pub fn is_muted(&self, participant: ParticipantId) -> Option<bool> {
        self.participants.get(&participant).map(|p| p.muted)
    }

    fn rtc_config(&self) -> RtcConfig {
        let c = RtcConfig::new()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_stats_interval(None);
        if self.config.bwe {
            c.enable_bwe(Some(Bitrate::bps(self.config.initial_bitrate)))
        } else {
            c
        }
    }

    /// Adds a participant from its SDP offer; returns the answer and maybe a server offer.
    pub fn join(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        offer_sdp: &str,
    ) -> Result<Negotiated, RoomError> {
        if self.participants.contains_key(&participant) {
            return Err(RoomError::AlreadyJoined);
        }
        if self.participants.len() >= self.config.max_participants {
            return Err(RoomError::Full);
        }
        let offer =
            SdpOffer::from_sdp_string(offer_sdp).map_err(|e| RoomError::BadSdp(e.to_string()))?;
        let mut rtc = self.rtc_config().build(now);
        for addr in &self.config.candidates {
            let c = Candidate::host(*addr, "udp").map_err(|e| RoomError::Rtc(e.to_string()))?;
            rtc.add_local_candidate(c);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| RoomError::BadSdp(e.to_string()))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        self.participants.insert(
            participant,
            Participant {
                rtc,
                ufrag,
                muted: false,
                connected: false,
                joined_at: now,
                published: Vec::new(),
                outs: HashMap::new(),
                out_by_mid: HashMap::new(),
                pending: None,
                estimate: self.config.initial_bitrate,
                cap: None,
                timeout: now,
            },
        );
        self.push_event(RoomEvent::ParticipantJoined { participant });
        // Subscribe the newcomer to everything already published.
        let existing: Vec<(TrackId, TrackKind)> = self.tracks().collect();
        for (id, kind) in existing {
            self.subscribe(participant, id, kind);
        }
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.config.speaker.tick);
        }
        self.drain(participant, now);
        self.process(now);
        let offer = self.make_offer(participant, now, false);
        self.finish(now);
        Ok(Negotiated {
            answer: answer.to_sdp_string(),
            offer,
        })
    }

    /// A new client offer (a camera or screen share started or stopped).
    pub fn renegotiate(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        offer_sdp: &str,
    ) -> Result<Negotiated, RoomError> {
        let offer =
            SdpOffer::from_sdp_string(offer_sdp).map_err(|e| RoomError::BadSdp(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&participant)
            .ok_or(RoomError::UnknownParticipant)?;
        if p.pending.is_some() {
            return Err(RoomError::NegotiationInProgress);
        }
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| RoomError::BadSdp(e.to_string()))?;
        self.drain(participant, now);
        self.process(now);
        let offer = self.make_offer(participant, now, false);
        self.finish(now);
        Ok(Negotiated {
            answer: answer.to_sdp_string(),
            offer,
        })
    }

    /// The client's answer to a server offer; returns a further offer if more changed since.
    pub fn accept_answer(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        answer_sdp: &str,
    ) -> Result<Option<String>, RoomError> {
        let answer =
            SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| RoomError::BadSdp(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&participant)
            .ok_or(RoomError::UnknownParticipant)?;
        let pending = p.pending.take().ok_or(RoomError::NoPendingOffer)?;
        p.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| RoomError::BadSdp(e.to_string()))?;
        let mut opened = Vec::new();
        for (id, out) in p.outs.iter_mut() {
            match out.state {
                OutState::Negotiating(m) => {
                    if self.tracks.contains_key(id) {
                        out.state = OutState::Open(m);
                        let codec = if out.kind == TrackKind::Audio {
                            Codec::Opus
                        } else {
                            Codec::Vp8
                        };
                        out.pt = p
                            .rtc
                            .codec_config()
                            .find(|c| c.spec().codec == codec)
                            .cloned();
                        opened.push(*id);
                    } else {
                        out.state = OutState::ToStop(m);
                    }
                }
                OutState::NegotiatingStop(m) => {
                    p.out_by_mid.remove(&m);
                }
                _ => {}
            }
        }
        p.outs
            .retain(|_, o| !matches!(o.state, OutState::NegotiatingStop(_)));
        self.drain(participant, now);
        // NACK answers must not be dropped because BWE padding (spurious resends) raised the
        // resend ratio: keep str0m's cache size and age, without the ratio cap.
        for id in &opened {
            let Some(p) = self.participants.get_mut(&participant) else {
                break;
            };
            let Some(OutState::Open(mid)) = p.outs.get(id).map(|o| o.state) else {
                continue;
            };
            if let Some(tx) = p.rtc.direct_api().stream_tx_by_mid(mid, None) {
                tx.set_rtx_cache(1024, Duration::from_secs(3), None);
            }
            self.drain(participant, now);
        }
        self.process(now);
        self.update_targets(participant, now);
        for id in opened {
            if let Some(t) = self.tracks.get_mut(&id)
                && !t.subscribers.contains(&participant)
            {
                t.subscribers.push(participant);
            }
        }
        let offer = self.make_offer(participant, now, false);
        self.finish(now);
        Ok(offer)
    }

    /// Removes a participant who left.
    pub fn leave(&mut self, now: Instant, participant: ParticipantId) -> Result<(), RoomError> {
        self.remove(now, participant, LeaveReason::Left)
    }

    /// Removes a participant at once (kick, ban, timeout, lost CONNECT): nothing of theirs is
    /// forwarded after this call and nothing is sent to them.
    pub fn kick(&mut self, now: Instant, participant: ParticipantId) -> Result<(), RoomError> {
        self.remove(now, participant, LeaveReason::Kicked)
    }

    /// Server-side mute (MUTE_MEMBERS): a muted participant's audio is dropped by the SFU.
    pub fn set_muted(&mut self, participant: ParticipantId, muted: bool) -> Result<(), RoomError> {
        let p = self
            .participants
            .get_mut(&participant)
            .ok_or(RoomError::UnknownParticipant)?;
        if p.muted == muted {
            return Ok(());
        }
        p.muted = muted;
        if !muted {
            // Resume audio with continuous sequence numbers for every subscriber.
            let audio: Vec<TrackId> = p
                .published
                .iter()
                .map(|mid| TrackId {
                    publisher: participant,
                    mid: *mid,
                })
                .collect();
            for sub in self.participants.values_mut() {
                for id in &audio {
                    if let Some(o) = sub.outs.get_mut(id) {
                        o.rebaser.rebase_next();
                    }
                }
            }
        }
        self.speaker.remove(participant);
        self.push_event(RoomEvent::MuteChanged { participant, muted });
        Ok(())
    }

    /// Sets how large a subscriber shows a track (tile caps at "h", focus allows "f",
    /// hidden stops forwarding it).
    pub fn set_view(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        size: ViewSize,
    ) -> Result<(), RoomError> {
        let p = self
            .participants
            .get_mut(&subscriber)
            .ok_or(RoomError::UnknownParticipant)?;
        let out = p.outs.get_mut(&track).ok_or(RoomError::UnknownTrack)?;
        out.size = size;
        self.update_targets(subscriber, now);
        self.process(now);
        self.finish(now);
        Ok(())
    }

    /// Caps the bandwidth used for a subscriber's layer choice (bits/s); `None` removes the
    /// cap. The effective budget is the smaller of the cap and str0m's estimate
    /// (`Event::EgressBitrateEstimate`). Operators use it to limit a subscriber; tests use it
    /// to simulate a bandwidth drop deterministically.
    pub fn set_bandwidth_cap(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        bps: Option<u64>,
    ) -> Result<(), RoomError> {
        let p = self
            .participants
            .get_mut(&subscriber)
            .ok_or(RoomError::UnknownParticipant)?;
        p.cap = bps;
        self.update_targets(subscriber, now);
        self.process(now);
        self.finish(now);
        Ok(())
    }

    /// The bandwidth estimate str0m last reported for a subscriber (bits/s).
    pub fn bandwidth_estimate(&self, subscriber: ParticipantId) -> Option<u64> {
        self.participants.get(&subscriber).map(|p| p.estimate)
    }

    /// A datagram that the IO driver routed to `participant`. Garbage is rejected with an
    /// error and counted; it never affects other participants.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Result<(), RoomError> {
        let Some(p) = self.participants.get_mut(&participant) else {
            return Err(RoomError::UnknownParticipant);
        };
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, data) else {
            self.stats.datagrams_rejected += 1;
            return Err(RoomError::Malformed);
        };
        let res = p.rtc.handle_input(Input::Receive(now, recv));
        self.drain(participant, now);
        self.process(now);
        self.finish(now);
        if let Err(e) = res {
            self.stats.datagrams_rejected += 1;
            return Err(RoomError::Rtc(e.to_string()));
        }
        Ok(())
    }

    /// Would this participant's session accept the datagram (STUN with its ufrag, or from its
    /// nominated address)? Used by the IO driver before learning a new remote address.
    pub fn accepts(
        &self,
        now: Instant,
        participant: ParticipantId,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(p) = self.participants.get(&participant) else {
            return false;
        };
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, data) else {
            return false;
        };
        p.rtc.accepts(&Input::Receive(now, recv))
    }

    /// Drives timers: str0m's (retransmissions, RTCP, pacing, BWE) and the room's own
    /// (active speaker, layer choice, connect timeout). Call at [`Room::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.run_timers(id, now);
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            self.next_tick = Some(now + self.config.speaker.tick);
            if let Some(change) = self.speaker.tick() {
                self.push_event(RoomEvent::ActiveSpeakerChanged {
                    participant: change,
                });
            }
            let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
            for id in ids {
                self.update_targets(id, now);
                if let Some(p) = self.participants.get(&id)
                    && !p.connected
                    && now.saturating_duration_since(p.joined_at) > self.config.connect_timeout
                {
                    self.doomed.push((id, LeaveReason::Disconnected));
                }
            }
        }
        self.process(now);
        self.finish(now);
    }

    /// When [`Room::handle_timeout`] should be called next (`None`: the room is empty).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.participants.values().map(|p| p.timeout).min();
        match (t, self.next_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b).filter(|_| !self.participants.is_empty()),
        }
    }

    /// The next datagram to send or event to handle.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(Output::Transmit(t));
        }
        self.events.pop_front().map(Output::Event)
    }

    // ---------------------------------------------------------------- internals

    fn push_event(&mut self, e: RoomEvent) {
        if self.events.len() >= self.config.max_queued_events {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Drains one participant's `Rtc` fully (str0m's one-mutation-one-drain rule): transmits
    /// go to the queue, events to the work list.
    fn drain(&mut self, id: ParticipantId, now: Instant) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        loop {
            match p.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    p.timeout = t;
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    if self.transmits.len() >= self.config.max_queued_transmits {
                        self.stats.transmits_dropped += 1;
                        continue;
                    }
                    self.transmits.push_back(Transmit {
                        participant: id,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                }
                Ok(RtcOutput::Event(e)) => self.work.push_back((id, e)),
                Err(e) => {
                    tracing::debug!(participant = %id, "rtc failed: {e}");
                    p.timeout = now + Duration::from_millis(100);
                    self.doomed.push((id, LeaveReason::Disconnected));
                    break;
                }
            }
        }
        if !p.rtc.is_alive() {
            self.doomed.push((id, LeaveReason::Disconnected));
        }
    }

    /// Feeds `Input::Timeout(now)` to a participant's `Rtc` while it is due, draining after
    /// each. str0m's pacer releases queued packets only on timeouts (the leaky-bucket pacer used
    /// with BWE one per timeout), so this is what actually sends forwarded media. Bounded.
    fn run_timers(&mut self, id: ParticipantId, now: Instant) {
        for _ in 0..MAX_TIMER_ROUNDS {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            if p.timeout > now {
                return;
            }
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(participant = %id, "timeout error: {e}");
                self.doomed.push((id, LeaveReason::Disconnected));
                return;
            }
            self.drain(id, now);
        }
    }

    /// Handles queued str0m events until none is left.
    fn process(&mut self, now: Instant) {
        while let Some((id, e)) = self.work.pop_front() {
            if !self.participants.contains_key(&id) {
                continue;
            }
            match e {
                Event::RtpPacket(pkt) => self.forward(now, id, pkt),
                Event::KeyframeRequest(req) => {
                    let Some(p) = self.participants.get(&id) else {
                        continue;
                    };
                    let Some(track) = p.out_by_mid.get(&req.mid).copied() else {
                        continue;
                    };
                    let layer = p.outs.get(&track).and_then(|o| o.current.or(o.target));
                    self.request_keyframe(now, track, layer, req.kind);
                }
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. })
                | Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                    if let Some(p) = self.participants.get_mut(&id) {
                        p.estimate = estimate.as_u64();
                    }
                    self.update_targets(id, now);
                }
                Event::MediaAdded(m) if m.direction.is_receiving() => {
                    let kind = match m.kind {
                        MediaKind::Audio => TrackKind::Audio,
                        MediaKind::Video => {
                            let sim = m.simulcast.as_ref().is_some_and(|s| !s.recv.is_empty());
                            if sim {
                                TrackKind::Video
                            } else {
                                TrackKind::Screen
                            }
                        }
                    };
                    let simulcast = kind == TrackKind::Video;
                    self.publish(id, m.mid, kind, simulcast);
                }
                Event::MediaChanged(m) => {
                    let track = TrackId {
                        publisher: id,
                        mid: m.mid,
                    };
                    if !m.direction.is_receiving() && self.tracks.contains_key(&track) {
                        self.unpublish(track);
                    }
                }
                Event::IceConnectionStateChange(s) => match s {
                    IceConnectionState::Disconnected => {
                        self.doomed.push((id, LeaveReason::Disconnected));
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed => {}
                    _ => {}
                },
                Event::Connected => {
                    if let Some(p) = self.participants.get_mut(&id)
                        && !p.connected
                    {
                        p.connected = true;
                        self.push_event(RoomEvent::Connected { participant: id });
                    }
                }
                _ => {}
            }
        }
    }

    /// Removes doomed participants and sends offers to those whose tracks changed.
    fn finish(&mut self, now: Instant) {
        while let Some((id, reason)) = self.doomed.pop() {
            let _ = self.remove(now, id, reason);
        }
        let dirty: Vec<ParticipantId> = self.dirty.drain().collect();
        for id in dirty {
            if let Some(sdp) = self.make_offer(id, now, true) {
                self.push_event(RoomEvent::Offer {
                    participant: id,
                    sdp,
                });
            }
        }
    }

    fn remove(
        &mut self,
        now: Instant,
        id: ParticipantId,
        reason: LeaveReason,
    ) -> Result<(), RoomError> {
        let Some(mut p) = self.participants.remove(&id) else {
            return Err(RoomError::UnknownParticipant);
        };
        p.rtc.disconnect();
        // Nothing more is sent to them.
        self.transmits.retain(|t| t.participant != id);
        self.work.retain(|(w, _)| *w != id);
        self.dirty.remove(&id);
        for mid in p.published.clone() {
            self.unpublish(TrackId { publisher: id, mid });
        }
        for t in self.tracks.values_mut() {
            t.subscribers.retain(|s| *s != id);
        }
        self.throttle.forget(|(t, _)| t.publisher == id);
        if self.speaker.remove(id) {
            self.push_event(RoomEvent::ActiveSpeakerChanged { participant: None });
        }
        self.push_event(RoomEvent::ParticipantLeft {
            participant: id,
            reason,
        });
        // Stops of their tracks go out as offers to the others.
        let dirty: Vec<ParticipantId> = self.dirty.drain().collect();
        for d in dirty {
            if let Some(sdp) = self.make_offer(d, now, true) {
                self.push_event(RoomEvent::Offer {
                    participant: d,
                    sdp,
                });
            }
        }
        Ok(())
    }

    fn publish(&mut self, id: ParticipantId, mid: Mid, kind: TrackKind, simulcast: bool) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let track = TrackId { publisher: id, mid };
        if self.tracks.contains_key(&track) {
            return;
        }
        if p.published.len() >= self.config.max_tracks_per_participant {
            tracing::debug!(participant = %id, "track cap reached, ignoring {mid}");
            return;
        }
        p.published.push(mid);
        self.tracks.insert(
            track,
            TrackIn {
                kind,
                simulcast,
                subscribers: Vec::new(),
                last_seen: [None; 3],
            },
        );
        self.push_event(RoomEvent::TrackPublished { track, kind });
        let others: Vec<ParticipantId> = self
            .participants
            .keys()
            .copied()
            .filter(|o| *o != id)
            .collect();
        for o in others {
            self.subscribe(o, track, kind);
        }
    }

    fn subscribe(&mut self, sub: ParticipantId, track: TrackId, kind: TrackKind) {
        if let Some(p) = self.participants.get_mut(&sub) {
            p.outs.entry(track).or_insert_with(|| TrackOut::new(kind));
            self.dirty.insert(sub);
        }
    }

    fn unpublish(&mut self, track: TrackId) {
        if self.tracks.remove(&track).is_none() {
            return;
        }
        if let Some(p) = self.participants.get_mut(&track.publisher) {
            p.published.retain(|m| *m != track.mid);
        }
        for (sid, p) in self.participants.iter_mut() {
            let Some(out) = p.outs.get_mut(&track) else {
                continue;
            };
            match out.state {
                OutState::ToOpen => {
                    p.outs.remove(&track);
                }
                OutState::Open(m) => {
                    out.state = OutState::ToStop(m);
                    self.dirty.insert(*sid);
                }
                // Negotiating: turned into ToStop when the answer arrives.
                _ => {}
            }
        }
        self.push_event(RoomEvent::TrackUnpublished { track });
    }

    /// Builds a server offer for pending track changes, if none is outstanding.
    fn make_offer(
        &mut self,
        id: ParticipantId,
        now: Instant,
        _unsolicited: bool,
    ) -> Option<String> {
        let p = self.participants.get_mut(&id)?;
        if p.pending.is_some() {
            // Retried after the outstanding offer is answered.
            return None;
        }
        let mut change = p.rtc.sdp_api();
        let mut adds = Vec::new();
        let mut stops = Vec::new();
        for (tid, out) in p.outs.iter() {
            match out.state {
                OutState::ToOpen => {
                    let kind = if out.kind == TrackKind::Audio {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    let mid = change.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(format!("{}", tid.publisher)),
                        Some(format!("{}-{}", tid.publisher, tid.mid)),
                        None,
                    );
                    adds.push((*tid, mid));
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    stops.push((*tid, mid));
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        p.pending = Some(pending);
        for (tid, mid) in adds {
            if let Some(o) = p.outs.get_mut(&tid) {
                o.state = OutState::Negotiating(mid);
                p.out_by_mid.insert(mid, tid);
            }
        }
        for (tid, mid) in stops {
            if let Some(o) = p.outs.get_mut(&tid) {
                o.state = OutState::NegotiatingStop(mid);
            }
        }
        self.drain(id, now);
        Some(offer.to_sdp_string())
    }

    /// Recomputes the wanted layer of each video track for one subscriber.
    fn update_targets(&mut self, id: ParticipantId, now: Instant) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut ids = Vec::new();
        let mut wants = Vec::new();
        let mut budget = p.cap.map_or(p.estimate, |c| c.min(p.estimate));
        let mut requests = Vec::new();
        for (tid, out) in p.outs.iter_mut() {
            if !matches!(out.state, OutState::Open(_)) {
                continue;
            }
            let Some(t) = self.tracks.get(tid) else {
                continue;
            };
            if out.kind == TrackKind::Audio {
                budget = budget.saturating_sub(40_000);
                out.target = Some(Layer::Q);
                continue;
            }
            if !t.simulcast {
                // One stream (screen share): always forwarded unless hidden. Forwarding starts
                // on a key frame, and an encoder of a still screen sends none by itself: ask the
                // publisher for one until this subscriber gets the stream (throttled).
                out.target = out.size.cap().map(|_| Layer::Q);
                if out.target.is_some() && out.current.is_none() {
                    requests.push((*tid, out.target));
                }
                continue;
            }
            let mut active = [false; 3];
            for (i, seen) in t.last_seen.iter().enumerate() {
                active[i] =
                    seen.is_some_and(|s| now.saturating_duration_since(s) < LAYER_ACTIVE_FOR);
            }
            if !active.iter().any(|a| *a) {
                // Nothing received yet: assume all layers, the key frame decides.
                active = [true; 3];
            }
            ids.push(*tid);
            wants.push(LayerWant {
                size: out.size,
                active,
            });
        }
        let chosen = choose_layers(budget, &wants, &self.config.layer_bitrates);
        for (tid, layer) in ids.into_iter().zip(chosen) {
            if let Some(out) = p.outs.get_mut(&tid)
                && out.target != layer
            {
                out.target = layer;
                if layer.is_some() && layer != out.current {
                    requests.push((tid, layer));
                }
            }
        }
        for (tid, layer) in requests {
            self.request_keyframe(now, tid, layer, KeyframeRequestKind::Pli);
        }
    }

    /// Asks a publisher for a key frame, at most once per interval per stream.
    fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackId,
        layer: Option<Layer>,
        kind: KeyframeRequestKind,
    ) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        if t.kind == TrackKind::Audio {
            return;
        }
        let layer = if t.simulcast { layer } else { None };
        if !self.throttle.allow((track, layer), now) {
            self.stats.keyframe_requests_throttled += 1;
            return;
        }
        let Some(p) = self.participants.get_mut(&track.publisher) else {
            return;
        };
        let rid = layer.map(|l| Rid::from(l.rid()));
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(track.mid, rid) {
            rx.request_keyframe(kind);
            self.stats.keyframe_requests += 1;
            self.push_event(RoomEvent::KeyframeRequested { track, layer });
        }
        self.drain(track.publisher, now);
    }

    /// Forwards one RTP packet from a publisher to its subscribers.
    fn forward(&mut self, now: Instant, from: ParticipantId, pkt: RtpPacket) {
        self.stats.rtp_in += 1;
        let Some(p) = self.participants.get_mut(&from) else {
            return;
        };
        let muted = p.muted;
        let Some((mid, rid)) = p
            .rtc
            .direct_api()
            .stream_rx(&pkt.header.ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let track = TrackId {
            publisher: from,
            mid,
        };
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let Some(layer) = layer_of(rid) else {
            return;
        };
        if t.kind == TrackKind::Audio {
            if muted {
                return;
            }
            if let Some(level) = pkt.header.ext_vals.audio_level {
                self.speaker.sample(from, level);
            }
        }
        t.last_seen[layer as usize] = Some(now);
        let keyframe = t.kind != TrackKind::Audio && vp8_is_keyframe(&pkt.payload);
        let subs = t.subscribers.clone();
        let is_video = t.kind != TrackKind::Audio;
        let seq: u64 = *pkt.seq_no;
        let mut ext = ExtensionValues::default();
        if !is_video {
            ext.audio_level = pkt.header.ext_vals.audio_level;
            ext.voice_activity = pkt.header.ext_vals.voice_activity;
        }
        let mut switched = Vec::new();
        for sid in subs {
            let Some(sp) = self.participants.get_mut(&sid) else {
                continue;
            };
            let Some(out) = sp.outs.get_mut(&track) else {
                continue;
            };
            let OutState::Open(out_mid) = out.state else {
                continue;
            };
            let Some(pt) = out.pt.as_ref().map(|p| p.pt()) else {
                continue;
            };
            if out.target.is_none() {
                continue;
            }
            if out.current != Some(layer) {
                if out.target == Some(layer) && (keyframe || !is_video) {
                    out.current = Some(layer);
                    out.rebaser.rebase_next();
                    if is_video {
                        switched.push(sid);
                    }
                } else {
                    continue;
                }
            }
            let Some((seq_out, ts_out)) = out.rebaser.map(now, seq, pkt.header.timestamp) else {
                continue;
            };
            let mut api = sp.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(pt, seq_out.into(), ts_out, now, Arc::clone(&pkt.payload))
                    .marker(pkt.header.marker)
                    .ext_vals(ext.clone())
                    .nackable(is_video),
            );
            self.stats.rtp_forwarded += 1;
            self.drain(sid, now);
            // Send it now rather than at the next timer pass.
            self.run_timers(sid, now);
        }
        for sid in switched {
            self.push_event(RoomEvent::LayerSwitched {
                subscriber: sid,
                track,
                layer,
            });
        }
    }
}
