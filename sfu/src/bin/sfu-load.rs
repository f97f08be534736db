//! `sfu-load`: load generator and benchmark of the Copains SFU against its floor.
//!
//! Runs, in one process and one run:
//! 1. **floor**: (a) a raw UDP relay (`recvmmsg` + `sendmmsg`, no crypto) forwarding the same
//!    packets, at the same rates and fan-out, to the same number of sink sockets; (b) str0m's
//!    SRTP send and receive cost per packet, measured in-process on two connected `Rtc`s in RTP
//!    mode (no sockets);
//! 2. **sfu**: the real SFU ([`SfuHandle`], one worker) with native str0m publishers (audio 50
//!    packets/s of ~100 B; VP8 simulcast at 30 fps, "f" 5–8 packets of ~1,100 B, "h" 2, "q" 1;
//!    a key frame every 3 s or on PLI) and sink subscribers focused on every camera, which
//!    count and time what arrives (sequence number and send time ride in the clear part of
//!    each payload);
//! 3. **nack**: the same with 2% of the video datagrams towards each sink dropped, to measure
//!    the share recovered by NACK/RTX.
//!
//! CPU is `utime + stime` of the SFU worker thread (or relay thread, or measuring thread) from
//! `/proc/self/task/<tid>/stat`, divided by the packets forwarded.
//!
//! Usage: `cargo run --release -p copains-sfu --bin sfu-load -- [--publishers 4]
//! [--subscribers 10] [--secs 10] [--out bench/results/sfu.json]`

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use copains_sfu::client::{NativeClient, Publish};
use copains_sfu::str0m;
use copains_sfu::udp::sys;
use copains_sfu::{ParticipantId, RoomEvent, RoomId, SfuConfig, SfuHandle, TrackKind, ViewSize};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ROOM: RoomId = RoomId(1);

#[derive(Debug, Clone)]
struct Args {
    publishers: u32,
    subscribers: u32,
    secs: u64,
    out: String,
    /// Publishers send video too (off with `--audio-only`).
    video: bool,
    /// Also run scenario (a) and the ramp (c) and include them in the JSON.
    scenarios: bool,
    /// Run str0m's BWE (and its pacer) towards subscribers (`SFU_LOAD_BWE=0` turns it off).
    bwe: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        publishers: 4,
        subscribers: 10,
        secs: 10,
        out: "bench/results/sfu.json".into(),
        video: true,
        scenarios: false,
        bwe: std::env::var("SFU_LOAD_BWE")
            .map(|v| v != "0")
            .unwrap_or(true),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--audio-only" => {
                a.video = false;
                i += 1;
                continue;
            }
            "--scenarios" => {
                a.scenarios = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        let val = v.get(i + 1).ok_or("missing value")?;
        match v[i].as_str() {
            "--publishers" => a.publishers = val.parse()?,
            "--subscribers" => a.subscribers = val.parse()?,
            "--secs" => a.secs = val.parse()?,
            "--out" => a.out = val.clone(),
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 2;
    }
    Ok(a)
}

// ------------------------------------------------------------------ CPU time

/// utime+stime (clock ticks) of the threads whose name starts with `prefix`.
fn thread_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        total += stat_ticks(&std::fs::read_to_string(p.join("stat")).unwrap_or_default());
    }
    total
}

/// utime+stime of the calling thread.
fn self_ticks() -> u64 {
    stat_ticks(&std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default())
}

fn stat_ticks(stat: &str) -> u64 {
    // Fields after the ")" that closes comm: state is field 3; utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
    ut + st
}

const TICK_US: f64 = 10_000.0; // CLK_TCK = 100

// ------------------------------------------------------------------ payloads

/// Stream ids carried in payloads.
const AUDIO: u8 = 0;
const LAYERS: [(&str, u8, u32); 3] = [("q", 1, 1), ("h", 2, 2), ("f", 3, 0)];

/// Clear part of every payload: VP8 descriptor (2 bytes) or Opus TOC + pad, then
/// publisher (4), stream (1), sequence (4), send time in µs since `epoch` (8).
fn payload(
    key: bool,
    first: bool,
    publisher: u32,
    stream: u8,
    seq: u32,
    sent_us: u64,
    size: usize,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    if stream == AUDIO {
        v.extend_from_slice(&[0xfc, 0xff]);
    } else {
        v.push(if first { 0x10 } else { 0x00 });
        v.push(if key { 0x00 } else { 0x01 });
    }
    v.extend_from_slice(&publisher.to_be_bytes());
    v.push(stream);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&sent_us.to_be_bytes());
    // Opaque filler, as an encrypted frame would be.
    let mut x = seq.wrapping_mul(2_654_435_761) ^ publisher;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

struct Parsed {
    publisher: u32,
    stream: u8,
    seq: u32,
    sent_us: u64,
    key_start: bool,
}

fn parse(p: &[u8]) -> Option<Parsed> {
    if p.len() < 19 {
        return None;
    }
    Some(Parsed {
        publisher: u32::from_be_bytes(p[2..6].try_into().ok()?),
        stream: p[6],
        seq: u32::from_be_bytes(p[7..11].try_into().ok()?),
        sent_us: u64::from_be_bytes(p[11..19].try_into().ok()?),
        key_start: p[6] != AUDIO && p[0] & 0x10 != 0 && p[1] & 0x01 == 0,
    })
}

/// One datagram-to-be of the publishing schedule.
struct Pkt {
    stream: u8,
    rid: Option<&'static str>,
    data: Vec<u8>,
    marker: bool,
    rtp_time: u32,
}

/// The media a publisher sends: audio every 20 ms, a video frame every 33 ms.
struct Schedule {
    publisher: u32,
    start: Instant,
    next_audio: Instant,
    next_video: Instant,
    frame: u32,
    seqs: [u32; 4],
    last_key: Instant,
    key_wanted: bool,
    /// Packets sent per stream at or after `measure_from_us` (for the loss figure).
    measured: [u64; 4],
    measure_from_us: u64,
    video: bool,
}

impl Schedule {
    fn new(publisher: u32, start: Instant) -> Schedule {
        Schedule {
            publisher,
            start,
            next_audio: start,
            next_video: start,
            frame: 0,
            seqs: [0; 4],
            last_key: start,
            key_wanted: true,
            measured: [0; 4],
            measure_from_us: 0,
            video: true,
        }
    }

    fn due(&mut self, now: Instant, epoch: Instant, out: &mut Vec<Pkt>) {
        while self.next_audio <= now {
            let seq = self.seqs[0];
            self.seqs[0] += 1;
            let t = self.next_audio.saturating_duration_since(self.start);
            let sent = now.saturating_duration_since(epoch).as_micros() as u64;
            if sent >= self.measure_from_us {
                self.measured[0] += 1;
            }
            out.push(Pkt {
                stream: AUDIO,
                rid: None,
                data: payload(false, true, self.publisher, AUDIO, seq, sent, 100),
                marker: true,
                rtp_time: (t.as_micros() as u64 * 48 / 1000) as u32,
            });
            self.next_audio += Duration::from_millis(20);
        }
        while self.video && self.next_video <= now {
            let key = self.key_wanted
                || now.saturating_duration_since(self.last_key) >= Duration::from_secs(3);
            if key {
                self.key_wanted = false;
                self.last_key = now;
            }
            let t = self.next_video.saturating_duration_since(self.start);
            let rtp_time = (t.as_micros() as u64 * 90 / 1000) as u32;
            let sent = now.saturating_duration_since(epoch).as_micros() as u64;
            for (rid, stream, fixed) in LAYERS {
                // "f": 5–8 packets of ~1,100 B; "h": 2 of ~1,000 B; "q": 1 of ~600 B.
                let (n, size) = match fixed {
                    0 => (5 + (self.frame * 7 + self.publisher) % 4, 1100),
                    2 => (2, 1000),
                    _ => (1, 600),
                };
                for i in 0..n {
                    let seq = self.seqs[stream as usize];
                    self.seqs[stream as usize] += 1;
                    if sent >= self.measure_from_us {
                        self.measured[stream as usize] += 1;
                    }
                    out.push(Pkt {
                        stream,
                        rid: Some(rid),
                        data: payload(key, i == 0, self.publisher, stream, seq, sent, size),
                        marker: i + 1 == n,
                        rtp_time,
                    });
                }
            }
            self.frame += 1;
            self.next_video += Duration::from_micros(33_333);
        }
    }
}

// ------------------------------------------------------------------ sink accounting

#[derive(Default)]
struct Tally {
    /// (sink, publisher, stream) → seqs received.
    seen: HashMap<(u32, u32, u8), HashSet<u32>>,
    lat_us: Vec<u32>,
    packets: u64,
    duplicates: u64,
    /// (sink, m-line) → RTP sequence numbers of the video stream the SFU sends. The SFU keeps
    /// that stream continuous across layer switches, so a gap is a packet never recovered.
    rtp_video: HashMap<(u32, str0m::media::Mid), HashSet<u64>>,
}

impl Tally {
    /// Video packets missing at the sinks after NACK/RTX (gaps in each stream's range).
    fn rtp_video_missing(&self) -> u64 {
        self.rtp_video
            .values()
            .map(|seqs| {
                let lo = seqs.iter().min().copied().unwrap_or(0);
                let hi = seqs.iter().max().copied().unwrap_or(0);
                (hi - lo + 1).saturating_sub(seqs.len() as u64)
            })
            .sum()
    }

    fn add(&mut self, sink: u32, p: &Parsed, now_us: u64) {
        self.packets += 1;
        if !self
            .seen
            .entry((sink, p.publisher, p.stream))
            .or_default()
            .insert(p.seq)
        {
            self.duplicates += 1;
            return;
        }
        if self.lat_us.len() < 4_000_000 {
            self.lat_us.push(now_us.saturating_sub(p.sent_us) as u32);
        }
    }

    /// Unique packets received of the audio and "f" streams (what sinks are meant to get).
    fn got_audio_f(&self) -> u64 {
        self.seen
            .iter()
            .filter(|((_, _, st), _)| *st == AUDIO || *st == 3)
            .map(|(_, v)| v.len() as u64)
            .sum()
    }

    /// Unique "f" packets received.
    fn got_f(&self) -> u64 {
        self.seen
            .iter()
            .filter(|((_, _, st), _)| *st == 3)
            .map(|(_, v)| v.len() as u64)
            .sum()
    }
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i.min(v.len() - 1)]) / 1000.0
}

// ------------------------------------------------------------------ floor: raw relay

struct RelayResult {
    us_per_forwarded: f64,
    forwarded: u64,
    p50_ms: f64,
    p99_ms: f64,
    loss: f64,
}

fn floor_relay(args: &Args) -> Res<RelayResult> {
    let relay = UdpSocket::bind((LO, 0))?;
    let relay_addr = relay.local_addr()?;
    relay.set_read_timeout(Some(Duration::from_millis(50)))?;
    // Each publisher's packets go to every sink and every other publisher, like the SFU.
    let pubs: Vec<UdpSocket> = (0..args.publishers)
        .map(|_| UdpSocket::bind((LO, 0)))
        .collect::<Result<_, _>>()?;
    let sinks: Vec<UdpSocket> = (0..args.subscribers)
        .map(|_| UdpSocket::bind((LO, 0)))
        .collect::<Result<_, _>>()?;
    let pub_addrs: Vec<SocketAddr> = pubs
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    let sink_addrs: Vec<SocketAddr> = sinks
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let forwarded = Arc::new(Mutex::new(0u64));
    let epoch = Instant::now();

    // Relay: only the "f" layer and audio are forwarded (what the SFU's sinks receive).
    let relay_thread = {
        let stop = stop.clone();
        let forwarded = forwarded.clone();
        let pub_addrs = pub_addrs.clone();
        let sink_addrs = sink_addrs.clone();
        std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                let mut bufs = vec![[0u8; 2048]; sys_batch()];
                let mut meta = vec![(0usize, relay_addr); sys_batch()];
                let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
                let mut n_fwd = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = sys::recv_batch(&relay, &mut bufs, &mut meta).unwrap_or(0);
                    for i in 0..n {
                        let (len, from) = meta[i];
                        let data = &bufs[i][..len];
                        if data.len() > 6 && data[6] != AUDIO && data[6] != 3 {
                            continue;
                        }
                        for d in pub_addrs.iter().chain(sink_addrs.iter()) {
                            if *d != from {
                                out.push((*d, data.to_vec()));
                            }
                        }
                    }
                    let mut off = 0;
                    while off < out.len() {
                        let end = (off + sys_batch()).min(out.len());
                        match sys::send_batch(&relay, &out[off..end]) {
                            Ok(k) if k > 0 => {
                                n_fwd += k as u64;
                                off += k;
                            }
                            _ => off += 1,
                        }
                    }
                    out.clear();
                }
                if let Ok(mut f) = forwarded.lock() {
                    *f = n_fwd;
                }
            })?
    };

    // Sinks (and publishers' receive side) counted in one thread.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sink_thread = {
        let stop = stop.clone();
        let tally = tally.clone();
        let socks: Vec<UdpSocket> = sinks
            .iter()
            .chain(pubs.iter())
            .map(|s| s.try_clone())
            .collect::<Result<_, _>>()?;
        for s in &socks {
            s.set_nonblocking(true)?;
        }
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut t = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let mut any = false;
                for (i, s) in socks.iter().enumerate() {
                    while let Ok((n, _)) = s.recv_from(&mut buf) {
                        any = true;
                        let now_us = epoch.elapsed().as_micros() as u64;
                        if let Some(p) = parse(&buf[..n]) {
                            t.add(i as u32, &p, now_us);
                        }
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            if let Ok(mut g) = tally.lock() {
                *g = t;
            }
        })
    };

    // Publishers.
    let start = Instant::now();
    let mut scheds: Vec<Schedule> = (0..args.publishers)
        .map(|i| Schedule::new(i + 1, start))
        .collect();
    for s in scheds.iter_mut() {
        s.video = args.video;
    }
    let end = start + Duration::from_secs(args.secs);
    let mut pkts = Vec::new();
    let ticks0 = thread_ticks("relay");
    while Instant::now() < end {
        let now = Instant::now();
        for (i, s) in scheds.iter_mut().enumerate() {
            s.due(now, epoch, &mut pkts);
            for p in pkts.drain(..) {
                let _ = pubs[i].send_to(&p.data, relay_addr);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ticks = thread_ticks("relay").saturating_sub(ticks0);
    stop.store(true, Ordering::Relaxed);
    relay_thread.join().map_err(|_| "relay thread panicked")?;
    sink_thread.join().map_err(|_| "sink thread panicked")?;
    let fwd = *forwarded.lock().map_err(|_| "poisoned")?;
    let mut t = std::mem::take(&mut *tally.lock().map_err(|_| "poisoned")?);
    let fanout = u64::from(args.publishers + args.subscribers - 1);
    let want: u64 = scheds
        .iter()
        .map(|s| s.measured[0] + s.measured[3])
        .sum::<u64>()
        * fanout;
    let got = t.got_audio_f();
    Ok(RelayResult {
        us_per_forwarded: ticks as f64 * TICK_US / fwd.max(1) as f64,
        forwarded: fwd,
        p50_ms: pct(&mut t.lat_us, 0.5),
        p99_ms: pct(&mut t.lat_us, 0.99),
        loss: 1.0 - got as f64 / want.max(1) as f64,
    })
}

fn sys_batch() -> usize {
    copains_sfu::udp::BATCH
}

// ------------------------------------------------------------------ floor: str0m SRTP

struct SrtpResult {
    send_us: f64,
    recv_us: f64,
    packets: u64,
}

/// Two str0m `Rtc`s in RTP mode connected in memory; the cost of writing + encrypting +
/// emitting one packet, and of receiving + decrypting + emitting it.
fn floor_srtp() -> Res<SrtpResult> {
    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::format::Codec;
    use str0m::media::{Direction, MediaKind};
    use str0m::net::{Protocol, Receive};
    use str0m::rtp::RtpWrite;
    use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

    let cfg = || {
        RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_stats_interval(None)
    };
    let mut now = Instant::now();
    let mut l = cfg().build(now);
    let mut r = cfg().set_ice_lite(true).build(now);
    let la: SocketAddr = "10.0.0.1:1000".parse()?;
    let ra: SocketAddr = "10.0.0.2:2000".parse()?;
    l.add_local_candidate(Candidate::host(la, "udp")?);
    r.add_local_candidate(Candidate::host(ra, "udp")?);
    let mut ch = l.sdp_api();
    let vmid = ch.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let amid = ch.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = ch.apply().ok_or("no offer")?;
    let answer = r
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer.to_sdp_string())?)?;
    l.sdp_api().accept_answer(
        pending,
        SdpAnswer::from_sdp_string(&answer.to_sdp_string())?,
    )?;

    fn drain(rtc: &mut Rtc, out: &mut Vec<Vec<u8>>) -> Res<()> {
        loop {
            match rtc.poll_output()? {
                Output::Timeout(_) => return Ok(()),
                Output::Transmit(t) => out.push(t.contents.into()),
                Output::Event(_) => {}
            }
        }
    }
    let (mut to_l, mut to_r): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        if l.is_connected() && r.is_connected() {
            break;
        }
        now += Duration::from_millis(5);
        l.handle_input(Input::Timeout(now))?;
        drain(&mut l, &mut to_r)?;
        r.handle_input(Input::Timeout(now))?;
        drain(&mut r, &mut to_l)?;
        while !to_l.is_empty() || !to_r.is_empty() {
            for d in std::mem::take(&mut to_r) {
                r.handle_input(Input::Receive(
                    now,
                    Receive::new(Protocol::Udp, la, ra, &d)?,
                ))?;
                drain(&mut r, &mut to_l)?;
            }
            for d in std::mem::take(&mut to_l) {
                l.handle_input(Input::Receive(
                    now,
                    Receive::new(Protocol::Udp, ra, la, &d)?,
                ))?;
                drain(&mut l, &mut to_r)?;
            }
        }
    }
    if !l.is_connected() || !r.is_connected() {
        return Err("in-memory SRTP peers did not connect".into());
    }
    let vpt = l
        .codec_config()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .ok_or("vp8")?;
    let apt = l
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .map(|p| p.pt())
        .ok_or("opus")?;

    // Mix as in the load: per 33 ms, ~1.7 audio packets of 100 B and ~6.5 video of 1,100 B.
    let n: u64 = 120_000;
    let mut datagrams: Vec<Vec<u8>> = Vec::with_capacity(n as usize);
    // Payloads are made before timing starts: only str0m's work is measured.
    let pool: Vec<[std::sync::Arc<[u8]>; 2]> = (0..64u32)
        .map(|i| {
            [
                payload(false, true, 1, 3, i, 0, 1100).into(),
                payload(false, true, 1, AUDIO, i, 0, 100).into(),
            ]
        })
        .collect();
    let t0 = self_ticks();
    for i in 0..n {
        if i % 5 == 0 {
            now += Duration::from_millis(3);
        }
        let audio = i % 5 == 0;
        let (mid, pt) = if audio { (amid, apt) } else { (vmid, vpt) };
        let data = std::sync::Arc::clone(&pool[(i % 64) as usize][usize::from(audio)]);
        let mut api = l.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).ok_or("tx")?;
        tx.write_rtp(
            RtpWrite::new(pt, (i + 1).into(), (i * 90) as u32, now, data).nackable(!audio),
        );
        // Drain, then the timeout that lets the pacer release the packet, then drain again.
        for k in 0..2 {
            if k == 1 {
                l.handle_input(Input::Timeout(now))?;
            }
            loop {
                match l.poll_output()? {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => datagrams.push(t.contents.into()),
                    Output::Event(_) => {}
                }
            }
        }
    }
    let t1 = self_ticks();
    let mut got = 0u64;
    for d in &datagrams {
        r.handle_input(Input::Receive(now, Receive::new(Protocol::Udp, la, ra, d)?))?;
        loop {
            match r.poll_output()? {
                Output::Timeout(_) => break,
                Output::Event(Event::RtpPacket(_)) => got += 1,
                _ => {}
            }
        }
    }
    let t2 = self_ticks();
    Ok(SrtpResult {
        send_us: (t1 - t0) as f64 * TICK_US / n as f64,
        recv_us: (t2 - t1) as f64 * TICK_US / got.max(1) as f64,
        packets: got,
    })
}

// ------------------------------------------------------------------ the SFU run

/// What the sink thread hands back: tally, PLI→key frame times, datagrams dropped, clients.
type SinkResult = (Tally, Vec<f64>, u64, Vec<(ParticipantId, NativeClient)>);

struct SfuRun {
    forwarded: u64,
    cpu_us: f64,
    wall_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    loss: f64,
    dropped: u64,
    video_missing: u64,
    f_missing: u64,
    pli_to_key_ms: Vec<f64>,
    received: u64,
    duplicates: u64,
}

fn run_sfu(args: &Args, port_base: u16, drop_every: Option<u32>) -> Res<SfuRun> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut room = copains_sfu::RoomConfig {
        initial_bitrate: 50_000_000,
        ..Default::default()
    };
    room.max_queued_transmits = 65_536;
    room.bwe = args.bwe;
    let config = SfuConfig {
        bind_ip: LO,
        ports: format!("{port_base}-{}", port_base + 99).parse()?,
        workers: 1,
        room,
        ..SfuConfig::default()
    };
    let (sfu, mut events) = SfuHandle::start(config)?;
    let mut clients: Vec<(ParticipantId, NativeClient)> = Vec::new();
    let total = args.publishers + args.subscribers;
    let mut videos = Vec::new();
    let relay_offers = |clients: &mut Vec<(ParticipantId, NativeClient)>,
                        events: &mut tokio::sync::mpsc::Receiver<copains_sfu::SfuEvent>,
                        videos: &mut Vec<copains_sfu::TrackId>|
     -> Res<()> {
        while let Ok(ev) = events.try_recv() {
            match ev.event {
                RoomEvent::Offer { participant, sdp } => {
                    if let Some((_, c)) = clients.iter_mut().find(|(p, _)| *p == participant) {
                        let mut next = Some(sdp);
                        while let Some(o) = next {
                            let a = c.answer_offer(&o)?;
                            next = rt.block_on(sfu.accept_answer(ROOM, participant, a))?;
                        }
                    }
                }
                RoomEvent::TrackPublished {
                    track,
                    kind: TrackKind::Video,
                } => videos.push(track),
                _ => {}
            }
        }
        Ok(())
    };
    for i in 1..=total {
        let publish = if i > args.publishers {
            Publish::Nothing
        } else if args.video {
            Publish::AudioVideo
        } else {
            Publish::Audio
        };
        let (mut c, offer) = NativeClient::new(LO, publish, Instant::now())?;
        let pid = ParticipantId(u64::from(i));
        let neg = rt.block_on(sfu.join(ROOM, pid, offer))?;
        c.accept_answer(&neg.answer)?;
        let mut next = neg.offer;
        while let Some(o) = next {
            let a = c.answer_offer(&o)?;
            next = rt.block_on(sfu.accept_answer(ROOM, pid, a))?;
        }
        clients.push((pid, c));
        relay_offers(&mut clients, &mut events, &mut videos)?;
    }
    let setup_end = Instant::now() + Duration::from_secs(10);
    loop {
        for (_, c) in clients.iter_mut() {
            c.tick(&mut |_| {})?;
        }
        relay_offers(&mut clients, &mut events, &mut videos)?;
        if clients.iter().all(|(_, c)| c.is_connected()) {
            break;
        }
        if Instant::now() > setup_end {
            return Err("clients did not connect".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Everyone focuses on every camera: sinks get the "f" layer.
    for (pid, _) in &clients {
        for t in &videos {
            if t.publisher != *pid {
                rt.block_on(sfu.set_view(ROOM, *pid, *t, ViewSize::Focus))?;
            }
        }
    }
    let n_pub = args.publishers as usize;
    let mut sinks: Vec<(ParticipantId, NativeClient)> = clients.split_off(n_pub);
    let mut pubs = clients;
    for (_, s) in sinks.iter_mut() {
        s.drop_large_every = drop_every;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let warmup = Duration::from_secs(2);
    let measure_from_us = warmup.as_micros() as u64;

    // Sink thread: counts, times, and asks for key frames to time PLI → key frame.
    let sink_thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("sinks".into())
            .spawn(move || -> Res<SinkResult> {
                let mut t = Tally::default();
                let mut pli: Vec<f64> = Vec::new();
                let mut pli_pending: Option<(Instant, str0m::media::Mid)> = None;
                let mut last_pli = Instant::now();
                let mut video_mid: Option<str0m::media::Mid> = None;
                while !stop.load(Ordering::Relaxed) {
                    for (i, (_, s)) in sinks.iter_mut().enumerate() {
                        let mut found_key = None;
                        let mut mid_seen = None;
                        s.tick(&mut |r| {
                            let now_us = epoch.elapsed().as_micros() as u64;
                            if let Some(p) = parse(&r.packet.payload) {
                                if p.stream == 3 {
                                    mid_seen = Some(r.mid);
                                    if p.key_start {
                                        found_key = Some(r.mid);
                                    }
                                }
                                if p.sent_us >= measure_from_us {
                                    t.add(i as u32, &p, now_us);
                                    if p.stream != AUDIO {
                                        t.rtp_video
                                            .entry((i as u32, r.mid))
                                            .or_default()
                                            .insert(*r.packet.seq_no);
                                    }
                                }
                            }
                        })?;
                        if i == 0 {
                            if video_mid.is_none() {
                                video_mid = mid_seen;
                            }
                            if let (Some((at, mid)), Some(k)) = (pli_pending, found_key)
                                && k == mid
                            {
                                pli.push(at.elapsed().as_secs_f64() * 1000.0);
                                pli_pending = None;
                            }
                            if pli_pending.is_none()
                                && last_pli.elapsed() > Duration::from_millis(1500)
                                && let Some(mid) = video_mid
                            {
                                s.request_keyframe(mid)?;
                                pli_pending = Some((Instant::now(), mid));
                                last_pli = Instant::now();
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                let dropped = sinks.iter().map(|(_, s)| s.dropped).sum();
                Ok((t, pli, dropped, sinks))
            })?
    };

    // Publishers in this thread.
    let start = Instant::now();
    let mut scheds: Vec<Schedule> = (0..args.publishers)
        .map(|i| Schedule::new(i + 1, start))
        .collect();
    for s in scheds.iter_mut() {
        s.measure_from_us = measure_from_us;
        s.video = args.video;
    }
    let mut kf_seen: Vec<u64> = vec![0; n_pub];
    let end = start + warmup + Duration::from_secs(args.secs);
    let mut pkts = Vec::new();
    let mut ticks0 = None;
    let mut fwd0 = 0;
    let mut wall0 = Instant::now();
    while Instant::now() < end {
        if ticks0.is_none() && start.elapsed() >= warmup {
            ticks0 = Some(thread_ticks("sfu-worker"));
            fwd0 = rt.block_on(sfu.stats())?.rtp_forwarded;
            wall0 = Instant::now();
        }
        let now = Instant::now();
        for (i, (_, c)) in pubs.iter_mut().enumerate() {
            c.tick(&mut |_| {})?;
            if c.keyframe_requests > kf_seen[i] {
                kf_seen[i] = c.keyframe_requests;
                scheds[i].key_wanted = true;
            }
            scheds[i].due(now, epoch, &mut pkts);
            for p in pkts.drain(..) {
                if p.stream == AUDIO {
                    c.send_audio(now, p.data, p.rtp_time, -30)?;
                } else if let Some(rid) = p.rid {
                    c.send_video(now, rid, p.data, p.marker, p.rtp_time)?;
                }
            }
        }
        relay_offers(&mut pubs, &mut events, &mut videos)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let ticks = thread_ticks("sfu-worker").saturating_sub(ticks0.unwrap_or(0));
    let fwd = rt.block_on(sfu.stats())?.rtp_forwarded.saturating_sub(fwd0);
    let wall = wall0.elapsed().as_secs_f64();
    let drain_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < drain_until {
        for (_, c) in pubs.iter_mut() {
            c.tick(&mut |_| {})?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut tally, pli, dropped, _sinks) =
        sink_thread.join().map_err(|_| "sink thread panicked")??;
    sfu.shutdown();
    // Every sink should get every measured audio and "f" packet of every publisher.
    let want: u64 = scheds
        .iter()
        .map(|s| s.measured[0] + s.measured[3])
        .sum::<u64>()
        * u64::from(args.subscribers);
    let got = tally.got_audio_f();
    let want_f: u64 =
        scheds.iter().map(|s| s.measured[3]).sum::<u64>() * u64::from(args.subscribers);
    Ok(SfuRun {
        forwarded: fwd,
        cpu_us: ticks as f64 * TICK_US,
        wall_s: wall,
        p50_ms: pct(&mut tally.lat_us, 0.5),
        p99_ms: pct(&mut tally.lat_us, 0.99),
        loss: 1.0 - got as f64 / want.max(1) as f64,
        dropped,
        video_missing: tally.rtp_video_missing(),
        f_missing: want_f.saturating_sub(tally.got_f()),
        pli_to_key_ms: pli,
        received: tally.packets,
        duplicates: tally.duplicates,
    })
}

fn num(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!((x * 1000.0).round() / 1000.0)
    } else {
        serde_json::Value::Null
    }
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let fanout = args.publishers + args.subscribers - 1;
    eprintln!("floor: str0m SRTP in-process…");
    let srtp = floor_srtp()?;
    eprintln!(
        "  send {:.3} µs, receive {:.3} µs per packet",
        srtp.send_us, srtp.recv_us
    );
    eprintln!(
        "floor: raw UDP relay, {} publishers → fan-out {fanout}, {} s…",
        args.publishers, args.secs
    );
    let relay = floor_relay(&args)?;
    eprintln!(
        "  {:.3} µs per forwarded packet ({} forwarded)",
        relay.us_per_forwarded, relay.forwarded
    );
    eprintln!(
        "sfu: {} publishers, {} subscribers, {} s…",
        args.publishers, args.subscribers, args.secs
    );
    let run = run_sfu(&args, 47_400, None)?;
    let sfu_us = run.cpu_us / run.forwarded.max(1) as f64;
    eprintln!(
        "  {:.3} µs per forwarded packet ({} forwarded)",
        sfu_us, run.forwarded
    );
    eprintln!("nack: 2% of video datagrams dropped towards each sink…");
    let nack = run_sfu(&args, 47_600, Some(50))?;
    let recovered = if nack.dropped == 0 {
        f64::NAN
    } else {
        (nack.dropped.saturating_sub(nack.video_missing)) as f64 / nack.dropped as f64
    };
    let floor_us = relay.us_per_forwarded + srtp.send_us + srtp.recv_us / f64::from(fanout.max(1));
    let mut pli = run.pli_to_key_ms.clone();
    pli.sort_by(f64::total_cmp);
    let pli_p50 = pli.get(pli.len() / 2).copied().unwrap_or(f64::NAN);
    let out = serde_json::json!({
        "command": "cargo run --release -p copains-sfu --bin sfu-load",
        "scenario": {
            "publishers": args.publishers,
            "subscribers": args.subscribers,
            "fanout": fanout,
            "seconds": args.secs,
            "sfu_workers": 1,
            "bwe": args.bwe,
            "media": "audio 50 pps x 100 B; VP8 simulcast 30 fps: f 5-8 x 1100 B, h 2 x 1000 B, q 1 x 600 B; key frame every 3 s or on PLI; subscribers focus every camera (f layer)",
            "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "floor": {
            "relay_us_per_forwarded_packet": num(relay.us_per_forwarded),
            "relay_forwarded_packets": relay.forwarded,
            "relay_latency_p50_ms": num(relay.p50_ms),
            "relay_latency_p99_ms": num(relay.p99_ms),
            "relay_loss": num(relay.loss),
            "srtp_send_us_per_packet": num(srtp.send_us),
            "srtp_receive_us_per_packet": num(srtp.recv_us),
            "srtp_packets_measured": srtp.packets,
            "floor_us_per_forwarded_packet": num(floor_us),
            "definition": "relay (recvmmsg+sendmmsg, CPU of the relay thread / copies sent) + SRTP send per copy + SRTP receive / fan-out",
        },
        "sfu_us_per_forwarded_packet": num(sfu_us),
        "sfu_forwarded_packets": run.forwarded,
        "sfu_vs_floor_ratio": num(sfu_us / floor_us),
        "forwarded_pps": num(run.forwarded as f64 / run.wall_s),
        "forwarded_pps_per_core": num(run.forwarded as f64 / (run.cpu_us / 1e6)),
        "latency_p50_ms": num(run.p50_ms),
        "latency_p99_ms": num(run.p99_ms),
        "added_latency_p50_ms": num(run.p50_ms - relay.p50_ms),
        "added_latency_p99_ms": num(run.p99_ms - relay.p99_ms),
        "loss": num(run.loss),
        "received_packets": run.received,
        "duplicate_packets": run.duplicates,
        "nack_injected_loss": 0.02,
        "nack_dropped_datagrams": nack.dropped,
        "nack_video_missing_after_recovery": nack.video_missing,
        "nack_f_layer_packets_not_received": nack.f_missing,
        "nack_recovered_share": num(recovered),
        "nack_definition": "1 - (gaps left in the RTP sequence of every video stream the sinks received) / (video-size datagrams dropped before str0m, retransmissions included)",
        "nack_run_loss": num(nack.loss),
        "pli_to_keyframe_ms_p50": num(pli_p50),
        "pli_to_keyframe_samples": pli.len(),
        "notes": "CPU from /proc/self/task/<tid>/stat (10 ms ticks). Latency is publisher write → sink receive in one process on loopback (both sides' str0m, the SFU, and the client loops' 0.2-1 ms polling); added latency subtracts the raw relay's. The machine is shared: figures vary between runs.",
    });
    let mut out = out;
    // The same load without BWE (no pacer, layers from the configured bitrate only): shows
    // what str0m's BWE and pacing cost in CPU and latency.
    eprintln!("sfu without BWE…");
    let nb = run_sfu(
        &Args {
            bwe: false,
            ..args.clone()
        },
        48_700,
        None,
    )?;
    out["sfu_without_bwe"] = serde_json::json!({
        "sfu_us_per_forwarded_packet": num(nb.cpu_us / nb.forwarded.max(1) as f64),
        "sfu_vs_floor_ratio": num(nb.cpu_us / nb.forwarded.max(1) as f64 / floor_us),
        "latency_p50_ms": num(nb.p50_ms),
        "latency_p99_ms": num(nb.p99_ms),
        "loss": num(nb.loss),
    });
    if args.scenarios {
        // (a) a voice channel: 4 speakers, 25 listeners, audio only.
        let a = Args {
            publishers: 4,
            subscribers: 25,
            video: false,
            ..args.clone()
        };
        eprintln!("scenario (a): 4 speakers, 25 listeners, audio only…");
        let ra = run_sfu(&a, 47_800, None)?;
        out["scenario_a_voice_4x25"] = serde_json::json!({
            "sfu_us_per_forwarded_packet": num(ra.cpu_us / ra.forwarded.max(1) as f64),
            "forwarded_pps": num(ra.forwarded as f64 / ra.wall_s),
            "latency_p50_ms": num(ra.p50_ms),
            "latency_p99_ms": num(ra.p99_ms),
            "loss": num(ra.loss),
        });
        // (c) one publisher to N subscribers, N rising until loss > 0.1% or p99 > 20 ms.
        let mut steps = Vec::new();
        let mut last_ok = 0;
        for (k, n) in [5u32, 10, 20, 40, 80, 120].into_iter().enumerate() {
            let c = Args {
                publishers: 1,
                subscribers: n,
                secs: args.secs.min(5),
                video: true,
                ..args.clone()
            };
            eprintln!("scenario (c): 1 publisher → {n} subscribers…");
            let rc = run_sfu(&c, 48_000 + 100 * k as u16, None)?;
            let ok = rc.loss <= 0.001 && rc.p99_ms <= 20.0;
            steps.push(serde_json::json!({
                "subscribers": n,
                "loss": num(rc.loss),
                "latency_p99_ms": num(rc.p99_ms),
                "sfu_us_per_forwarded_packet": num(rc.cpu_us / rc.forwarded.max(1) as f64),
                "forwarded_pps": num(rc.forwarded as f64 / rc.wall_s),
            }));
            if !ok {
                break;
            }
            last_ok = n;
        }
        out["scenario_c_ramp"] = serde_json::json!({
            "steps": steps,
            "max_subscribers_within_limits": last_ok,
            "limits": "loss <= 0.1% and p99 <= 20 ms; clients run in the same process on the same 2 shared cores, so the clients' own cost limits N as much as the SFU",
        });
    }
    let text = serde_json::to_string_pretty(&out)?;
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text)?;
    println!("{text}");
    Ok(())
}
