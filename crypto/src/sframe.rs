//! SFrame (RFC 9605) media-frame encryption with cipher suite `AES_128_GCM_SHA256_128`
//! (0x0004), pure-Rust `aes-gcm` so the same code runs in the browser through wasm.
//!
//! - **Keys.** Each participant sends a random *base key* (32 bytes) to the call over Olm.
//!   Key ids follow RFC 9605 §5.1: `KID = (generation << R) | (ratchet_step mod 2^R)` with
//!   `R =` [`RATCHET_BITS`]. A new base key (someone left) is a new generation; a ratchet
//!   step is `base[i+1] = HKDF-Expand(HKDF-Extract("", base[i]), "SFrame 1.0 Ratchet", 32)`.
//! - **Nonces** are `sframe_salt XOR counter` with a per-key counter (RFC 9605 §4.4.3).
//! - **Frame layout.** `clear_prefix || sframe_header || ciphertext || tag`; the AAD is
//!   `sframe_header || clear_prefix`, so the prefix the SFU reads is authenticated.
//!   The prefix is codec-aware ([`Codec`]): VP8 keeps 10 bytes on key frames and 3 on
//!   delta frames (detected from the VP8 frame tag's P bit), Opus keeps its TOC byte.
//! - **Receivers** keep a bounded set of generations; a superseded generation stays
//!   usable for a grace window measured on the `now_ms` the caller passes in.

use std::collections::VecDeque;

use aes_gcm::{
    AeadInOut, Aes128Gcm, KeyInit,
    aead::{Nonce, Tag},
};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The RFC 9605 cipher suite id used: AES_128_GCM_SHA256_128.
pub const CIPHER_SUITE: u16 = 0x0004;
/// Low-order KID bits holding the ratchet step (`R` in RFC 9605 §5.1).
pub const RATCHET_BITS: u32 = 4;
/// Length of a base key, in bytes (the hash length `Nh` of SHA-256).
pub const BASE_KEY_LEN: usize = 32;
/// Largest frame accepted, in bytes.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Key generations a receiver keeps per sender (current plus those in their grace window).
pub const MAX_GENERATIONS: usize = 4;
/// Default grace window for a superseded key, in milliseconds.
pub const DEFAULT_GRACE_MS: u64 = 10_000;
/// Longest SFrame header: 1 config byte + 8 KID bytes + 8 CTR bytes.
pub const MAX_HEADER_LEN: usize = 17;
const NK: usize = 16;
const NN: usize = 12;
const NT: usize = 16;
const RATCHET_WINDOW: u64 = 1 << RATCHET_BITS;
const MAX_PREFIX: usize = 10;

/// Errors of the SFrame module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SframeError {
    /// The frame is shorter than its header and tag, or its header is malformed.
    #[error("malformed SFrame: {0}")]
    Malformed(&'static str),
    /// The frame is larger than [`MAX_FRAME_LEN`].
    #[error("frame too large: {0} bytes")]
    TooLarge(usize),
    /// No key is known for this KID (unknown generation, or too far ahead in the ratchet).
    #[error("no key for KID {0:#x}")]
    UnknownKey(u64),
    /// The key for this KID was superseded and its grace window is over.
    #[error("the key for KID {0:#x} has expired")]
    KeyExpired(u64),
    /// This frame counter was already received under this key (or is older than the
    /// replay window).
    #[error("replayed frame (counter {0})")]
    Replayed(u64),
    /// Authentication failed: tampered frame or wrong key.
    #[error("frame authentication failed (tampered or wrong key)")]
    Authentication,
    /// The base key has the wrong length.
    #[error("base key must be {BASE_KEY_LEN} bytes, got {0}")]
    BadKeyLength(usize),
    /// The key generation does not fit in `64 - R` bits.
    #[error("key generation {0} is too large")]
    GenerationTooLarge(u64),
    /// The per-key counter is exhausted (rotate the key).
    #[error("frame counter exhausted: rotate the key")]
    CounterExhausted,
    /// Unknown codec name.
    #[error("unknown codec \"{0}\" (expected vp8, opus or none)")]
    UnknownCodec(String),
}

/// Which codec a frame carries, deciding how many leading bytes stay in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// VP8: 10 bytes on key frames, 3 on delta frames.
    Vp8,
    /// Opus: the 1-byte TOC.
    Opus,
    /// Everything encrypted.
    None,
}

impl Codec {
    /// Parse `"vp8"`, `"opus"` or `"none"` (case-insensitive).
    pub fn parse(name: &str) -> Result<Self, SframeError> {
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Ok(Self::Vp8),
            "opus" => Ok(Self::Opus),
            "none" | "" => Ok(Self::None),
            _ => Err(SframeError::UnknownCodec(name.chars().take(32).collect())),
        }
    }

    /// Bytes of `frame` left in clear: never more than the frame itself.
    pub fn clear_prefix_len(self, frame: &[u8]) -> usize {
        let want = match self {
            // VP8 frame tag (RFC 6386 §9.1): bit 0 of byte 0 is the inverse key-frame flag.
            Self::Vp8 => match frame.first() {
                Some(b) if b & 0x01 == 0 => 10,
                _ => 3,
            },
            Self::Opus => 1,
            Self::None => 0,
        };
        want.min(frame.len())
    }
}

/// A parsed SFrame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Key id.
    pub kid: u64,
    /// Counter.
    pub ctr: u64,
}

fn min_len(v: u64) -> usize {
    ((64 - v.leading_zeros() as usize).div_ceil(8)).max(1)
}

/// Encode a header (RFC 9605 §4.3) into `out`, returning its length.
pub fn encode_header(h: Header, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let mut n = 1;
    let mut config = 0u8;
    if h.kid < 8 {
        config |= (h.kid as u8) << 4;
    } else {
        let len = min_len(h.kid);
        config |= 0x80 | (((len - 1) as u8) << 4);
        out[n..n + len].copy_from_slice(&h.kid.to_be_bytes()[8 - len..]);
        n += len;
    }
    if h.ctr < 8 {
        config |= h.ctr as u8;
    } else {
        let len = min_len(h.ctr);
        config |= 0x08 | ((len - 1) as u8);
        out[n..n + len].copy_from_slice(&h.ctr.to_be_bytes()[8 - len..]);
        n += len;
    }
    out[0] = config;
    n
}

/// Decode a header at the start of `buf`, returning it and its length.
pub fn decode_header(buf: &[u8]) -> Result<(Header, usize), SframeError> {
    let config = *buf.first().ok_or(SframeError::Malformed("empty frame"))?;
    let mut n = 1;
    let mut read = |extended: bool, bits: u8| -> Result<u64, SframeError> {
        if !extended {
            return Ok(u64::from(bits));
        }
        let len = usize::from(bits) + 1;
        let bytes = buf
            .get(n..n + len)
            .ok_or(SframeError::Malformed("truncated header"))?;
        n += len;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    let kid = read(config & 0x80 != 0, (config >> 4) & 0x07)?;
    let ctr = read(config & 0x08 != 0, config & 0x07)?;
    Ok((Header { kid, ctr }, n))
}

/// The AEAD key and salt for one KID, with the AES key schedule precomputed.
#[derive(Clone)]
pub struct FrameKey {
    kid: u64,
    cipher: Aes128Gcm,
    salt: [u8; NN],
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 9605 §4.4.2: derive `(sframe_key, sframe_salt)` for `kid` from a base key.
pub fn derive_key_salt(base_key: &[u8], kid: u64) -> (Zeroizing<[u8; NK]>, [u8; NN]) {
    let hk = Hkdf::<Sha256>::new(Some(&[]), base_key);
    let mut suffix = [0u8; 10];
    suffix[..8].copy_from_slice(&kid.to_be_bytes());
    suffix[8..].copy_from_slice(&CIPHER_SUITE.to_be_bytes());
    let mut key = Zeroizing::new([0u8; NK]);
    let mut salt = [0u8; NN];
    // Output lengths (16, 12) are far below the HKDF limit: expansion cannot fail.
    let _ = hk.expand_multi_info(&[b"SFrame 1.0 Secret key ", &suffix], key.as_mut());
    let _ = hk.expand_multi_info(&[b"SFrame 1.0 Secret salt ", &suffix], &mut salt);
    (key, salt)
}

/// RFC 9605 §5.1: the next base key in the ratchet.
pub fn ratchet_base_key(base_key: &[u8]) -> Zeroizing<[u8; BASE_KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(&[]), base_key);
    let mut next = Zeroizing::new([0u8; BASE_KEY_LEN]);
    let _ = hk.expand(b"SFrame 1.0 Ratchet", next.as_mut());
    next
}

impl FrameKey {
    /// Derive the key for `kid` from a base key (any length; RFC vectors use 16 bytes).
    pub fn derive(base_key: &[u8], kid: u64) -> Self {
        let (key, salt) = derive_key_salt(base_key, kid);
        Self {
            kid,
            cipher: Aes128Gcm::new(&(*key).into()),
            salt,
        }
    }

    /// The KID this key is for.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    fn nonce(&self, ctr: u64) -> Nonce<Aes128Gcm> {
        let mut n = self.salt;
        for (a, b) in n[NN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *a ^= b;
        }
        Nonce::<Aes128Gcm>::from(n)
    }

    /// Append `metadata(clear) || header || ciphertext || tag` to `out` for counter `ctr`,
    /// with AAD `header || metadata` (RFC 9605 §4.4.3, metadata = the clear prefix).
    pub fn seal_into(
        &self,
        ctr: u64,
        clear: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SframeError> {
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let hlen = encode_header(Header { kid: self.kid, ctr }, &mut hdr);
        let mut aad_buf = [0u8; MAX_HEADER_LEN + MAX_PREFIX];
        let aad: &[u8] = if clear.len() <= MAX_PREFIX {
            aad_buf[..hlen].copy_from_slice(&hdr[..hlen]);
            aad_buf[hlen..hlen + clear.len()].copy_from_slice(clear);
            &aad_buf[..hlen + clear.len()]
        } else {
            return Err(SframeError::Malformed("clear prefix too long"));
        };
        out.reserve(clear.len() + hlen + payload.len() + NT);
        out.extend_from_slice(clear);
        out.extend_from_slice(&hdr[..hlen]);
        let start = out.len();
        out.extend_from_slice(payload);
        let tag = self
            .cipher
            .encrypt_inout_detached(&self.nonce(ctr), aad, (&mut out[start..]).into())
            .map_err(|_| SframeError::TooLarge(payload.len()))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// RFC 9605 `encrypt` with explicit metadata: returns `header || ciphertext || tag`.
    pub fn seal_rfc(
        &self,
        ctr: u64,
        metadata: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SframeError> {
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let hlen = encode_header(Header { kid: self.kid, ctr }, &mut hdr);
        let mut aad = hdr[..hlen].to_vec();
        aad.extend_from_slice(metadata);
        let mut out = Vec::with_capacity(hlen + plaintext.len() + NT);
        out.extend_from_slice(&hdr[..hlen]);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&self.nonce(ctr), &aad, (&mut out[hlen..]).into())
            .map_err(|_| SframeError::TooLarge(plaintext.len()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// RFC 9605 `decrypt` with explicit metadata, for an SFrame `header || ct || tag`.
    pub fn open_rfc(&self, metadata: &[u8], sframe: &[u8]) -> Result<Vec<u8>, SframeError> {
        let (h, hlen) = decode_header(sframe)?;
        if h.kid != self.kid {
            return Err(SframeError::UnknownKey(h.kid));
        }
        let mut aad = sframe[..hlen].to_vec();
        aad.extend_from_slice(metadata);
        self.open_body(h.ctr, &aad, &sframe[hlen..])
    }

    fn open_body(&self, ctr: u64, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SframeError> {
        if body.len() < NT {
            return Err(SframeError::Malformed("shorter than the tag"));
        }
        let (ct, tag) = body.split_at(body.len() - NT);
        let tag = Tag::<Aes128Gcm>::try_from(tag).map_err(|_| SframeError::Malformed("tag"))?;
        let mut buf = ct.to_vec();
        self.cipher
            .decrypt_inout_detached(&self.nonce(ctr), aad, buf.as_mut_slice().into(), &tag)
            .map_err(|_| SframeError::Authentication)?;
        Ok(buf)
    }
}

fn make_kid(generation: u64, step: u64) -> u64 {
    (generation << RATCHET_BITS) | (step & (RATCHET_WINDOW - 1))
}

fn check_generation(generation: u64) -> Result<(), SframeError> {
    if generation >> (64 - RATCHET_BITS) != 0 {
        Err(SframeError::GenerationTooLarge(generation))
    } else {
        Ok(())
    }
}

fn check_base_key(base_key: &[u8]) -> Result<Zeroizing<[u8; BASE_KEY_LEN]>, SframeError> {
    let arr: [u8; BASE_KEY_LEN] = base_key
        .try_into()
        .map_err(|_| SframeError::BadKeyLength(base_key.len()))?;
    Ok(Zeroizing::new(arr))
}

/// Generate a random base key to send to the call's participants over Olm.
pub fn generate_base_key() -> Result<[u8; BASE_KEY_LEN], crate::util::UtilError> {
    crate::util::random_array()
}

/// The sending side: encrypts this participant's frames.
pub struct FrameSender {
    generation: u64,
    step: u64,
    base_key: Zeroizing<[u8; BASE_KEY_LEN]>,
    key: FrameKey,
    counter: u64,
}

impl std::fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSender")
            .field("generation", &self.generation)
            .field("step", &self.step)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl FrameSender {
    /// A sender using `base_key` (32 bytes) as key generation `generation`.
    pub fn new(generation: u64, base_key: &[u8]) -> Result<Self, SframeError> {
        check_generation(generation)?;
        let base_key = check_base_key(base_key)?;
        let key = FrameKey::derive(base_key.as_ref(), make_kid(generation, 0));
        Ok(Self {
            generation,
            step: 0,
            base_key,
            key,
            counter: 0,
        })
    }

    /// Switch to a new base key (e.g. after someone left); counters restart.
    pub fn set_key(&mut self, generation: u64, base_key: &[u8]) -> Result<(), SframeError> {
        *self = Self::new(generation, base_key)?;
        Ok(())
    }

    /// Ratchet the base key forward one step (forward secrecy without a new key exchange).
    pub fn ratchet(&mut self) {
        self.base_key = ratchet_base_key(self.base_key.as_ref());
        self.step = self.step.wrapping_add(1);
        self.key = FrameKey::derive(self.base_key.as_ref(), make_kid(self.generation, self.step));
        self.counter = 0;
    }

    /// The KID frames are currently sent under.
    pub fn kid(&self) -> u64 {
        self.key.kid
    }

    /// Encrypt a frame, appending the result to `out` (reuse `out` to avoid allocation).
    pub fn encrypt_into(
        &mut self,
        codec: Codec,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SframeError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(SframeError::TooLarge(frame.len()));
        }
        let ctr = self.counter;
        self.counter = ctr.checked_add(1).ok_or(SframeError::CounterExhausted)?;
        let split = codec.clear_prefix_len(frame);
        self.key
            .seal_into(ctr, &frame[..split], &frame[split..], out)
    }

    /// Encrypt a frame into a new buffer.
    pub fn encrypt(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, SframeError> {
        let mut out = Vec::new();
        self.encrypt_into(codec, frame, &mut out)?;
        Ok(out)
    }
}

/// Sliding replay window over frame counters (like SRTP's): the highest counter seen and
/// a bitmap of the [`REPLAY_WINDOW`] counters below it.
#[derive(Default)]
struct ReplayWindow {
    highest: Option<u64>,
    /// Bit i set = counter `highest - i` was seen.
    bits: u128,
}

/// Frame counters tracked per key for replay detection; older frames are refused.
pub const REPLAY_WINDOW: u64 = 128;

impl ReplayWindow {
    fn fresh(&self, ctr: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if ctr > h => true,
            Some(h) => {
                let back = h - ctr;
                back < REPLAY_WINDOW && self.bits & (1u128 << back) == 0
            }
        }
    }

    fn mark(&mut self, ctr: u64) {
        match self.highest {
            None => {
                self.highest = Some(ctr);
                self.bits = 1;
            }
            Some(h) if ctr > h => {
                let shift = ctr - h;
                self.bits = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.bits << shift
                };
                self.bits |= 1;
                self.highest = Some(ctr);
            }
            Some(h) => {
                let back = h - ctr;
                if back < REPLAY_WINDOW {
                    self.bits |= 1u128 << back;
                }
            }
        }
    }
}

struct Generation {
    generation: u64,
    /// Ratchet position of `base_key`.
    step: u64,
    base_key: Zeroizing<[u8; BASE_KEY_LEN]>,
    /// Derived keys for recent steps (at most 2^R), newest last.
    keys: VecDeque<(u64, FrameKey, ReplayWindow)>,
    /// When this generation was superseded, if it was.
    retired_at_ms: Option<u64>,
}

/// The receiving side for one remote sender: a bounded set of key generations.
pub struct FrameReceiver {
    generations: VecDeque<Generation>,
    grace_ms: u64,
}

impl std::fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gens: Vec<u64> = self.generations.iter().map(|g| g.generation).collect();
        f.debug_struct("FrameReceiver")
            .field("generations", &gens)
            .finish_non_exhaustive()
    }
}

impl Default for FrameReceiver {
    fn default() -> Self {
        Self::new(DEFAULT_GRACE_MS)
    }
}

impl FrameReceiver {
    /// A receiver keeping superseded keys for `grace_ms` after a newer one is added.
    pub fn new(grace_ms: u64) -> Self {
        Self {
            generations: VecDeque::new(),
            grace_ms,
        }
    }

    /// Number of key generations held.
    pub fn generations(&self) -> usize {
        self.generations.len()
    }

    /// Add (or replace) the sender's base key for `generation` at time `now_ms`; older
    /// generations enter their grace window and expired ones are dropped.
    pub fn add_key(
        &mut self,
        generation: u64,
        base_key: &[u8],
        now_ms: u64,
    ) -> Result<(), SframeError> {
        check_generation(generation)?;
        let base_key = check_base_key(base_key)?;
        self.generations.retain(|g| g.generation != generation);
        for g in &mut self.generations {
            g.retired_at_ms.get_or_insert(now_ms);
        }
        self.expire(now_ms);
        let mut keys = VecDeque::new();
        let kid0 = make_kid(generation, 0);
        keys.push_back((
            kid0,
            FrameKey::derive(base_key.as_ref(), kid0),
            ReplayWindow::default(),
        ));
        self.generations.push_back(Generation {
            generation,
            step: 0,
            base_key,
            keys,
            retired_at_ms: None,
        });
        while self.generations.len() > MAX_GENERATIONS {
            self.generations.pop_front();
        }
        Ok(())
    }

    /// Drop generations whose grace window ended before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let grace = self.grace_ms;
        self.generations.retain(|g| {
            g.retired_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) <= grace)
        });
    }

    /// Decrypt a frame produced by [`FrameSender`] for `codec`, at time `now_ms`.
    /// Returns `clear_prefix || plaintext`.
    pub fn decrypt(
        &mut self,
        codec: Codec,
        frame: &[u8],
        now_ms: u64,
    ) -> Result<Vec<u8>, SframeError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(SframeError::TooLarge(frame.len()));
        }
        let split = codec.clear_prefix_len(frame);
        let (clear, rest) = frame.split_at(split);
        let (h, hlen) = decode_header(rest)?;
        let mut aad = [0u8; MAX_HEADER_LEN + MAX_PREFIX];
        aad[..hlen].copy_from_slice(&rest[..hlen]);
        aad[hlen..hlen + clear.len()].copy_from_slice(clear);
        let aad = &aad[..hlen + clear.len()];
        let body = &rest[hlen..];

        let generation = h.kid >> RATCHET_BITS;
        let low = h.kid & (RATCHET_WINDOW - 1);
        let grace = self.grace_ms;
        let g = self
            .generations
            .iter_mut()
            .find(|g| g.generation == generation)
            .ok_or(SframeError::UnknownKey(h.kid))?;
        if g.retired_at_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > grace)
        {
            return Err(SframeError::KeyExpired(h.kid));
        }
        let plaintext =
            if let Some((_, key, window)) = g.keys.iter_mut().find(|(k, _, _)| *k == h.kid) {
                if !window.fresh(h.ctr) {
                    return Err(SframeError::Replayed(h.ctr));
                }
                let pt = key.open_body(h.ctr, aad, body)?;
                window.mark(h.ctr);
                pt
            } else {
                // A ratchet step ahead of ours: step forward at most 2^R - 1 times, and only
                // keep the new state if the frame authenticates.
                let ahead = low.wrapping_sub(g.step) & (RATCHET_WINDOW - 1);
                if ahead == 0 {
                    return Err(SframeError::UnknownKey(h.kid));
                }
                let mut base = Zeroizing::new(*g.base_key);
                for _ in 0..ahead {
                    base = ratchet_base_key(base.as_ref());
                }
                let key = FrameKey::derive(base.as_ref(), h.kid);
                let pt = key.open_body(h.ctr, aad, body)?;
                g.base_key = base;
                g.step = g.step.wrapping_add(ahead);
                // Older steps whose low bits now alias newer ones must go.
                g.keys.retain(|(k, _, _)| *k != h.kid);
                let mut window = ReplayWindow::default();
                window.mark(h.ctr);
                g.keys.push_back((h.kid, key, window));
                while g.keys.len() > RATCHET_WINDOW as usize / 2 {
                    g.keys.pop_front();
                }
                pt
            };
        let mut out = Vec::with_capacity(clear.len() + plaintext.len());
        out.extend_from_slice(clear);
        out.extend_from_slice(&plaintext);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn codec_prefixes() {
        assert_eq!(
            Codec::Vp8.clear_prefix_len(&[0x10; 100]),
            10,
            "P bit 0 = key frame"
        );
        assert_eq!(Codec::Vp8.clear_prefix_len(&[0x11; 100]), 3);
        assert_eq!(Codec::Vp8.clear_prefix_len(&[0x10; 4]), 4);
        assert_eq!(Codec::Vp8.clear_prefix_len(&[]), 0);
        assert_eq!(Codec::Opus.clear_prefix_len(&[1, 2]), 1);
        assert_eq!(Codec::None.clear_prefix_len(&[1, 2]), 0);
        assert_eq!(Codec::parse("VP8").unwrap(), Codec::Vp8);
        assert!(Codec::parse("h265").is_err());
    }

    #[test]
    fn round_trip_each_codec_and_clear_prefix_is_visible() {
        let key = [5u8; 32];
        let mut tx = FrameSender::new(0, &key).unwrap();
        let mut rx = FrameReceiver::default();
        rx.add_key(0, &key, 0).unwrap();
        let mut keyframe = vec![0x10u8; 500];
        keyframe[3] = 0x9d;
        for (codec, frame, clear) in [
            (Codec::Vp8, keyframe.clone(), 10),
            (Codec::Vp8, vec![0x31u8; 300], 3),
            (Codec::Opus, vec![0x78u8; 80], 1),
            (Codec::None, vec![1u8; 50], 0),
        ] {
            let enc = tx.encrypt(codec, &frame).unwrap();
            assert_eq!(&enc[..clear], &frame[..clear], "prefix stays in clear");
            assert_ne!(&enc[clear + 2..clear + 20], &frame[clear..clear + 18]);
            assert_eq!(rx.decrypt(codec, &enc, 1).unwrap(), frame);
        }
    }

    #[test]
    fn tampered_prefix_or_body_and_wrong_key_fail() {
        let mut tx = FrameSender::new(0, &[1u8; 32]).unwrap();
        let mut rx = FrameReceiver::default();
        rx.add_key(0, &[1u8; 32], 0).unwrap();
        let frame = vec![0x11u8; 200];
        let enc = tx.encrypt(Codec::Vp8, &frame).unwrap();
        let mut bad = enc.clone();
        bad[1] ^= 1; // clear prefix byte: authenticated
        assert_eq!(
            rx.decrypt(Codec::Vp8, &bad, 0),
            Err(SframeError::Authentication)
        );
        let mut bad = enc.clone();
        bad[50] ^= 1;
        assert_eq!(
            rx.decrypt(Codec::Vp8, &bad, 0),
            Err(SframeError::Authentication)
        );
        let mut wrong = FrameReceiver::default();
        wrong.add_key(0, &[2u8; 32], 0).unwrap();
        assert_eq!(
            wrong.decrypt(Codec::Vp8, &enc, 0),
            Err(SframeError::Authentication)
        );
        let mut none = FrameReceiver::default();
        assert_eq!(
            none.decrypt(Codec::Vp8, &enc, 0),
            Err(SframeError::UnknownKey(0))
        );
        assert_eq!(rx.decrypt(Codec::Vp8, &enc, 0).unwrap(), frame);
        assert!(rx.decrypt(Codec::Vp8, &enc[..5], 0).is_err());
    }

    #[test]
    fn ratchet_is_followed_within_the_window() {
        let key = [3u8; 32];
        let mut tx = FrameSender::new(2, &key).unwrap();
        let mut rx = FrameReceiver::default();
        rx.add_key(2, &key, 0).unwrap();
        let f0 = tx.encrypt(Codec::Opus, b"frame zero").unwrap();
        tx.ratchet();
        tx.ratchet();
        tx.ratchet();
        assert_eq!(tx.kid(), (2 << RATCHET_BITS) | 3);
        let f3 = tx.encrypt(Codec::Opus, b"frame three").unwrap();
        assert_eq!(rx.decrypt(Codec::Opus, &f3, 0).unwrap(), b"frame three");
        // A late frame from the old step still decrypts from the cache.
        assert_eq!(rx.decrypt(Codec::Opus, &f0, 0).unwrap(), b"frame zero");
        // A garbage frame claiming a future step does not move the receiver.
        let mut fake = tx.encrypt(Codec::Opus, b"x").unwrap();
        let (h, _) = decode_header(&fake[1..]).unwrap();
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let n = encode_header(
            Header {
                kid: h.kid + 4,
                ctr: h.ctr,
            },
            &mut hdr,
        );
        fake.splice(1..1 + n, hdr[..n].iter().copied());
        assert_eq!(
            rx.decrypt(Codec::Opus, &fake, 0),
            Err(SframeError::Authentication)
        );
        tx.ratchet();
        let f4 = tx.encrypt(Codec::Opus, b"four").unwrap();
        assert_eq!(rx.decrypt(Codec::Opus, &f4, 0).unwrap(), b"four");
    }

    #[test]
    fn replayed_and_too_old_frames_are_refused() {
        let key = [6u8; 32];
        let mut tx = FrameSender::new(0, &key).unwrap();
        let mut rx = FrameReceiver::default();
        rx.add_key(0, &key, 0).unwrap();
        let frames: Vec<Vec<u8>> = (0..200)
            .map(|_| tx.encrypt(Codec::None, b"f").unwrap())
            .collect();
        assert!(rx.decrypt(Codec::None, &frames[5], 0).is_ok());
        assert_eq!(
            rx.decrypt(Codec::None, &frames[5], 0),
            Err(SframeError::Replayed(5))
        );
        // Out of order within the window is fine, once.
        assert!(rx.decrypt(Codec::None, &frames[2], 0).is_ok());
        assert_eq!(
            rx.decrypt(Codec::None, &frames[2], 0),
            Err(SframeError::Replayed(2))
        );
        assert!(rx.decrypt(Codec::None, &frames[199], 0).is_ok());
        // 199 - 3 >= 128: too old.
        assert_eq!(
            rx.decrypt(Codec::None, &frames[3], 0),
            Err(SframeError::Replayed(3))
        );
        assert!(rx.decrypt(Codec::None, &frames[100], 0).is_ok());
        // A tampered copy of an unseen frame does not burn its counter.
        let mut bad = frames[150].clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(
            rx.decrypt(Codec::None, &bad, 0),
            Err(SframeError::Authentication)
        );
        assert!(rx.decrypt(Codec::None, &frames[150], 0).is_ok());
    }

    #[test]
    fn old_generation_grace_window() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let mut tx = FrameSender::new(0, &k1).unwrap();
        let mut rx = FrameReceiver::new(10_000);
        rx.add_key(0, &k1, 0).unwrap();
        let old = tx.encrypt(Codec::None, b"old").unwrap();
        tx.set_key(1, &k2).unwrap();
        rx.add_key(1, &k2, 1_000).unwrap();
        let new = tx.encrypt(Codec::None, b"new").unwrap();
        assert_eq!(rx.decrypt(Codec::None, &new, 2_000).unwrap(), b"new");
        assert_eq!(rx.decrypt(Codec::None, &old, 11_000).unwrap(), b"old");
        assert_eq!(
            rx.decrypt(Codec::None, &old, 11_001),
            Err(SframeError::KeyExpired(0))
        );
        for g in 2..20 {
            rx.add_key(g, &k2, 12_000).unwrap();
        }
        assert!(rx.generations() <= MAX_GENERATIONS);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(
            FrameSender::new(0, &[0u8; 5]).err(),
            Some(SframeError::BadKeyLength(5))
        );
        assert_eq!(
            FrameSender::new(u64::MAX, &[0u8; 32]).err(),
            Some(SframeError::GenerationTooLarge(u64::MAX))
        );
        let mut rx = FrameReceiver::default();
        assert_eq!(
            rx.decrypt(Codec::None, &[], 0),
            Err(SframeError::Malformed("empty frame"))
        );
        assert_eq!(
            rx.decrypt(Codec::None, &[0xff], 0),
            Err(SframeError::Malformed("truncated header"))
        );
    }

    /// RFC 9605 Appendix C.1 header encodings (a selection covering every KID and CTR length).
    #[test]
    fn rfc9605_header_vectors() {
        let vectors: &[(u64, u64, &str)] = &[
            (0x0, 0x0, "00"),
            (0x0, 0x100, "090100"),
            (0xff, 0x0, "80ff"),
            (0x100, 0x100, "9901000100"),
            (0xffff, 0x100000000, "9cffff0100000000"),
            (0xffff, 0xffffffffff, "9cffffffffffffff"),
            (0xffff, 0x10000000000, "9dffff010000000000"),
            (0xffff, 0xffffffffffff, "9dffffffffffffffff"),
            (0xffff, 0x1000000000000, "9effff01000000000000"),
            (0xffff, 0xffffffffffffff, "9effffffffffffffffff"),
            (0xffff, 0x100000000000000, "9fffff0100000000000000"),
            (0xffff, 0xffffffffffffffff, "9fffffffffffffffffffff"),
            (0x10000, 0x0, "a0010000"),
            (0x10000, 0x1, "a1010000"),
            (0x10000, 0xff, "a8010000ff"),
            (0x10000, 0x100, "a90100000100"),
            (0x10000, 0xffff, "a9010000ffff"),
            (0x10000, 0x10000, "aa010000010000"),
            (0x10000, 0x1000000, "ab01000001000000"),
            (0x10000, 0x100000000, "ac0100000100000000"),
            (0xffffff, 0xffffffffffffffff, "afffffffffffffffffffffff"),
            (0x1000000, 0x0, "b001000000"),
            (0x1000000, 0xff, "b801000000ff"),
            (0x1000000, 0x100000000000000, "bf010000000100000000000000"),
            (0xffffffff, 0x1, "b1ffffffff"),
            (0xffffffff, 0xffffffffffffffff, "bfffffffffffffffffffffffff"),
            (0x100000000, 0x0, "c00100000000"),
            (0x100000000, 0x100, "c901000000000100"),
            (0xffffffffff, 0x10000, "caffffffffff010000"),
            (0x10000000000, 0x0, "d0010000000000"),
            (
                0x10000000000,
                0x1000000000000,
                "de01000000000001000000000000",
            ),
            (
                0xffffffffffff,
                0xffffffffffffffff,
                "dfffffffffffffffffffffffffffff",
            ),
            (0x1000000000000, 0x0, "e001000000000000"),
            (0x1000000000000, 0xffff, "e901000000000000ffff"),
            (0x1000000000000, 0x10000, "ea01000000000000010000"),
            (0xffffffffffffff, 0x0, "e0ffffffffffffff"),
            (0xffffffffffffff, 0xff, "e8ffffffffffffffff"),
            (0x100000000000000, 0x0, "f00100000000000000"),
            (
                0x100000000000000,
                0x100000000000000,
                "ff01000000000000000100000000000000",
            ),
            (0xffffffffffffffff, 0x0, "f0ffffffffffffffff"),
            (
                0xffffffffffffffff,
                0xffffffffffffffff,
                "ffffffffffffffffffffffffffffffffff",
            ),
        ];
        for (kid, ctr, hex) in vectors {
            let want = unhex(hex);
            let mut buf = [0u8; MAX_HEADER_LEN];
            let n = encode_header(
                Header {
                    kid: *kid,
                    ctr: *ctr,
                },
                &mut buf,
            );
            assert_eq!(&buf[..n], &want[..], "encode kid={kid:#x} ctr={ctr:#x}");
            assert_eq!(
                decode_header(&want).unwrap(),
                (
                    Header {
                        kid: *kid,
                        ctr: *ctr
                    },
                    want.len()
                )
            );
        }
    }

    /// RFC 9605 Appendix C.3, cipher_suite 0x0004 (AES_128_GCM_SHA256_128).
    #[test]
    fn rfc9605_encryption_vector() {
        let base_key = unhex("000102030405060708090a0b0c0d0e0f");
        let kid = 0x123;
        let ctr = 0x4567;
        let (key, salt) = derive_key_salt(&base_key, kid);
        assert_eq!(key.to_vec(), unhex("d34f547f4ca4f9a7447006fe7fcbf768"));
        assert_eq!(salt.to_vec(), unhex("75234edefe07819026751816"));
        let fk = FrameKey::derive(&base_key, kid);
        assert_eq!(fk.nonce(ctr).to_vec(), unhex("75234edefe07819026755d71"));
        let metadata = unhex("4945544620534672616d65205747");
        let pt = unhex("64726166742d696574662d736672616d 652d656e63");
        let ct = unhex(
            "9901234567b7412c2513a1b66dbb4884 1bbaf17f598751176ad847681a69c6d0 b091c07018ce4adb34eb",
        );
        assert_eq!(fk.seal_rfc(ctr, &metadata, &pt).unwrap(), ct);
        assert_eq!(fk.open_rfc(&metadata, &ct).unwrap(), pt);
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert_eq!(
            fk.open_rfc(&metadata, &bad),
            Err(SframeError::Authentication)
        );
        assert_eq!(fk.open_rfc(b"other", &ct), Err(SframeError::Authentication));
    }
}
