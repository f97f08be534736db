//! Megolm group sessions: one outbound session per (channel, sending device), its key
//! shared to members over Olm, replay-safe inbound decryption, and the rotation policy.
//!
//! JSON shapes:
//!
//! - [`GroupMessage`] (the encrypted body of a channel message):
//!   `{ "session_id": "<base64>", "ciphertext": "<base64 Megolm message>" }`
//! - [`RoomKey`] (the plaintext sent inside an Olm envelope to share a session):
//!   `{ "type": "copains.room_key", "channel_id": "…", "session_id": "…", "session_key": "<base64>" }`

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vodozemac::megolm::{
    ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionConfig, SessionKey,
};

use crate::util::{self, UtilError};

/// Largest plaintext accepted for a group message, in bytes.
pub const MAX_GROUP_MESSAGE_LEN: usize = 256 * 1024;
/// Message indexes remembered per inbound session for replay detection. When full, the
/// oldest (lowest) are dropped and anything at or below them is rejected as a replay.
pub const MAX_SEEN_INDEXES: usize = 4096;
/// Inbound sessions kept by an [`InboundGroupStore`]; the oldest inserted goes first.
pub const MAX_INBOUND_SESSIONS: usize = 2048;
/// Rotate an outbound session after this many messages.
pub const ROTATE_AFTER_MESSAGES: u64 = 100;
/// Rotate an outbound session after this age (7 days), in milliseconds.
pub const ROTATE_AFTER_MS: u64 = 7 * 24 * 60 * 60 * 1000;
const MAX_ID_LEN: usize = 256;
const OUTBOUND_PICKLE_LABEL: &[u8] = b"copains.megolm_outbound.v1";
const INBOUND_PICKLE_LABEL: &[u8] = b"copains.megolm_inbound.v1";

/// Errors of the Megolm module.
#[derive(Debug, thiserror::Error)]
pub enum MegolmError {
    /// The message, key or JSON was malformed.
    #[error("malformed Megolm input: {0}")]
    Malformed(String),
    /// The message belongs to another session.
    #[error("message is for session {got}, this session is {expected}")]
    WrongSession {
        /// This session's id.
        expected: String,
        /// The message's session id.
        got: String,
    },
    /// This message index was already decrypted (or is older than the replay window).
    #[error("replayed Megolm message index {0}")]
    Replayed(u32),
    /// Decryption failed: tampered ciphertext, bad signature, or an index before the
    /// first one this session knows.
    #[error("could not decrypt the Megolm message: {0}")]
    Decryption(String),
    /// No inbound session with this id is known.
    #[error("unknown Megolm session {0}")]
    UnknownSession(String),
    /// The pickle could not be opened.
    #[error("could not unpickle the Megolm session (wrong key or corrupted data)")]
    Unpickle,
    /// A size cap or helper failed.
    #[error(transparent)]
    Util(#[from] UtilError),
}

/// An encrypted channel message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    /// The Megolm session id (base64).
    pub session_id: String,
    /// The Megolm message, base64.
    pub ciphertext: String,
}

impl GroupMessage {
    /// Parse from JSON (capped).
    pub fn from_json(json: &str) -> Result<Self, MegolmError> {
        util::check_len(json.len(), MAX_GROUP_MESSAGE_LEN * 2)?;
        util::from_json(json.as_bytes()).map_err(|e| MegolmError::Malformed(e.to_string()))
    }

    /// Serialize to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The plaintext shared over Olm so members can decrypt a channel's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomKey {
    /// Always `copains.room_key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The channel the session encrypts.
    pub channel_id: String,
    /// The Megolm session id.
    pub session_id: String,
    /// The session key (base64), as exported by [`OutboundGroup::session_key`].
    pub session_key: String,
}

/// The `type` of a [`RoomKey`].
pub const ROOM_KEY_TYPE: &str = "copains.room_key";

impl RoomKey {
    /// Parse from JSON (capped) and check the type.
    pub fn from_json(json: &str) -> Result<Self, MegolmError> {
        util::check_len(json.len(), 8192)?;
        let k: Self =
            util::from_json(json.as_bytes()).map_err(|e| MegolmError::Malformed(e.to_string()))?;
        if k.kind != ROOM_KEY_TYPE {
            return Err(MegolmError::Malformed(format!(
                "unexpected type {}",
                k.kind
            )));
        }
        util::check_len(k.channel_id.len(), MAX_ID_LEN)?;
        util::check_len(k.session_id.len(), MAX_ID_LEN)?;
        Ok(k)
    }

    /// Serialize to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why an outbound session must be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// A member left or was removed since the session was created.
    MemberLeft,
    /// The session has encrypted its message budget.
    MessageCount,
    /// The session is older than its time budget.
    Age,
}

/// When to rotate an outbound group session. A pure function of counters and a time
/// the caller passes in: no clock is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate once this many messages have been sent.
    pub max_messages: u64,
    /// Rotate once the session is this old (ms).
    pub max_age_ms: u64,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            max_messages: ROTATE_AFTER_MESSAGES,
            max_age_ms: ROTATE_AFTER_MS,
        }
    }
}

impl RotationPolicy {
    /// Decide whether a session with these counters must rotate at `now_ms`.
    /// A membership removal always wins, then the message count, then age.
    pub fn check(
        &self,
        messages_sent: u64,
        created_at_ms: u64,
        member_left: bool,
        now_ms: u64,
    ) -> Option<RotationReason> {
        if member_left {
            Some(RotationReason::MemberLeft)
        } else if messages_sent >= self.max_messages {
            Some(RotationReason::MessageCount)
        } else if now_ms.saturating_sub(created_at_ms) >= self.max_age_ms {
            Some(RotationReason::Age)
        } else {
            None
        }
    }
}

/// The sending side of a channel's Megolm session for one device.
pub struct OutboundGroup {
    session: GroupSession,
    channel_id: String,
    created_at_ms: u64,
    messages_sent: u64,
    member_left: bool,
}

impl std::fmt::Debug for OutboundGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundGroup")
            .field("session_id", &self.session.session_id())
            .field("channel_id", &self.channel_id)
            .field("messages_sent", &self.messages_sent)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct OutboundPickle {
    channel_id: String,
    created_at_ms: u64,
    messages_sent: u64,
    member_left: bool,
    session: GroupSessionPickle,
}

impl OutboundGroup {
    /// A fresh session for `channel_id`, created at `now_ms`.
    pub fn new(channel_id: &str, now_ms: u64) -> Result<Self, MegolmError> {
        util::check_len(channel_id.len(), MAX_ID_LEN)?;
        Ok(Self {
            session: GroupSession::new(SessionConfig::version_1()),
            channel_id: channel_id.to_owned(),
            created_at_ms: now_ms,
            messages_sent: 0,
            member_left: false,
        })
    }

    /// The session id.
    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// The channel this session encrypts.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// Messages encrypted so far.
    pub fn messages_sent(&self) -> u64 {
        self.messages_sent
    }

    /// The index the next message will use (members given the key now can read from it).
    pub fn message_index(&self) -> u32 {
        self.session.message_index()
    }

    /// The key to share with members over Olm, wrapped as a [`RoomKey`].
    pub fn room_key(&self) -> RoomKey {
        RoomKey {
            kind: ROOM_KEY_TYPE.to_owned(),
            channel_id: self.channel_id.clone(),
            session_id: self.session_id(),
            session_key: self.session_key(),
        }
    }

    /// The session key (base64), valid from the current message index on.
    pub fn session_key(&self) -> String {
        self.session.session_key().to_base64()
    }

    /// Record that a member left or was removed: [`OutboundGroup::needs_rotation`]
    /// will then say so, and the caller must create a new session for the remaining members.
    pub fn member_left(&mut self) {
        self.member_left = true;
    }

    /// Whether to rotate at `now_ms` under `policy`.
    pub fn needs_rotation(&self, policy: &RotationPolicy, now_ms: u64) -> Option<RotationReason> {
        policy.check(
            self.messages_sent,
            self.created_at_ms,
            self.member_left,
            now_ms,
        )
    }

    /// Encrypt a plaintext of at most [`MAX_GROUP_MESSAGE_LEN`] bytes.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<GroupMessage, MegolmError> {
        util::check_len(plaintext.len(), MAX_GROUP_MESSAGE_LEN)?;
        let msg = self.session.encrypt(plaintext);
        self.messages_sent = self.messages_sent.saturating_add(1);
        Ok(GroupMessage {
            session_id: self.session_id(),
            ciphertext: msg.to_base64(),
        })
    }

    /// Encrypt the session state under a 32-byte local key (base64).
    pub fn pickle(&self, local_key: &[u8; 32]) -> Result<String, MegolmError> {
        let p = OutboundPickle {
            channel_id: self.channel_id.clone(),
            created_at_ms: self.created_at_ms,
            messages_sent: self.messages_sent,
            member_left: self.member_left,
            session: self.session.pickle(),
        };
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&p).map_err(|e| MegolmError::Malformed(e.to_string()))?,
        );
        Ok(util::base64_encode(util::seal(
            local_key,
            OUTBOUND_PICKLE_LABEL,
            &json,
        )?))
    }

    /// Restore from [`OutboundGroup::pickle`].
    pub fn unpickle(pickle: &str, local_key: &[u8; 32]) -> Result<Self, MegolmError> {
        let sealed = util::base64_decode_capped(pickle, 64 * 1024)?;
        let json = zeroize::Zeroizing::new(
            util::open(local_key, OUTBOUND_PICKLE_LABEL, &sealed)
                .map_err(|_| MegolmError::Unpickle)?,
        );
        let p: OutboundPickle = util::from_json(&json).map_err(|_| MegolmError::Unpickle)?;
        Ok(Self {
            session: GroupSession::from_pickle(p.session),
            channel_id: p.channel_id,
            created_at_ms: p.created_at_ms,
            messages_sent: p.messages_sent,
            member_left: p.member_left,
        })
    }
}

/// A decrypted group message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Its Megolm message index.
    pub message_index: u32,
}

/// The receiving side of a Megolm session, with replay detection.
pub struct InboundGroup {
    session: InboundGroupSession,
    session_id: String,
    channel_id: String,
    /// Indexes already decrypted, sorted ascending, no duplicates (bounded by
    /// [`MAX_SEEN_INDEXES`]). A sorted `Vec` rather than a `BTreeSet`: same lookups by
    /// binary search, and no B-tree code in the wasm module.
    seen: Vec<u32>,
    /// Everything at or below this index counts as seen (set when `seen` overflows).
    floor: Option<u32>,
}

impl std::fmt::Debug for InboundGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundGroup")
            .field("session_id", &self.session_id)
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct InboundPickle {
    channel_id: String,
    seen: Vec<u32>,
    floor: Option<u32>,
    session: InboundGroupSessionPickle,
}

/// A session key exported from an inbound session (for backup or forwarding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRoomKey {
    /// The channel.
    pub channel_id: String,
    /// The session id.
    pub session_id: String,
    /// The exported key (base64), valid from its first known index.
    pub exported_key: String,
}

impl InboundGroup {
    fn from_session(session: InboundGroupSession, channel_id: &str) -> Result<Self, MegolmError> {
        util::check_len(channel_id.len(), MAX_ID_LEN)?;
        Ok(Self {
            session_id: session.session_id(),
            session,
            channel_id: channel_id.to_owned(),
            seen: Vec::new(),
            floor: None,
        })
    }

    /// Import a room key received over Olm. The key must be signed by the session's
    /// ed25519 key (vodozemac checks it), and its session id must match.
    pub fn from_room_key(key: &RoomKey) -> Result<Self, MegolmError> {
        util::check_len(key.session_key.len(), 1024)?;
        let sk = SessionKey::from_base64(&key.session_key)
            .map_err(|e| MegolmError::Malformed(e.to_string()))?;
        let s = Self::from_session(
            InboundGroupSession::new(&sk, SessionConfig::version_1()),
            &key.channel_id,
        )?;
        if s.session_id != key.session_id {
            return Err(MegolmError::WrongSession {
                expected: s.session_id,
                got: key.session_id.clone(),
            });
        }
        Ok(s)
    }

    /// Import an exported key (from a backup or a forward).
    pub fn from_exported(key: &ExportedRoomKey) -> Result<Self, MegolmError> {
        util::check_len(key.exported_key.len(), 1024)?;
        let ek = ExportedSessionKey::from_base64(&key.exported_key)
            .map_err(|e| MegolmError::Malformed(e.to_string()))?;
        let s = Self::from_session(
            InboundGroupSession::import(&ek, SessionConfig::version_1()),
            &key.channel_id,
        )?;
        if s.session_id != key.session_id {
            return Err(MegolmError::WrongSession {
                expected: s.session_id,
                got: key.session_id.clone(),
            });
        }
        Ok(s)
    }

    /// Export from the first known index (for [`crate::backup`]).
    pub fn export(&self) -> ExportedRoomKey {
        ExportedRoomKey {
            channel_id: self.channel_id.clone(),
            session_id: self.session_id.clone(),
            exported_key: self.session.export_at_first_known_index().to_base64(),
        }
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The channel.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    fn is_seen(&self, index: u32) -> bool {
        self.floor.is_some_and(|f| index <= f) || self.seen.binary_search(&index).is_ok()
    }

    fn mark_seen(&mut self, index: u32) {
        if let Err(at) = self.seen.binary_search(&index) {
            self.seen.insert(at, index);
        }
        if self.seen.len() > MAX_SEEN_INDEXES {
            let excess = self.seen.len() - MAX_SEEN_INDEXES;
            let lowest = self.seen.drain(..excess).max();
            if let Some(lowest) = lowest {
                self.floor = Some(self.floor.map_or(lowest, |f| f.max(lowest)));
            }
        }
    }

    /// Decrypt a message. A second decryption of the same index fails with
    /// [`MegolmError::Replayed`]; tampering fails with [`MegolmError::Decryption`].
    pub fn decrypt(&mut self, message: &GroupMessage) -> Result<Decrypted, MegolmError> {
        if message.session_id != self.session_id {
            return Err(MegolmError::WrongSession {
                expected: self.session_id.clone(),
                got: message.session_id.clone(),
            });
        }
        util::check_len(
            message.ciphertext.len(),
            (MAX_GROUP_MESSAGE_LEN + 1024) / 3 * 4 + 4,
        )?;
        let msg = MegolmMessage::from_base64(&message.ciphertext)
            .map_err(|e| MegolmError::Malformed(e.to_string()))?;
        if self.is_seen(msg.message_index()) {
            return Err(MegolmError::Replayed(msg.message_index()));
        }
        let d = self
            .session
            .decrypt(&msg)
            .map_err(|e| MegolmError::Decryption(e.to_string()))?;
        self.mark_seen(d.message_index);
        Ok(Decrypted {
            plaintext: d.plaintext,
            message_index: d.message_index,
        })
    }

    /// Encrypt the session state (including seen indexes) under a local key (base64).
    pub fn pickle(&self, local_key: &[u8; 32]) -> Result<String, MegolmError> {
        let p = InboundPickle {
            channel_id: self.channel_id.clone(),
            seen: self.seen.clone(),
            floor: self.floor,
            session: self.session.pickle(),
        };
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&p).map_err(|e| MegolmError::Malformed(e.to_string()))?,
        );
        Ok(util::base64_encode(util::seal(
            local_key,
            INBOUND_PICKLE_LABEL,
            &json,
        )?))
    }

    /// Restore from [`InboundGroup::pickle`].
    pub fn unpickle(pickle: &str, local_key: &[u8; 32]) -> Result<Self, MegolmError> {
        let sealed = util::base64_decode_capped(pickle, 256 * 1024)?;
        let json = zeroize::Zeroizing::new(
            util::open(local_key, INBOUND_PICKLE_LABEL, &sealed)
                .map_err(|_| MegolmError::Unpickle)?,
        );
        let p: InboundPickle = util::from_json(&json).map_err(|_| MegolmError::Unpickle)?;
        let mut s = Self::from_session(InboundGroupSession::from_pickle(p.session), &p.channel_id)?;
        s.floor = p.floor;
        for i in p.seen {
            s.mark_seen(i);
        }
        Ok(s)
    }
}

/// A bounded store of inbound group sessions keyed by session id.
#[derive(Debug, Default)]
pub struct InboundGroupStore {
    /// Oldest first.
    sessions: VecDeque<InboundGroup>,
}

impl InboundGroupStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Add or replace a session (a replacement keeps the stored replay state when it
    /// does not start earlier than the stored one).
    pub fn insert(&mut self, session: InboundGroup) {
        if let Some(existing) = self
            .sessions
            .iter_mut()
            .find(|s| s.session_id == session.session_id)
        {
            // vodozemac tells whether the new one can decrypt more (earlier indexes).
            let mut incoming = session;
            if incoming.session.compare(&mut existing.session)
                == vodozemac::megolm::SessionOrdering::Better
            {
                incoming.seen = std::mem::take(&mut existing.seen);
                incoming.floor = existing.floor;
                *existing = incoming;
            }
            return;
        }
        self.sessions.push_back(session);
        while self.sessions.len() > MAX_INBOUND_SESSIONS {
            self.sessions.pop_front();
        }
    }

    /// Look a session up.
    pub fn get_mut(&mut self, session_id: &str) -> Option<&mut InboundGroup> {
        self.sessions
            .iter_mut()
            .find(|s| s.session_id == session_id)
    }

    /// Decrypt with the session the message names.
    pub fn decrypt(&mut self, message: &GroupMessage) -> Result<Decrypted, MegolmError> {
        self.get_mut(&message.session_id)
            .ok_or_else(|| MegolmError::UnknownSession(message.session_id.clone()))?
            .decrypt(message)
    }

    /// Export every session (for [`crate::backup`]).
    pub fn export_all(&self) -> Vec<ExportedRoomKey> {
        self.sessions.iter().map(InboundGroup::export).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_share_decrypt_and_replay() {
        let mut out = OutboundGroup::new("chan", 0).unwrap();
        let key = RoomKey::from_json(&out.room_key().to_json()).unwrap();
        let mut inb = InboundGroup::from_room_key(&key).unwrap();
        let m0 = out.encrypt(b"zero").unwrap();
        let m1 = out.encrypt(b"one").unwrap();
        let m1 = GroupMessage::from_json(&m1.to_json()).unwrap();
        assert_eq!(
            inb.decrypt(&m1).unwrap(),
            Decrypted {
                plaintext: b"one".to_vec(),
                message_index: 1
            }
        );
        assert_eq!(inb.decrypt(&m0).unwrap().plaintext, b"zero");
        assert!(matches!(inb.decrypt(&m1), Err(MegolmError::Replayed(1))));
        assert!(matches!(inb.decrypt(&m0), Err(MegolmError::Replayed(0))));
    }

    #[test]
    fn tampered_message_fails() {
        let mut out = OutboundGroup::new("chan", 0).unwrap();
        let mut inb = InboundGroup::from_room_key(&out.room_key()).unwrap();
        let m = out.encrypt(b"secret").unwrap();
        let mut bytes = util::base64_decode(&m.ciphertext).unwrap();
        bytes[12] ^= 1;
        let bad = GroupMessage {
            ciphertext: util::base64_encode(&bytes),
            ..m.clone()
        };
        assert!(matches!(
            inb.decrypt(&bad),
            Err(MegolmError::Decryption(_)) | Err(MegolmError::Malformed(_))
        ));
        // The real message still decrypts: a failed attempt does not burn the index.
        assert_eq!(inb.decrypt(&m).unwrap().plaintext, b"secret");
    }

    #[test]
    fn late_joiner_cannot_read_earlier_messages() {
        let mut out = OutboundGroup::new("chan", 0).unwrap();
        let early = out.encrypt(b"before").unwrap();
        let mut inb = InboundGroup::from_room_key(&out.room_key()).unwrap();
        assert!(matches!(
            inb.decrypt(&early),
            Err(MegolmError::Decryption(_))
        ));
        let late = out.encrypt(b"after").unwrap();
        assert_eq!(inb.decrypt(&late).unwrap().plaintext, b"after");
    }

    #[test]
    fn rotation_policy() {
        let p = RotationPolicy::default();
        assert_eq!(p.check(0, 1000, false, 1000), None);
        assert_eq!(p.check(99, 0, false, ROTATE_AFTER_MS - 1), None);
        assert_eq!(
            p.check(100, 0, false, 0),
            Some(RotationReason::MessageCount)
        );
        assert_eq!(
            p.check(0, 0, false, ROTATE_AFTER_MS),
            Some(RotationReason::Age)
        );
        assert_eq!(p.check(0, 0, true, 0), Some(RotationReason::MemberLeft));
        // A clock that goes backwards never underflows.
        assert_eq!(p.check(0, 5000, false, 0), None);
        let mut out = OutboundGroup::new("c", 0).unwrap();
        for _ in 0..100 {
            assert_eq!(out.needs_rotation(&p, 1), None);
            out.encrypt(b"x").unwrap();
        }
        assert_eq!(
            out.needs_rotation(&p, 1),
            Some(RotationReason::MessageCount)
        );
        let mut out = OutboundGroup::new("c", 0).unwrap();
        out.member_left();
        assert_eq!(out.needs_rotation(&p, 1), Some(RotationReason::MemberLeft));
    }

    #[test]
    fn seen_indexes_are_bounded() {
        let mut out = OutboundGroup::new("c", 0).unwrap();
        let mut inb = InboundGroup::from_room_key(&out.room_key()).unwrap();
        let first = out.encrypt(b"0").unwrap();
        inb.decrypt(&first).unwrap();
        for _ in 0..(MAX_SEEN_INDEXES + 10) {
            let m = out.encrypt(b"x").unwrap();
            inb.decrypt(&m).unwrap();
        }
        assert!(inb.seen.len() <= MAX_SEEN_INDEXES);
        assert!(matches!(inb.decrypt(&first), Err(MegolmError::Replayed(0))));
    }

    #[test]
    fn pickles_and_export_round_trip() {
        let key = [9u8; 32];
        let mut out = OutboundGroup::new("c", 42).unwrap();
        let mut inb = InboundGroup::from_room_key(&out.room_key()).unwrap();
        let m0 = out.encrypt(b"a").unwrap();
        inb.decrypt(&m0).unwrap();
        let mut out = OutboundGroup::unpickle(&out.pickle(&key).unwrap(), &key).unwrap();
        assert_eq!(out.messages_sent(), 1);
        let mut inb = InboundGroup::unpickle(&inb.pickle(&key).unwrap(), &key).unwrap();
        assert!(
            matches!(inb.decrypt(&m0), Err(MegolmError::Replayed(0))),
            "replay state survives a pickle"
        );
        let m1 = out.encrypt(b"b").unwrap();
        assert_eq!(inb.decrypt(&m1).unwrap().plaintext, b"b");
        let mut imported = InboundGroup::from_exported(&inb.export()).unwrap();
        assert_eq!(imported.decrypt(&m0).unwrap().plaintext, b"a");
        assert!(InboundGroup::unpickle(&inb.pickle(&key).unwrap(), &[1u8; 32]).is_err());
    }

    #[test]
    fn store_routes_and_is_bounded() {
        let mut store = InboundGroupStore::new();
        let mut out = OutboundGroup::new("c", 0).unwrap();
        store.insert(InboundGroup::from_room_key(&out.room_key()).unwrap());
        store.insert(InboundGroup::from_room_key(&out.room_key()).unwrap());
        assert_eq!(store.len(), 1);
        let m = out.encrypt(b"hi").unwrap();
        assert_eq!(store.decrypt(&m).unwrap().plaintext, b"hi");
        let other = OutboundGroup::new("c", 0).unwrap().encrypt(b"x").unwrap();
        assert!(matches!(
            store.decrypt(&other),
            Err(MegolmError::UnknownSession(_))
        ));
        for _ in 0..(MAX_INBOUND_SESSIONS + 5) {
            let o = OutboundGroup::new("c", 0).unwrap();
            store.insert(InboundGroup::from_room_key(&o.room_key()).unwrap());
        }
        assert_eq!(store.len(), MAX_INBOUND_SESSIONS);
    }

    #[test]
    fn room_key_with_wrong_session_id_is_refused() {
        let out = OutboundGroup::new("c", 0).unwrap();
        let mut k = out.room_key();
        k.session_id = "bogus".into();
        assert!(matches!(
            InboundGroup::from_room_key(&k),
            Err(MegolmError::WrongSession { .. })
        ));
        k.kind = "other".into();
        assert!(RoomKey::from_json(&k.to_json()).is_err());
    }
}
