//! A native WebRTC client (str0m, RTP mode) on a real UDP socket, for the loopback
//! integration test and the load generator. Not used by the SFU itself.
//!
//! It publishes Opus audio and optionally a three-layer simulcast VP8 camera, answers the
//! SFU's offers, and reports every RTP packet it receives. It is driven by [`NativeClient::tick`]
//! (non-blocking socket), so one thread can drive many clients.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Errors of the native client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// str0m error or bad SDP.
    #[error("webrtc: {0}")]
    Rtc(String),
}

fn rtc_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Rtc(e.to_string())
}

/// What a [`NativeClient`] publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Nothing: a listener (its offer carries one receive-only audio m-line).
    Nothing,
    /// Opus audio.
    Audio,
    /// Opus audio and a three-layer simulcast VP8 camera.
    AudioVideo,
}

/// A received RTP packet, as reported to [`NativeClient::tick`]'s callback.
pub struct Received<'a> {
    /// The m-line it arrived on (one per forwarded track).
    pub mid: Mid,
    /// The RTP packet (payload untouched by the SFU).
    pub packet: &'a RtpPacket,
}

/// A str0m client on its own UDP socket.
pub struct NativeClient {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// Mid of the published audio m-line.
    pub audio_mid: Option<Mid>,
    /// Mid of the published camera m-line.
    pub video_mid: Option<Mid>,
    seqs: HashMap<(Mid, Option<Rid>), u64>,
    buf: Vec<u8>,
    /// Datagrams sent (including STUN, DTLS, RTCP).
    pub sent: u64,
    /// Loss injection: drop every n-th received datagram longer than 900 bytes (video).
    pub drop_large_every: Option<u32>,
    large_seen: u32,
    /// Datagrams dropped by the loss injection.
    pub dropped: u64,
    /// Key frame requests (PLI/FIR) received from the SFU.
    pub keyframe_requests: u64,
}

impl NativeClient {
    /// Binds a socket on `ip:0` and builds the publishing offer; returns the client and the
    /// SDP offer to pass to `join`.
    pub fn new(
        ip: std::net::IpAddr,
        publish: Publish,
        now: Instant,
    ) -> Result<(NativeClient, String), ClientError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_stats_interval(None)
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(rtc_err)?);
        let mut change = rtc.sdp_api();
        let dir = if publish == Publish::Nothing {
            Direction::RecvOnly
        } else {
            Direction::SendOnly
        };
        let audio = change.add_media(MediaKind::Audio, dir, None, None, None);
        let video_mid = (publish == Publish::AudioVideo).then(|| {
            let mut sim = Simulcast::new();
            for r in ["q", "h", "f"] {
                sim.add_send_layer(SimulcastLayer::new(r));
            }
            change.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim))
        });
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| ClientError::Rtc("nothing to offer".into()))?;
        let client = NativeClient {
            rtc,
            socket,
            local,
            pending: Some(pending),
            audio_mid: (publish != Publish::Nothing).then_some(audio),
            video_mid,
            seqs: HashMap::new(),
            buf: vec![0; 2048],
            sent: 0,
            drop_large_every: None,
            large_seen: 0,
            dropped: 0,
            keyframe_requests: 0,
        };
        Ok((client, offer.to_sdp_string()))
    }

    /// The client's socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Applies the SFU's answer to our offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), ClientError> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| ClientError::Rtc("no pending offer".into()))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(rtc_err)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(rtc_err)?;
        self.drain(Instant::now(), &mut |_| {})
    }

    /// Answers a server offer; returns the SDP answer for `accept_answer` on the SFU.
    pub fn answer_offer(&mut self, sdp: &str) -> Result<String, ClientError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(rtc_err)?;
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(rtc_err)?;
        self.drain(Instant::now(), &mut |_| {})?;
        Ok(answer.to_sdp_string())
    }

    /// Asks the SFU for a key frame of the video it sends on `mid` (a PLI).
    pub fn request_keyframe(&mut self, mid: Mid) -> Result<(), ClientError> {
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(mid, None) {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        self.drain(Instant::now(), &mut |_| {})
    }

    /// True once ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.rtc.is_connected()
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        now: Instant,
        mid: Mid,
        rid: Option<&str>,
        codec: Codec,
        payload: Vec<u8>,
        marker: bool,
        rtp_time: u32,
        ext: ExtensionValues,
    ) -> Result<(), ClientError> {
        let rid = rid.map(Rid::from);
        let pt = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
            .ok_or_else(|| ClientError::Rtc("codec not negotiated".into()))?;
        let seq = self.seqs.entry((mid, rid)).or_insert(0);
        *seq += 1;
        let s = *seq;
        let mut api = self.rtc.direct_api();
        let tx = api
            .stream_tx_by_mid(mid, rid)
            .ok_or_else(|| ClientError::Rtc("no send stream".into()))?;
        tx.write_rtp(
            RtpWrite::new(pt, s.into(), rtp_time, now, payload)
                .marker(marker)
                .ext_vals(ext)
                .nackable(codec == Codec::Vp8),
        );
        self.drain(now, &mut |_| {})?;
        // The pacer releases queued packets on a timeout: send now rather than at the next tick.
        self.rtc
            .handle_input(Input::Timeout(now))
            .map_err(rtc_err)?;
        self.drain(now, &mut |_| {})
    }

    /// Sends one Opus packet with an audio level (dBov, -127..=0).
    pub fn send_audio(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        rtp_time: u32,
        level: i8,
    ) -> Result<(), ClientError> {
        let mid = self
            .audio_mid
            .ok_or_else(|| ClientError::Rtc("no audio".into()))?;
        let ext = ExtensionValues {
            audio_level: Some(level),
            voice_activity: Some(level > -60),
            ..Default::default()
        };
        self.write(now, mid, None, Codec::Opus, payload, true, rtp_time, ext)
    }

    /// Sends one VP8 packet on a simulcast layer ("q", "h", "f").
    pub fn send_video(
        &mut self,
        now: Instant,
        rid: &str,
        payload: Vec<u8>,
        marker: bool,
        rtp_time: u32,
    ) -> Result<(), ClientError> {
        let mid = self
            .video_mid
            .ok_or_else(|| ClientError::Rtc("no video".into()))?;
        self.write(
            now,
            mid,
            Some(rid),
            Codec::Vp8,
            payload,
            marker,
            rtp_time,
            ExtensionValues::default(),
        )
    }

    /// Reads every waiting datagram, runs timers, sends what str0m produced; calls `on_rtp`
    /// for each RTP packet received.
    pub fn tick(&mut self, on_rtp: &mut dyn FnMut(Received<'_>)) -> Result<(), ClientError> {
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, source)) => {
                    if let Some(every) = self.drop_large_every
                        && n > 900
                    {
                        self.large_seen += 1;
                        if self.large_seen.is_multiple_of(every.max(1)) {
                            self.dropped += 1;
                            continue;
                        }
                    }
                    let now = Instant::now();
                    let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &self.buf[..n])
                    else {
                        continue;
                    };
                    self.rtc
                        .handle_input(Input::Receive(now, r))
                        .map_err(rtc_err)?;
                    self.drain(now, on_rtp)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let now = Instant::now();
        self.rtc
            .handle_input(Input::Timeout(now))
            .map_err(rtc_err)?;
        self.drain(now, on_rtp)
    }

    fn drain(
        &mut self,
        _now: Instant,
        on_rtp: &mut dyn FnMut(Received<'_>),
    ) -> Result<(), ClientError> {
        loop {
            match self.rtc.poll_output().map_err(rtc_err)? {
                Output::Timeout(_) => return Ok(()),
                Output::Transmit(t) => {
                    self.sent += 1;
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let mid = self
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid());
                    if let Some(mid) = mid {
                        on_rtp(Received { mid, packet: &p });
                    }
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(_) => {}
            }
        }
    }
}
