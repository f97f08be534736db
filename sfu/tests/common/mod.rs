//! In-memory harness: real str0m client `Rtc`s (RTP mode) talking to a real [`Room`] through
//! its sans-IO interface, with a simulated clock and optional loss. No sockets.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use copains_sfu::str0m;
use copains_sfu::{Output, ParticipantId, Room, RoomConfig, RoomEvent};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Event, Input, Output as RtcOutput, Rtc, RtcConfig};

pub const SFU: &str = "10.9.9.9:40000";

/// A received RTP packet at a client.
#[derive(Debug, Clone)]
pub struct Got {
    pub mid: Mid,
    pub payload: Vec<u8>,
    pub seq: u64,
    pub at: Instant,
}

pub struct Client {
    pub id: ParticipantId,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub got: Vec<Got>,
    pub events: Vec<Event>,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    pub screen_mid: Option<Mid>,
    seq: HashMap<(Mid, Option<Rid>), u64>,
    /// Drop this share of datagrams sent *to* this client (0.0..1.0), deterministic.
    pub loss_in: f64,
    loss_acc: f64,
    pub dropped_in: u64,
}

pub fn client_config() -> RtcConfig {
    RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_stats_interval(None)
}

impl Client {
    pub fn new(n: u8, now: Instant) -> Client {
        let addr: SocketAddr = format!("10.0.0.{n}:5000").parse().unwrap();
        let mut rtc = client_config().build(now);
        rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").unwrap());
        Client {
            id: ParticipantId(n as u64),
            rtc,
            addr,
            got: Vec::new(),
            events: Vec::new(),
            audio_mid: None,
            video_mid: None,
            screen_mid: None,
            seq: HashMap::new(),
            loss_in: 0.0,
            loss_acc: 0.0,
            dropped_in: 0,
        }
    }

    /// Payloads received on the m-line with this mid.
    pub fn payloads(&self, mid: Mid) -> Vec<Vec<u8>> {
        self.got
            .iter()
            .filter(|g| g.mid == mid)
            .map(|g| g.payload.clone())
            .collect()
    }

    /// Mids of the m-lines the SFU sends to this client, in the order first seen.
    pub fn recv_mids(&self) -> Vec<Mid> {
        let mut v: Vec<Mid> = Vec::new();
        for g in &self.got {
            if !v.contains(&g.mid) {
                v.push(g.mid);
            }
        }
        v
    }

    pub fn keyframe_requests(&self) -> Vec<(Mid, Option<Rid>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::KeyframeRequest(r) => Some((r.mid, r.rid)),
                _ => None,
            })
            .collect()
    }

    fn pt(&self, codec: Codec) -> str0m::format::PayloadParams {
        *self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .unwrap()
    }

    /// Writes one RTP packet on (mid, rid) with the given payload.
    pub fn send(
        &mut self,
        now: Instant,
        mid: Mid,
        rid: Option<&str>,
        payload: Vec<u8>,
        marker: bool,
    ) {
        let rid = rid.map(Rid::from);
        let is_audio = Some(mid) == self.audio_mid;
        let codec = if is_audio { Codec::Opus } else { Codec::Vp8 };
        let pt = self.pt(codec).pt();
        let seq = self.seq.entry((mid, rid)).or_insert(100);
        *seq += 1;
        let s = *seq;
        let ts = if is_audio {
            s as u32 * 960
        } else {
            s as u32 * 3000
        };
        let mut ext = ExtensionValues::default();
        if is_audio {
            ext.audio_level = Some(-30);
            ext.voice_activity = Some(true);
        }
        self.send_ext(now, mid, rid, pt, s, ts, payload, marker, ext);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn send_ext(
        &mut self,
        now: Instant,
        mid: Mid,
        rid: Option<Rid>,
        pt: str0m::media::Pt,
        seq: u64,
        ts: u32,
        payload: Vec<u8>,
        marker: bool,
        ext: ExtensionValues,
    ) {
        let mut api = self.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, rid).expect("tx stream");
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, now, payload)
                .marker(marker)
                .ext_vals(ext)
                .nackable(true),
        );
    }

    /// Sends audio with a given level (dBov, -127..0).
    pub fn send_audio_level(&mut self, now: Instant, payload: Vec<u8>, level: i8) {
        let mid = self.audio_mid.unwrap();
        let pt = self.pt(Codec::Opus).pt();
        let seq = self.seq.entry((mid, None)).or_insert(100);
        *seq += 1;
        let s = *seq;
        let ext = ExtensionValues {
            audio_level: Some(level),
            voice_activity: Some(true),
            ..Default::default()
        };
        self.send_ext(now, mid, None, pt, s, s as u32 * 960, payload, true, ext);
    }

    /// Asks the SFU for a key frame of the video it sends on `mid`.
    pub fn request_keyframe(&mut self, mid: Mid) {
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    pub fn rx_ssrcs(&mut self) -> Vec<Ssrc> {
        Vec::new()
    }
}

/// A VP8 payload: descriptor (S=1, PID=0), a header byte with the key frame bit, then a tag.
pub fn vp8(key: bool, tag: &[u8]) -> Vec<u8> {
    let mut v = vec![0x10, if key { 0x00 } else { 0x01 }];
    v.extend_from_slice(tag);
    v
}

/// The world: a room, clients, queues and the clock.
pub struct World {
    pub now: Instant,
    pub room: Room,
    pub sfu: SocketAddr,
    pub clients: Vec<Client>,
    pub events: Vec<RoomEvent>,
    pub to_room: VecDeque<(ParticipantId, Vec<u8>)>,
    pub room_errors: u64,
}

impl World {
    pub fn new() -> World {
        World::with_config(|c| c)
    }

    pub fn with_config(f: impl FnOnce(RoomConfig) -> RoomConfig) -> World {
        let sfu: SocketAddr = SFU.parse().unwrap();
        let config = f(RoomConfig {
            candidates: vec![sfu],
            ..RoomConfig::default()
        });
        World {
            now: Instant::now(),
            room: Room::new(config),
            sfu,
            clients: Vec::new(),
            events: Vec::new(),
            to_room: VecDeque::new(),
            room_errors: 0,
        }
    }

    pub fn client(&mut self, id: u64) -> &mut Client {
        self.clients.iter_mut().find(|c| c.id.0 == id).unwrap()
    }

    /// Adds a client publishing audio (+ simulcast camera if `video`) and joins it.
    pub fn join(&mut self, n: u8, video: bool) {
        let mut c = Client::new(n, self.now);
        let mut change = c.rtc.sdp_api();
        let a = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let v = video.then(|| {
            let mut sim = Simulcast::new();
            for r in ["q", "h", "f"] {
                sim.add_send_layer(SimulcastLayer::new(r));
            }
            change.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim))
        });
        let (offer, pending) = change.apply().unwrap();
        c.audio_mid = Some(a);
        c.video_mid = v;
        let neg = self
            .room
            .join(self.now, c.id, &offer.to_sdp_string())
            .unwrap();
        let answer = SdpAnswer::from_sdp_string(&neg.answer).unwrap();
        c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let id = c.id;
        self.clients.push(c);
        self.drain_client(id);
        if let Some(offer) = neg.offer {
            self.answer_offer(id, &offer);
        }
        self.pump();
    }

    /// Joins a client whose offer carries a wrong DTLS fingerprint (an impostor).
    pub fn join_with_wrong_fingerprint(&mut self, n: u8) {
        let mut c = Client::new(n, self.now);
        let mut change = c.rtc.sdp_api();
        let a = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        c.audio_mid = Some(a);
        let sdp: String = offer
            .to_sdp_string()
            .lines()
            .map(|l| {
                if l.starts_with("a=fingerprint:sha-256 ") {
                    let fake: Vec<String> =
                        (0..32).map(|i| format!("{:02X}", i * 7 % 256)).collect();
                    format!("a=fingerprint:sha-256 {}\r\n", fake.join(":"))
                } else {
                    format!("{l}\r\n")
                }
            })
            .collect();
        let neg = self.room.join(self.now, c.id, &sdp).unwrap();
        let answer = SdpAnswer::from_sdp_string(&neg.answer).unwrap();
        c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let id = c.id;
        self.clients.push(c);
        self.drain_client(id);
        if let Some(offer) = neg.offer {
            self.answer_offer(id, &offer);
        }
        self.pump();
    }

    /// Publishes a screen share (video without simulcast) through renegotiation.
    pub fn start_screen(&mut self, id: u64) -> Mid {
        let c = self.client(id);
        let mut change = c.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        c.screen_mid = Some(mid);
        let pid = c.id;
        let now = self.now;
        let neg = self
            .room
            .renegotiate(now, pid, &offer.to_sdp_string())
            .unwrap();
        let c = self.client(id);
        c.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&neg.answer).unwrap())
            .unwrap();
        self.drain_client(pid);
        if let Some(o) = neg.offer {
            self.answer_offer(pid, &o);
        }
        self.pump();
        mid
    }

    pub fn answer_offer(&mut self, id: ParticipantId, sdp: &str) {
        let now = self.now;
        let Some(c) = self.clients.iter_mut().find(|c| c.id == id) else {
            return;
        };
        let answer = c
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(sdp).unwrap())
            .unwrap();
        self.drain_client(id);
        let next = match self.room.accept_answer(now, id, &answer.to_sdp_string()) {
            Ok(n) => n,
            // Removed meanwhile (kicked, failed DTLS): nothing to answer.
            Err(copains_sfu::RoomError::UnknownParticipant) => None,
            Err(e) => panic!("accept_answer: {e}"),
        };
        if let Some(o) = next {
            self.answer_offer(id, &o);
        }
    }

    fn drain_client(&mut self, id: ParticipantId) {
        let now = self.now;
        let Some(c) = self.clients.iter_mut().find(|c| c.id == id) else {
            return;
        };
        loop {
            let Ok(out) = c.rtc.poll_output() else {
                break;
            };
            match out {
                RtcOutput::Timeout(_) => break,
                RtcOutput::Transmit(t) => self.to_room.push_back((id, t.contents.into())),
                RtcOutput::Event(e) => {
                    if let Event::RtpPacket(p) = &e {
                        let mid = c
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid())
                            .unwrap();
                        c.got.push(Got {
                            mid,
                            payload: p.payload.to_vec(),
                            seq: *p.seq_no,
                            at: now,
                        });
                    } else {
                        c.events.push(e);
                    }
                }
            }
        }
    }

    /// Moves every queued datagram and room output until all is quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some((id, data)) = self.to_room.pop_front() {
                busy = true;
                let src = self.clients.iter().find(|c| c.id == id).map(|c| c.addr);
                if let Some(src) = src
                    && self
                        .room
                        .handle_datagram(self.now, id, src, self.sfu, &data)
                        .is_err()
                {
                    self.room_errors += 1;
                }
            }
            while let Some(out) = self.room.poll_output() {
                busy = true;
                match out {
                    Output::Transmit(t) => {
                        let now = self.now;
                        let sfu = self.sfu;
                        let Some(c) = self.clients.iter_mut().find(|c| c.id == t.participant)
                        else {
                            continue;
                        };
                        assert_eq!(t.destination, c.addr);
                        if c.loss_in > 0.0 {
                            c.loss_acc += c.loss_in;
                            if c.loss_acc >= 1.0 {
                                c.loss_acc -= 1.0;
                                c.dropped_in += 1;
                                continue;
                            }
                        }
                        let r = Receive::new(Protocol::Udp, sfu, c.addr, &t.contents).unwrap();
                        // An impostor's session may fail: that is its problem only.
                        let _ = c.rtc.handle_input(Input::Receive(now, r));
                        let id = c.id;
                        self.drain_client(id);
                    }
                    Output::Event(e) => {
                        if let RoomEvent::Offer { participant, sdp } = &e {
                            let (p, s) = (*participant, sdp.clone());
                            self.answer_offer(p, &s);
                        }
                        self.events.push(e);
                    }
                }
            }
            if !busy {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Advances the clock by `dt`, running every timer.
    pub fn advance(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        let ids: Vec<ParticipantId> = self.clients.iter().map(|c| c.id).collect();
        for id in ids {
            if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            self.drain_client(id);
        }
        self.room.handle_timeout(now);
        self.pump();
    }

    /// Runs for `total`, in steps of `step`.
    pub fn run(&mut self, total: Duration, step: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.advance(step);
        }
    }

    /// Runs until every client is connected (ICE + DTLS).
    pub fn connect(&mut self) {
        for _ in 0..2000 {
            if self.clients.iter().all(|c| c.rtc.is_connected()) {
                // Let the SFU side see it too.
                self.run(Duration::from_millis(50), Duration::from_millis(5));
                return;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("clients did not connect");
    }

    /// Lets `id` send media via a closure then pumps.
    pub fn with_client(&mut self, id: u64, f: impl FnOnce(&mut Client, Instant)) {
        let now = self.now;
        let c = self.client(id);
        f(c, now);
        let pid = c.id;
        self.drain_client(pid);
        self.pump();
    }

    /// Removes a client from the world (after leave/kick) but keeps it for inspection.
    pub fn events_of<T>(&self, f: impl Fn(&RoomEvent) -> Option<T>) -> Vec<T> {
        self.events.iter().filter_map(f).collect()
    }

    /// Sends one simulcast video frame on all three layers (one packet each).
    pub fn video_frame(&mut self, id: u64, key: bool, n: u32) {
        self.with_client(id, |c, now| {
            let mid = c.video_mid.unwrap();
            for r in ["q", "h", "f"] {
                let tag = format!("{r}{n}");
                c.send(now, mid, Some(r), vp8(key, tag.as_bytes()), true);
            }
        });
    }
}
