//! Pure forwarding logic shared by the [`Room`](crate::room::Room): no str0m state, no IO.
//!
//! - [`Layer`] and [`ViewSize`]: simulcast layers ("q", "h", "f") and what a subscriber asked for;
//! - [`choose_layers`]: the layer per subscribed video track from a bandwidth estimate;
//! - [`Rebaser`]: rewrites sequence numbers and RTP timestamps so a subscriber sees one
//!   continuous stream across layer switches and mutes (the payload is never touched);
//! - [`vp8_is_keyframe`]: reads the clear VP8 payload descriptor (E2EE leaves it clear);
//! - [`Throttle`]: at most one keyframe request per interval;
//! - [`SpeakerDetector`]: active speaker from the RFC 6464 audio level, smoothed.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One simulcast layer of a video track, lowest to highest quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Quarter resolution, rid "q".
    Q,
    /// Half resolution, rid "h".
    H,
    /// Full resolution, rid "f".
    F,
}

impl Layer {
    /// All layers, lowest first.
    pub const ALL: [Layer; 3] = [Layer::Q, Layer::H, Layer::F];

    /// The RTP stream id (rid) of this layer.
    pub fn rid(self) -> &'static str {
        match self {
            Layer::Q => "q",
            Layer::H => "h",
            Layer::F => "f",
        }
    }

    /// The layer for a rid, if it is one of ours.
    pub fn from_rid(rid: &str) -> Option<Layer> {
        match rid {
            "q" => Some(Layer::Q),
            "h" => Some(Layer::H),
            "f" => Some(Layer::F),
            _ => None,
        }
    }
}

/// How large a subscriber shows a video track; caps the layer it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewSize {
    /// Not shown: nothing is forwarded.
    Hidden,
    /// A tile in a grid: at most [`Layer::H`].
    Tile,
    /// The focused (large) view: up to [`Layer::F`].
    Focus,
}

impl ViewSize {
    /// The highest layer this size may receive (`None` for hidden).
    pub fn cap(self) -> Option<Layer> {
        match self {
            ViewSize::Hidden => None,
            ViewSize::Tile => Some(Layer::H),
            ViewSize::Focus => Some(Layer::F),
        }
    }
}

/// Nominal bitrates (bits/s) of the three layers, used to fit layers into an estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerBitrates {
    /// Bitrate of "q".
    pub q: u64,
    /// Bitrate of "h".
    pub h: u64,
    /// Bitrate of "f".
    pub f: u64,
}

impl Default for LayerBitrates {
    fn default() -> Self {
        // Close to what browsers send for 320x180 / 640x360 / 1280x720 VP8 simulcast.
        LayerBitrates {
            q: 150_000,
            h: 500_000,
            f: 1_500_000,
        }
    }
}

impl LayerBitrates {
    /// Nominal bitrate of one layer.
    pub fn of(&self, layer: Layer) -> u64 {
        match layer {
            Layer::Q => self.q,
            Layer::H => self.h,
            Layer::F => self.f,
        }
    }
}

/// One subscribed video track as seen by [`choose_layers`].
#[derive(Debug, Clone, Copy)]
pub struct LayerWant {
    /// The size the subscriber asked for.
    pub size: ViewSize,
    /// Layers the publisher is currently sending (bit i set = `Layer::ALL[i]` active).
    /// A track without simulcast has only its single stream, reported as `Q`.
    pub active: [bool; 3],
}

/// Chooses a layer for each wanted track from a bandwidth `estimate` (bits/s).
///
/// Focused tracks are served first, then tiles. Every shown track gets at least its lowest
/// active layer (a frozen picture is worse than a soft one); the remaining budget upgrades
/// tracks one at a time up to their size cap. Layers the publisher is not sending are
/// never chosen. Returns `None` for hidden tracks or tracks with no active layer.
pub fn choose_layers(
    estimate: u64,
    wants: &[LayerWant],
    rates: &LayerBitrates,
) -> Vec<Option<Layer>> {
    let mut out: Vec<Option<Layer>> = wants
        .iter()
        .map(|w| {
            w.size.cap()?;
            Layer::ALL.iter().copied().find(|l| w.active[*l as usize])
        })
        .collect();
    let mut budget: i64 = estimate as i64;
    for l in out.iter().flatten() {
        budget -= rates.of(*l) as i64;
    }
    // Upgrade focus first, then tiles.
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|i| match wants[*i].size {
        ViewSize::Focus => 0,
        _ => 1,
    });
    for i in order {
        let (Some(cur), Some(cap)) = (out[i], wants[i].size.cap()) else {
            continue;
        };
        let mut best = cur;
        for l in Layer::ALL {
            if l > cur && l <= cap && wants[i].active[l as usize] {
                let extra = rates.of(l) as i64 - rates.of(cur) as i64;
                if extra <= budget {
                    best = l;
                }
            }
        }
        budget -= rates.of(best) as i64 - rates.of(cur) as i64;
        out[i] = Some(best);
    }
    out
}

/// Rewrites the sequence numbers and RTP timestamps of one outgoing stream.
///
/// The subscriber must see one continuous stream even when the SFU switches between
/// simulcast layers (each with its own sequence and timestamp space) or drops a muted
/// participant's audio. Within one source the mapping is a fixed offset, so gaps (loss on
/// the publisher leg) stay gaps and a late retransmission lands on its right number.
/// Outgoing sequence numbers start below 65 536, as str0m requires without ROC signalling.
#[derive(Debug, Clone)]
pub struct Rebaser {
    seq_offset: i64,
    ts_offset: u32,
    /// Incoming extended sequence number at the last rebase: older packets are dropped.
    base_in_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    needs_rebase: bool,
    clock_rate: u32,
}

impl Rebaser {
    /// A rebaser for a stream with the given RTP clock rate (48 000 Opus, 90 000 video).
    pub fn new(clock_rate: u32) -> Self {
        Rebaser {
            seq_offset: 0,
            ts_offset: 0,
            base_in_seq: 0,
            last_out_seq: 0,
            last_out_ts: rand::random::<u32>(),
            last_out_at: None,
            needs_rebase: true,
            clock_rate,
        }
    }

    /// The next packet passed to [`Rebaser::map`] starts a new source (layer switch, unmute).
    pub fn rebase_next(&mut self) {
        self.needs_rebase = true;
    }

    /// Maps an incoming (extended sequence number, RTP timestamp) to the outgoing pair,
    /// or `None` if the packet predates the current source and must be dropped.
    pub fn map(&mut self, now: Instant, in_seq: u64, in_ts: u32) -> Option<(u64, u32)> {
        if self.needs_rebase {
            self.needs_rebase = false;
            let next_seq = self.last_out_seq + 1;
            self.seq_offset = next_seq as i64 - in_seq as i64;
            let elapsed = self
                .last_out_at
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or(Duration::ZERO);
            let ticks = (elapsed.as_secs_f64() * self.clock_rate as f64) as u32;
            let next_ts = self.last_out_ts.wrapping_add(ticks.max(1));
            self.ts_offset = next_ts.wrapping_sub(in_ts);
            self.base_in_seq = in_seq;
        } else if in_seq < self.base_in_seq {
            return None;
        }
        let out_seq = (in_seq as i64 + self.seq_offset).max(1) as u64;
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if out_seq > self.last_out_seq {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }
}

/// True if this VP8 RTP payload starts a key frame (RFC 7741 §4.2–4.3).
///
/// Only the payload descriptor and the first byte of the VP8 payload header are read; both
/// stay in the clear under the project's SFrame scheme. Malformed input returns `false`.
pub fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&b1) = payload.get(1) else {
            return false;
        };
        i = 2;
        if b1 & 0x80 != 0 {
            // I: picture id, 7 or 15 bits.
            let Some(&p) = payload.get(i) else {
                return false;
            };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if b1 & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if b1 & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    match payload.get(i) {
        // P bit (bit 0) clear = key frame.
        Some(h) => h & 0x01 == 0,
        None => false,
    }
}

/// Lets an action through at most once per `interval` per key.
#[derive(Debug)]
pub struct Throttle<K> {
    interval: Duration,
    last: HashMap<K, Instant>,
}

impl<K: Hash + Eq> Throttle<K> {
    /// A throttle with the given minimum interval.
    pub fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: HashMap::new(),
        }
    }

    /// True (and records `now`) if `key` has not passed within the interval.
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        match self.last.get(&key) {
            Some(t) if now.saturating_duration_since(*t) < self.interval => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }

    /// Forgets every key matching `f` (e.g. the tracks of a participant who left).
    pub fn forget(&mut self, mut f: impl FnMut(&K) -> bool) {
        self.last.retain(|k, _| !f(k));
    }
}

/// Tunables of the [`SpeakerDetector`].
#[derive(Debug, Clone, Copy)]
pub struct SpeakerConfig {
    /// Smoothing weight of a new sample (0..1).
    pub alpha: f32,
    /// Minimum smoothed loudness (0 = silence, 127 = 0 dBov) to count as speaking.
    pub threshold: f32,
    /// How often the active speaker is re-evaluated.
    pub tick: Duration,
    /// Consecutive ticks a new loudest participant needs before being announced.
    pub hold_ticks: u32,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            alpha: 0.15,
            // -50 dBov and louder.
            threshold: 77.0,
            tick: Duration::from_millis(200),
            hold_ticks: 2,
        }
    }
}

/// Active speaker detection from RFC 6464 audio levels (exponential smoothing + hysteresis).
#[derive(Debug)]
pub struct SpeakerDetector<P> {
    config: SpeakerConfig,
    levels: HashMap<P, (f32, bool)>,
    active: Option<P>,
    candidate: Option<(P, u32)>,
}

impl<P: Hash + Eq + Copy> SpeakerDetector<P> {
    /// A detector with the given tunables.
    pub fn new(config: SpeakerConfig) -> Self {
        SpeakerDetector {
            config,
            levels: HashMap::new(),
            active: None,
            candidate: None,
        }
    }

    /// The tunables in use.
    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    /// Records one audio packet's level (`-127..=0` dBov as carried by str0m; positive values
    /// are clamped).
    pub fn sample(&mut self, who: P, dbov: i8) {
        let loud = (127 + i32::from(dbov.min(0))).clamp(0, 127) as f32;
        let a = self.config.alpha;
        let e = self.levels.entry(who).or_insert((0.0, false));
        e.0 = e.0 * (1.0 - a) + loud * a;
        e.1 = true;
    }

    /// Forgets a participant; returns true if they were the active speaker.
    pub fn remove(&mut self, who: P) -> bool {
        self.levels.remove(&who);
        if self.candidate.map(|c| c.0) == Some(who) {
            self.candidate = None;
        }
        if self.active == Some(who) {
            self.active = None;
            return true;
        }
        false
    }

    /// The current active speaker.
    pub fn active(&self) -> Option<P> {
        self.active
    }

    /// Re-evaluates; returns `Some(new)` when the active speaker changed (`Some(None)`: silence).
    pub fn tick(&mut self) -> Option<Option<P>> {
        // Participants without packets since the last tick (DTX, muted) fade out.
        for (lvl, fresh) in self.levels.values_mut() {
            if !*fresh {
                *lvl *= 0.5;
            }
            *fresh = false;
        }
        let loudest = self
            .levels
            .iter()
            .filter(|(_, (l, _))| *l >= self.config.threshold)
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
            .map(|(p, _)| *p);
        if loudest == self.active {
            self.candidate = None;
            return None;
        }
        let Some(next) = loudest else {
            // Everyone is below the threshold: keep the last speaker until they fade.
            let still = self
                .active
                .and_then(|a| self.levels.get(&a))
                .is_some_and(|(l, _)| *l >= self.config.threshold / 2.0);
            if still {
                return None;
            }
            self.active = None;
            self.candidate = None;
            return Some(None);
        };
        let count = match self.candidate {
            Some((c, n)) if c == next => n + 1,
            _ => 1,
        };
        if count >= self.config.hold_ticks {
            self.active = Some(next);
            self.candidate = None;
            Some(Some(next))
        } else {
            self.candidate = Some((next, count));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(size: ViewSize) -> LayerWant {
        LayerWant {
            size,
            active: [true, true, true],
        }
    }

    #[test]
    fn layers_follow_estimate_and_size() {
        let r = LayerBitrates::default();
        let w = [want(ViewSize::Focus), want(ViewSize::Tile)];
        assert_eq!(
            choose_layers(100_000, &w, &r),
            vec![Some(Layer::Q), Some(Layer::Q)]
        );
        assert_eq!(
            choose_layers(700_000, &w, &r),
            vec![Some(Layer::H), Some(Layer::Q)]
        );
        assert_eq!(
            choose_layers(5_000_000, &w, &r),
            vec![Some(Layer::F), Some(Layer::H)]
        );
        let hidden = [want(ViewSize::Hidden)];
        assert_eq!(choose_layers(5_000_000, &hidden, &r), vec![None]);
        let partial = [LayerWant {
            size: ViewSize::Focus,
            active: [true, true, false],
        }];
        assert_eq!(choose_layers(5_000_000, &partial, &r), vec![Some(Layer::H)]);
    }

    #[test]
    fn rebaser_is_continuous_across_switches() {
        let t0 = Instant::now();
        let mut r = Rebaser::new(90_000);
        let (s1, ts1) = r.map(t0, 70_000, 1000).unwrap();
        assert!(s1 < 65_536);
        let (s2, ts2) = r.map(t0, 70_001, 4000).unwrap();
        assert_eq!((s2, ts2), (s1 + 1, ts1.wrapping_add(3000)));
        // A gap stays a gap.
        let (s4, _) = r.map(t0, 70_003, 4000).unwrap();
        assert_eq!(s4, s1 + 3);
        r.rebase_next();
        let t1 = t0 + Duration::from_millis(100);
        let (s5, ts5) = r.map(t1, 5, 77).unwrap();
        assert_eq!(s5, s4 + 1);
        assert_eq!(ts5, ts2.wrapping_add(9000));
        // Older than the new base: dropped.
        assert!(r.map(t1, 4, 70).is_none());
    }

    #[test]
    fn vp8_keyframe_detection() {
        assert!(vp8_is_keyframe(&[0x10, 0x00]));
        assert!(!vp8_is_keyframe(&[0x10, 0x01]));
        assert!(!vp8_is_keyframe(&[0x00, 0x00]));
        // X with 15-bit picture id, then header.
        assert!(vp8_is_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!vp8_is_keyframe(&[0x90, 0x80, 0x81]));
        assert!(!vp8_is_keyframe(&[]));
    }

    #[test]
    fn throttle_once_per_interval() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(1));
        assert!(t.allow(1, t0));
        assert!(!t.allow(1, t0 + Duration::from_millis(999)));
        assert!(t.allow(2, t0));
        assert!(t.allow(1, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn speaker_needs_hold_and_fades() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        for _ in 0..30 {
            d.sample(1u64, -20);
            d.sample(2u64, -90);
        }
        assert_eq!(d.tick(), None);
        for _ in 0..5 {
            d.sample(1, -20);
        }
        assert_eq!(d.tick(), Some(Some(1)));
        for _ in 0..60 {
            d.sample(2, -10);
            d.sample(1, -100);
        }
        assert_eq!(d.tick(), None);
        d.sample(2, -10);
        d.sample(1, -100);
        assert_eq!(d.tick(), Some(Some(2)));
        // Silence fades out.
        let mut changed = None;
        for _ in 0..10 {
            if let Some(c) = d.tick() {
                changed = Some(c);
            }
        }
        assert_eq!(changed, Some(None));
    }
}
