//! The wasm-bindgen API for the web app (feature `wasm`, wasm32 only).
//!
//! Strings and `Uint8Array`s in and out; JSON strings for structured values (the same
//! shapes as the Rust types' serde form). Every error becomes a thrown JS `Error` with
//! the Rust error's message; no function panics on bad input. Times are milliseconds as
//! JS numbers; ids that are `u64` in Rust must be integers below 2^53.
// wasm-bindgen's generated glue contains `unsafe` blocks; this file has none of its own.
#![allow(unsafe_code)]

use wasm_bindgen::prelude::*;

use crate::{
    backup::RecoveryKey,
    device::{ClaimedKey, Device, KeysUpload},
    megolm::{ExportedRoomKey, GroupMessage, InboundGroup, OutboundGroup, RoomKey, RotationPolicy},
    olm::{OlmEnvelope, OlmSession, OlmSessions},
    sframe::{Codec, FrameReceiver, FrameSender},
    util::{key32, u64_from_js_number},
    verify::{self, EstablishedSas, SasInfo, SasVerification},
};

fn err(e: impl std::fmt::Display) -> JsError {
    js_error(&e)
}

// One non-generic body for every error type (keeps the module small).
fn js_error(e: &dyn std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, JsError> {
    serde_json::to_string(v).map_err(err)
}

/// A device (Olm account).
#[wasm_bindgen(js_name = Device)]
pub struct JsDevice(Device);

#[wasm_bindgen(js_class = Device)]
impl JsDevice {
    /// Create a device with fresh identity keys.
    #[wasm_bindgen(constructor)]
    pub fn new(user_id: &str, device_id: &str) -> Result<JsDevice, JsError> {
        Device::new(user_id, device_id).map(JsDevice).map_err(err)
    }

    /// Restore from `pickle()` output with the same 32-byte local key.
    pub fn unpickle(pickle: &str, local_key: &[u8]) -> Result<JsDevice, JsError> {
        Device::unpickle(pickle, &key32(local_key).map_err(err)?)
            .map(JsDevice)
            .map_err(err)
    }

    /// Encrypt the device state under a 32-byte local key.
    pub fn pickle(&self, local_key: &[u8]) -> Result<String, JsError> {
        self.0.pickle(&key32(local_key).map_err(err)?).map_err(err)
    }

    /// `{"curve25519": "...", "ed25519": "..."}`.
    #[wasm_bindgen(js_name = identityKeys)]
    pub fn identity_keys(&self) -> Result<String, JsError> {
        json(&self.0.identity_keys())
    }

    /// Generate up to `count` one-time keys; returns how many were created.
    #[wasm_bindgen(js_name = generateOneTimeKeys)]
    pub fn generate_one_time_keys(&mut self, count: u32) -> u32 {
        u32::try_from(self.0.generate_one_time_keys(count as usize)).unwrap_or(0)
    }

    /// Generate a new fallback key.
    #[wasm_bindgen(js_name = generateFallbackKey)]
    pub fn generate_fallback_key(&mut self) {
        self.0.generate_fallback_key();
    }

    /// The signed upload body for `POST /api/v1/keys/upload` (JSON).
    #[wasm_bindgen(js_name = keysForUpload)]
    pub fn keys_for_upload(&self) -> String {
        self.0.keys_for_upload().to_json()
    }

    /// Mark the uploaded keys as published.
    #[wasm_bindgen(js_name = markKeysAsPublished)]
    pub fn mark_keys_as_published(&mut self) {
        self.0.mark_keys_as_published();
    }

    /// Sign bytes with the ed25519 identity key (base64 signature).
    pub fn sign(&self, message: &[u8]) -> String {
        self.0.sign(message)
    }
}

/// Verify a keys-upload JSON; returns `{"one_time_keys": n, "has_fallback_key": bool}`.
#[wasm_bindgen(js_name = verifyKeysUpload)]
pub fn verify_keys_upload(upload_json: &str) -> Result<String, JsError> {
    let s = KeysUpload::from_json(upload_json)
        .map_err(err)?
        .verify()
        .map_err(err)?;
    Ok(format!(
        "{{\"one_time_keys\":{},\"has_fallback_key\":{}}}",
        s.one_time_keys, s.has_fallback_key
    ))
}

/// Verify a claimed key JSON (see `ClaimedKey`); throws if the signature is bad.
#[wasm_bindgen(js_name = verifyClaimedKey)]
pub fn verify_claimed_key(claimed_json: &str) -> Result<(), JsError> {
    ClaimedKey::from_json(claimed_json)
        .map_err(err)?
        .verify()
        .map_err(err)
}

/// An Olm session with one peer device.
#[wasm_bindgen(js_name = OlmSession)]
pub struct JsOlmSession(OlmSession);

/// The result of opening an inbound session: the session and the first plaintext.
#[wasm_bindgen(js_name = OlmInbound)]
pub struct JsOlmInbound {
    session: Option<OlmSession>,
    plaintext: Vec<u8>,
}

#[wasm_bindgen(js_class = OlmInbound)]
impl JsOlmInbound {
    /// The decrypted first message.
    #[wasm_bindgen(getter)]
    pub fn plaintext(&self) -> Vec<u8> {
        self.plaintext.clone()
    }

    /// Take the session (only once).
    #[wasm_bindgen(js_name = takeSession)]
    pub fn take_session(&mut self) -> Result<JsOlmSession, JsError> {
        self.session
            .take()
            .map(JsOlmSession)
            .ok_or_else(|| JsError::new("session already taken"))
    }
}

#[wasm_bindgen(js_class = OlmSession)]
impl JsOlmSession {
    /// Open an outbound session from a claimed key JSON (its signature is checked).
    pub fn outbound(device: &JsDevice, claimed_json: &str) -> Result<JsOlmSession, JsError> {
        let claimed = ClaimedKey::from_json(claimed_json).map_err(err)?;
        OlmSession::outbound(&device.0, &claimed)
            .map(JsOlmSession)
            .map_err(err)
    }

    /// Open an inbound session from a pre-key envelope JSON (uses up a one-time key:
    /// re-pickle the device afterwards).
    pub fn inbound(device: &mut JsDevice, envelope_json: &str) -> Result<JsOlmInbound, JsError> {
        let env = OlmEnvelope::from_json(envelope_json).map_err(err)?;
        let (session, plaintext) = OlmSession::inbound(&mut device.0, &env).map_err(err)?;
        Ok(JsOlmInbound {
            session: Some(session),
            plaintext,
        })
    }

    /// The session id.
    #[wasm_bindgen(js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.0.session_id()
    }

    /// Encrypt; returns the envelope JSON.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<String, JsError> {
        Ok(self.0.encrypt(plaintext).map_err(err)?.to_json())
    }

    /// Decrypt an envelope JSON.
    pub fn decrypt(&mut self, envelope_json: &str) -> Result<Vec<u8>, JsError> {
        let env = OlmEnvelope::from_json(envelope_json).map_err(err)?;
        self.0.decrypt(&env).map_err(err)
    }

    /// Encrypt the session under a 32-byte local key.
    pub fn pickle(&self, local_key: &[u8]) -> Result<String, JsError> {
        self.0.pickle(&key32(local_key).map_err(err)?).map_err(err)
    }

    /// Restore from `pickle()`.
    pub fn unpickle(pickle: &str, local_key: &[u8]) -> Result<JsOlmSession, JsError> {
        OlmSession::unpickle(pickle, &key32(local_key).map_err(err)?)
            .map(JsOlmSession)
            .map_err(err)
    }
}

/// A bounded store of Olm sessions that routes incoming envelopes (and opens inbound
/// sessions from pre-key messages).
#[wasm_bindgen(js_name = OlmSessionStore)]
pub struct JsOlmSessionStore(OlmSessions);

#[wasm_bindgen(js_class = OlmSessionStore)]
impl JsOlmSessionStore {
    /// An empty store.
    #[wasm_bindgen(constructor)]
    pub fn new() -> JsOlmSessionStore {
        JsOlmSessionStore(OlmSessions::new())
    }

    /// Add a session (the JS object is consumed).
    pub fn insert(&mut self, session: JsOlmSession) {
        self.0.insert(session.0);
    }

    /// Whether a session with this peer (curve25519 key) exists.
    #[wasm_bindgen(js_name = hasSession)]
    pub fn has_session(&mut self, peer_curve25519: &str) -> bool {
        self.0.session_for(peer_curve25519).is_some()
    }

    /// Encrypt for a peer with its preferred session; returns the envelope JSON.
    #[wasm_bindgen(js_name = encryptFor)]
    pub fn encrypt_for(
        &mut self,
        peer_curve25519: &str,
        plaintext: &[u8],
    ) -> Result<String, JsError> {
        let s = self
            .0
            .session_for(peer_curve25519)
            .ok_or_else(|| JsError::new("no Olm session with this device"))?;
        Ok(s.encrypt(plaintext).map_err(err)?.to_json())
    }

    /// Decrypt an incoming envelope JSON (may open a session and use up a one-time key:
    /// re-pickle the device afterwards).
    pub fn decrypt(
        &mut self,
        device: &mut JsDevice,
        envelope_json: &str,
    ) -> Result<Vec<u8>, JsError> {
        let env = OlmEnvelope::from_json(envelope_json).map_err(err)?;
        self.0.decrypt(&mut device.0, &env).map_err(err)
    }

    /// Number of sessions.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// Encrypt all sessions under a 32-byte local key.
    pub fn pickle(&self, local_key: &[u8]) -> Result<String, JsError> {
        self.0.pickle(&key32(local_key).map_err(err)?).map_err(err)
    }

    /// Restore from `pickle()`.
    pub fn unpickle(pickle: &str, local_key: &[u8]) -> Result<JsOlmSessionStore, JsError> {
        OlmSessions::unpickle(pickle, &key32(local_key).map_err(err)?)
            .map(JsOlmSessionStore)
            .map_err(err)
    }
}

impl Default for JsOlmSessionStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The sending side of a channel's Megolm session.
#[wasm_bindgen(js_name = OutboundGroup)]
pub struct JsOutboundGroup(OutboundGroup);

#[wasm_bindgen(js_class = OutboundGroup)]
impl JsOutboundGroup {
    /// A new session for `channel_id` created at `now_ms`.
    #[wasm_bindgen(constructor)]
    pub fn new(channel_id: &str, now_ms: f64) -> Result<JsOutboundGroup, JsError> {
        OutboundGroup::new(channel_id, u64_from_js_number(now_ms).map_err(err)?)
            .map(JsOutboundGroup)
            .map_err(err)
    }

    /// The session id.
    #[wasm_bindgen(js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.0.session_id()
    }

    /// The room key JSON to send to members over Olm.
    #[wasm_bindgen(js_name = roomKey)]
    pub fn room_key(&self) -> String {
        self.0.room_key().to_json()
    }

    /// Encrypt; returns the group message JSON.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<String, JsError> {
        Ok(self.0.encrypt(plaintext).map_err(err)?.to_json())
    }

    /// Record that a member left or was removed.
    #[wasm_bindgen(js_name = memberLeft)]
    pub fn member_left(&mut self) {
        self.0.member_left();
    }

    /// `"member_left" | "message_count" | "age"` when the session must rotate, else undefined.
    #[wasm_bindgen(js_name = needsRotation)]
    pub fn needs_rotation(&self, now_ms: f64) -> Result<Option<String>, JsError> {
        let now = u64_from_js_number(now_ms).map_err(err)?;
        match self.0.needs_rotation(&RotationPolicy::default(), now) {
            Some(r) => Ok(Some(json(&r)?.trim_matches('"').to_owned())),
            None => Ok(None),
        }
    }

    /// Encrypt the session under a 32-byte local key.
    pub fn pickle(&self, local_key: &[u8]) -> Result<String, JsError> {
        self.0.pickle(&key32(local_key).map_err(err)?).map_err(err)
    }

    /// Restore from `pickle()`.
    pub fn unpickle(pickle: &str, local_key: &[u8]) -> Result<JsOutboundGroup, JsError> {
        OutboundGroup::unpickle(pickle, &key32(local_key).map_err(err)?)
            .map(JsOutboundGroup)
            .map_err(err)
    }
}

/// The receiving side of a Megolm session (rejects replayed indexes).
#[wasm_bindgen(js_name = InboundGroup)]
pub struct JsInboundGroup(InboundGroup);

#[wasm_bindgen(js_class = InboundGroup)]
impl JsInboundGroup {
    /// Import a room key JSON received over Olm.
    #[wasm_bindgen(js_name = fromRoomKey)]
    pub fn from_room_key(room_key_json: &str) -> Result<JsInboundGroup, JsError> {
        let k = RoomKey::from_json(room_key_json).map_err(err)?;
        InboundGroup::from_room_key(&k)
            .map(JsInboundGroup)
            .map_err(err)
    }

    /// Import an exported key JSON (from a backup).
    #[wasm_bindgen(js_name = fromExported)]
    pub fn from_exported(exported_json: &str) -> Result<JsInboundGroup, JsError> {
        crate::util::check_len(exported_json.len(), 8192).map_err(err)?;
        let k: ExportedRoomKey = crate::util::from_json(exported_json.as_bytes()).map_err(err)?;
        InboundGroup::from_exported(&k)
            .map(JsInboundGroup)
            .map_err(err)
    }

    /// The session id.
    #[wasm_bindgen(js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.0.session_id().to_owned()
    }

    /// Decrypt a group message JSON.
    pub fn decrypt(&mut self, message_json: &str) -> Result<Vec<u8>, JsError> {
        let m = GroupMessage::from_json(message_json).map_err(err)?;
        Ok(self.0.decrypt(&m).map_err(err)?.plaintext)
    }

    /// Export JSON for backup.
    pub fn export(&self) -> Result<String, JsError> {
        json(&self.0.export())
    }

    /// Encrypt the session under a 32-byte local key.
    pub fn pickle(&self, local_key: &[u8]) -> Result<String, JsError> {
        self.0.pickle(&key32(local_key).map_err(err)?).map_err(err)
    }

    /// Restore from `pickle()`.
    pub fn unpickle(pickle: &str, local_key: &[u8]) -> Result<JsInboundGroup, JsError> {
        InboundGroup::unpickle(pickle, &key32(local_key).map_err(err)?)
            .map(JsInboundGroup)
            .map_err(err)
    }
}

/// A random 32-byte SFrame base key to share over Olm.
#[wasm_bindgen(js_name = generateFrameKey)]
pub fn generate_frame_key() -> Result<Vec<u8>, JsError> {
    crate::sframe::generate_base_key()
        .map(|k| k.to_vec())
        .map_err(err)
}

/// Encrypts this participant's media frames (SFrame).
#[wasm_bindgen(js_name = FrameSender)]
pub struct JsFrameSender(FrameSender);

#[wasm_bindgen(js_class = FrameSender)]
impl JsFrameSender {
    /// A sender for key generation `generation` with a 32-byte base key.
    #[wasm_bindgen(constructor)]
    pub fn new(generation: f64, base_key: &[u8]) -> Result<JsFrameSender, JsError> {
        FrameSender::new(u64_from_js_number(generation).map_err(err)?, base_key)
            .map(JsFrameSender)
            .map_err(err)
    }

    /// Switch to a new key generation.
    #[wasm_bindgen(js_name = setKey)]
    pub fn set_key(&mut self, generation: f64, base_key: &[u8]) -> Result<(), JsError> {
        self.0
            .set_key(u64_from_js_number(generation).map_err(err)?, base_key)
            .map_err(err)
    }

    /// Ratchet the key forward one step.
    pub fn ratchet(&mut self) {
        self.0.ratchet();
    }

    /// Encrypt a frame; `codec` is `"vp8"`, `"opus"` or `"none"`.
    pub fn encrypt(&mut self, codec: &str, frame: &[u8]) -> Result<Vec<u8>, JsError> {
        self.0
            .encrypt(Codec::parse(codec).map_err(err)?, frame)
            .map_err(err)
    }
}

/// Decrypts one remote sender's media frames.
#[wasm_bindgen(js_name = FrameReceiver)]
pub struct JsFrameReceiver(FrameReceiver);

#[wasm_bindgen(js_class = FrameReceiver)]
impl JsFrameReceiver {
    /// A receiver keeping superseded keys for `grace_ms`.
    #[wasm_bindgen(constructor)]
    pub fn new(grace_ms: f64) -> Result<JsFrameReceiver, JsError> {
        Ok(JsFrameReceiver(FrameReceiver::new(
            u64_from_js_number(grace_ms).map_err(err)?,
        )))
    }

    /// Add the sender's base key for `generation` at `now_ms`.
    #[wasm_bindgen(js_name = addKey)]
    pub fn add_key(
        &mut self,
        generation: f64,
        base_key: &[u8],
        now_ms: f64,
    ) -> Result<(), JsError> {
        self.0
            .add_key(
                u64_from_js_number(generation).map_err(err)?,
                base_key,
                u64_from_js_number(now_ms).map_err(err)?,
            )
            .map_err(err)
    }

    /// Decrypt a frame at `now_ms`.
    pub fn decrypt(&mut self, codec: &str, frame: &[u8], now_ms: f64) -> Result<Vec<u8>, JsError> {
        let now = u64_from_js_number(now_ms).map_err(err)?;
        self.0
            .decrypt(Codec::parse(codec).map_err(err)?, frame, now)
            .map_err(err)
    }
}

/// The 60-digit safety number for two identities (same on both sides).
#[wasm_bindgen(js_name = safetyNumber)]
pub fn safety_number(
    our_user_id: &str,
    our_ed25519: &str,
    their_user_id: &str,
    their_ed25519: &str,
) -> Result<String, JsError> {
    verify::safety_number(our_user_id, our_ed25519, their_user_id, their_ed25519).map_err(err)
}

/// One side of a SAS verification.
#[wasm_bindgen(js_name = Sas)]
pub struct JsSas(SasVerification);

#[wasm_bindgen(js_class = Sas)]
impl JsSas {
    /// Start a SAS verification.
    #[wasm_bindgen(constructor)]
    pub fn new() -> JsSas {
        JsSas(SasVerification::new())
    }

    /// Our ephemeral public key (base64).
    #[wasm_bindgen(js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.0.public_key().to_owned()
    }

    /// Complete the exchange; `info_json` is a `SasInfo` JSON.
    pub fn establish(
        &mut self,
        their_public_key: &str,
        info_json: &str,
    ) -> Result<JsEstablishedSas, JsError> {
        let info = SasInfo::from_json(info_json).map_err(err)?;
        self.0
            .establish(their_public_key, info)
            .map(JsEstablishedSas)
            .map_err(err)
    }
}

impl Default for JsSas {
    fn default() -> Self {
        Self::new()
    }
}

/// A SAS after the key exchange.
#[wasm_bindgen(js_name = EstablishedSas)]
pub struct JsEstablishedSas(EstablishedSas);

#[wasm_bindgen(js_class = EstablishedSas)]
impl JsEstablishedSas {
    /// JSON array of 7 `{"emoji": "🐶", "name": "Dog"}`.
    pub fn emoji(&self) -> Result<String, JsError> {
        // A plain struct rather than `serde_json::json!`: keeps `serde_json::Value`'s
        // serializer out of the module. Same output (keys in this order).
        #[derive(serde::Serialize)]
        struct Emoji<'a> {
            emoji: &'a str,
            name: &'a str,
        }
        let list = self.0.emoji();
        let list: Vec<Emoji<'_>> = list
            .iter()
            .map(|(emoji, name)| Emoji { emoji, name })
            .collect();
        json(&list)
    }

    /// The three decimals.
    pub fn decimals(&self) -> Vec<u16> {
        self.0.decimals().to_vec()
    }

    /// MAC over `input` (our ed25519 key) labelled `key_id`.
    pub fn mac(&self, input: &str, key_id: &str) -> String {
        self.0.mac(input, key_id)
    }

    /// Check the other side's MAC; throws on mismatch.
    #[wasm_bindgen(js_name = verifyMac)]
    pub fn verify_mac(&self, input: &str, key_id: &str, mac: &str) -> Result<(), JsError> {
        self.0.verify_mac(input, key_id, mac).map_err(err)
    }
}

/// A new recovery key in its display form.
#[wasm_bindgen(js_name = generateRecoveryKey)]
pub fn generate_recovery_key() -> Result<String, JsError> {
    Ok(RecoveryKey::generate().map_err(err)?.to_display())
}

/// Encrypt bytes under a recovery key (display form); returns the blob.
#[wasm_bindgen(js_name = backupEncrypt)]
pub fn backup_encrypt(recovery_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, JsError> {
    RecoveryKey::parse(recovery_key)
        .map_err(err)?
        .encrypt(plaintext)
        .map_err(err)
}

/// Decrypt a backup blob with a recovery key (display form).
#[wasm_bindgen(js_name = backupDecrypt)]
pub fn backup_decrypt(recovery_key: &str, blob: &[u8]) -> Result<Vec<u8>, JsError> {
    RecoveryKey::parse(recovery_key)
        .map_err(err)?
        .decrypt(blob)
        .map_err(err)
}

/// Benchmark baseline only: raw AES-128-GCM (same `aes-gcm` backend as SFrame) over the
/// same bytes, so the browser test can report the frame/AES ratio. Not for real use.
#[wasm_bindgen]
pub struct RawAesBench {
    cipher: aes_gcm::Aes128Gcm,
    counter: u64,
}

#[wasm_bindgen]
impl RawAesBench {
    /// A fixed-key cipher.
    #[wasm_bindgen(constructor)]
    pub fn new() -> RawAesBench {
        use aes_gcm::KeyInit;
        RawAesBench {
            cipher: aes_gcm::Aes128Gcm::new(&[7u8; 16].into()),
            counter: 0,
        }
    }

    /// Seal `data` (copied in and out, like a frame) with a counter nonce.
    pub fn seal(&mut self, data: &[u8]) -> Vec<u8> {
        use aes_gcm::AeadInOut;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend_from_slice(data);
        match self.cipher.encrypt_inout_detached(
            &aes_gcm::aead::Nonce::<aes_gcm::Aes128Gcm>::from(nonce),
            &[],
            out.as_mut_slice().into(),
        ) {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(_) => out.clear(),
        }
        out
    }
}

impl Default for RawAesBench {
    fn default() -> Self {
        Self::new()
    }
}
