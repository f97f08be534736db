//! 1:1 Olm sessions between two devices, and the JSON envelope they travel in.
//!
//! Envelope JSON (the `content` of a to-device message):
//!
//! ```json
//! { "type": 0, "body": "<base64 Olm message>", "sender_key": "<sender curve25519, base64>" }
//! ```
//!
//! `type` 0 is a pre-key message (it can open a session on the receiver), 1 a normal one.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vodozemac::{
    Curve25519PublicKey,
    olm::{OlmMessage, Session, SessionConfig, SessionPickle},
};

use crate::{
    device::{self, ClaimedKey, Device, DeviceError},
    util::{self, UtilError},
};

/// Largest Olm plaintext or decoded body accepted, in bytes.
pub const MAX_OLM_MESSAGE_LEN: usize = 256 * 1024;
/// Sessions kept per peer device in [`OlmSessions`]; the least recently used goes first.
pub const MAX_SESSIONS_PER_PEER: usize = 5;
/// Peer devices kept in [`OlmSessions`]; the least recently used goes first.
pub const MAX_PEERS: usize = 4096;
const SESSION_PICKLE_LABEL: &[u8] = b"copains.olm_session.v1";

/// Errors of the Olm module.
#[derive(Debug, thiserror::Error)]
pub enum OlmError {
    /// The envelope JSON or its body was malformed.
    #[error("malformed Olm envelope: {0}")]
    Malformed(String),
    /// A normal message arrived where a pre-key message is required.
    #[error("expected a pre-key message (type 0) to open a session")]
    NotPreKey,
    /// A key in the request was invalid, or a claimed key failed verification.
    #[error(transparent)]
    Key(#[from] DeviceError),
    /// vodozemac refused to create the session.
    #[error("could not create the Olm session: {0}")]
    SessionCreation(String),
    /// Decryption failed (tampered, wrong session, replayed or too old).
    #[error("could not decrypt the Olm message: {0}")]
    Decryption(String),
    /// No stored session could decrypt the message.
    #[error("no Olm session with this sender could decrypt the message")]
    NoSession,
    /// Encryption failed.
    #[error("could not encrypt: {0}")]
    Encryption(String),
    /// The pickle could not be opened.
    #[error("could not unpickle the Olm session (wrong key or corrupted data)")]
    Unpickle,
    /// A size cap or helper failed.
    #[error(transparent)]
    Util(#[from] UtilError),
}

/// An Olm message as sent over the to-device queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OlmEnvelope {
    /// 0 = pre-key message, 1 = normal message.
    #[serde(rename = "type")]
    pub message_type: u8,
    /// The Olm message, base64.
    pub body: String,
    /// The sender device's curve25519 identity key, base64.
    pub sender_key: String,
}

impl OlmEnvelope {
    /// Parse an envelope from JSON (size-capped).
    pub fn from_json(json: &str) -> Result<Self, OlmError> {
        util::check_len(json.len(), MAX_OLM_MESSAGE_LEN * 2)?;
        util::from_json(json.as_bytes()).map_err(|e| OlmError::Malformed(e.to_string()))
    }

    /// Serialize to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn decode(&self) -> Result<(OlmMessage, Curve25519PublicKey), OlmError> {
        let sender = device::parse_curve25519("sender", &self.sender_key)?;
        let bytes = util::base64_decode_capped(&self.body, MAX_OLM_MESSAGE_LEN + 1024)?;
        let msg = OlmMessage::from_parts(usize::from(self.message_type), &bytes)
            .map_err(|e| OlmError::Malformed(e.to_string()))?;
        Ok((msg, sender))
    }
}

/// An Olm session with one peer device.
pub struct OlmSession {
    session: Session,
    our_key: String,
    peer_key: String,
}

impl std::fmt::Debug for OlmSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OlmSession")
            .field("session_id", &self.session.session_id())
            .field("peer_key", &self.peer_key)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct OlmSessionPickle {
    our_key: String,
    peer_key: String,
    session: SessionPickle,
}

impl OlmSession {
    /// Open an outbound session to a device from a key claimed via `keys/claim`,
    /// after checking the device's signature on that key.
    pub fn outbound(device: &Device, claimed: &ClaimedKey) -> Result<Self, OlmError> {
        claimed.verify()?;
        Self::outbound_unverified(device, &claimed.identity_keys.curve25519, &claimed.key)
    }

    /// Open an outbound session from raw keys (the caller vouches for them).
    pub fn outbound_unverified(
        device: &Device,
        their_curve25519: &str,
        their_one_time_key: &str,
    ) -> Result<Self, OlmError> {
        let identity = device::parse_curve25519("identity", their_curve25519)?;
        let otk = device::parse_curve25519("one-time", their_one_time_key)?;
        let session = device
            .account
            .create_outbound_session(SessionConfig::version_1(), identity, otk)
            .map_err(|e| OlmError::SessionCreation(e.to_string()))?;
        Ok(Self {
            session,
            our_key: device.identity_keys().curve25519,
            peer_key: identity.to_base64(),
        })
    }

    /// Create the inbound session from a pre-key envelope; returns it with the plaintext.
    /// The one-time key used is removed from the device (so `device` must be re-pickled).
    pub fn inbound(
        device: &mut Device,
        envelope: &OlmEnvelope,
    ) -> Result<(Self, Vec<u8>), OlmError> {
        let (msg, sender) = envelope.decode()?;
        let OlmMessage::PreKey(pre) = msg else {
            return Err(OlmError::NotPreKey);
        };
        let res = device
            .account
            .create_inbound_session(SessionConfig::version_1(), sender, &pre)
            .map_err(|e| OlmError::SessionCreation(e.to_string()))?;
        Ok((
            Self {
                session: res.session,
                our_key: device.identity_keys().curve25519,
                peer_key: sender.to_base64(),
            },
            res.plaintext,
        ))
    }

    /// The session id (same on both sides).
    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// The peer device's curve25519 identity key.
    pub fn peer_key(&self) -> &str {
        &self.peer_key
    }

    /// Encrypt a plaintext of at most [`MAX_OLM_MESSAGE_LEN`] bytes.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<OlmEnvelope, OlmError> {
        util::check_len(plaintext.len(), MAX_OLM_MESSAGE_LEN)?;
        let msg = self
            .session
            .encrypt(plaintext)
            .map_err(|e| OlmError::Encryption(e.to_string()))?;
        let (message_type, bytes) = msg.to_parts();
        Ok(OlmEnvelope {
            message_type: u8::try_from(message_type).unwrap_or(1),
            body: util::base64_encode(bytes),
            sender_key: self.our_key.clone(),
        })
    }

    /// Decrypt an envelope from the peer.
    pub fn decrypt(&mut self, envelope: &OlmEnvelope) -> Result<Vec<u8>, OlmError> {
        let (msg, sender) = envelope.decode()?;
        if sender.to_base64() != self.peer_key {
            return Err(OlmError::Decryption(
                "sender key does not match this session".into(),
            ));
        }
        self.session
            .decrypt(&msg)
            .map_err(|e| OlmError::Decryption(e.to_string()))
    }

    /// Encrypt the session state under a 32-byte local key (base64).
    pub fn pickle(&self, local_key: &[u8; 32]) -> Result<String, OlmError> {
        let p = OlmSessionPickle {
            our_key: self.our_key.clone(),
            peer_key: self.peer_key.clone(),
            session: self.session.pickle(),
        };
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&p).map_err(|e| OlmError::Malformed(e.to_string()))?,
        );
        Ok(util::base64_encode(util::seal(
            local_key,
            SESSION_PICKLE_LABEL,
            &json,
        )?))
    }

    /// Restore from [`OlmSession::pickle`].
    pub fn unpickle(pickle: &str, local_key: &[u8; 32]) -> Result<Self, OlmError> {
        let sealed = util::base64_decode_capped(pickle, 1 << 20)?;
        let json = zeroize::Zeroizing::new(
            util::open(local_key, SESSION_PICKLE_LABEL, &sealed).map_err(|_| OlmError::Unpickle)?,
        );
        let p: OlmSessionPickle = util::from_json(&json).map_err(|_| OlmError::Unpickle)?;
        Ok(Self {
            session: Session::from_pickle(p.session),
            our_key: p.our_key,
            peer_key: p.peer_key,
        })
    }
}

/// A bounded store of Olm sessions keyed by peer curve25519 key, which routes incoming
/// envelopes to the right session and opens inbound sessions from pre-key messages.
#[derive(Debug, Default)]
pub struct OlmSessions {
    /// Least recently used first.
    peers: VecDeque<(String, VecDeque<OlmSession>)>,
}

impl OlmSessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions stored.
    pub fn len(&self) -> usize {
        self.peers.iter().map(|(_, s)| s.len()).sum()
    }

    /// True when no session is stored.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    fn take_peer(&mut self, peer: &str) -> VecDeque<OlmSession> {
        match self.peers.iter().position(|(k, _)| k == peer) {
            Some(i) => self.peers.remove(i).map(|(_, s)| s).unwrap_or_default(),
            None => VecDeque::new(),
        }
    }

    fn put_peer(&mut self, peer: String, mut sessions: VecDeque<OlmSession>) {
        while sessions.len() > MAX_SESSIONS_PER_PEER {
            sessions.pop_back();
        }
        self.peers.push_back((peer, sessions));
        while self.peers.len() > MAX_PEERS {
            self.peers.pop_front();
        }
    }

    /// Add a session (it becomes the preferred one for its peer).
    pub fn insert(&mut self, session: OlmSession) {
        let peer = session.peer_key.clone();
        let mut list = self.take_peer(&peer);
        list.push_front(session);
        self.put_peer(peer, list);
    }

    /// The preferred session for a peer, to encrypt with.
    pub fn session_for(&mut self, peer_curve25519: &str) -> Option<&mut OlmSession> {
        self.peers
            .iter_mut()
            .find(|(k, _)| k == peer_curve25519)
            .and_then(|(_, s)| s.front_mut())
    }

    /// Encrypt every session under a 32-byte local key: a JSON array of per-session
    /// pickles, least recently used peer first.
    pub fn pickle(&self, local_key: &[u8; 32]) -> Result<String, OlmError> {
        let mut all = Vec::with_capacity(self.len());
        for (_, sessions) in &self.peers {
            // Oldest session of a peer first, so re-inserting restores the preference order.
            for s in sessions.iter().rev() {
                all.push(s.pickle(local_key)?);
            }
        }
        serde_json::to_string(&all).map_err(|e| OlmError::Malformed(e.to_string()))
    }

    /// Restore from [`OlmSessions::pickle`].
    pub fn unpickle(pickle: &str, local_key: &[u8; 32]) -> Result<Self, OlmError> {
        util::check_len(pickle.len(), 64 << 20)?;
        let all: Vec<String> =
            util::from_json(pickle.as_bytes()).map_err(|_| OlmError::Unpickle)?;
        if all.len() > MAX_PEERS * MAX_SESSIONS_PER_PEER {
            return Err(OlmError::Unpickle);
        }
        let mut store = Self::new();
        for p in &all {
            store.insert(OlmSession::unpickle(p, local_key)?);
        }
        Ok(store)
    }

    /// Decrypt an incoming envelope with a stored session, or open a new inbound
    /// session when it is a pre-key message no stored session matches.
    pub fn decrypt(
        &mut self,
        device: &mut Device,
        envelope: &OlmEnvelope,
    ) -> Result<Vec<u8>, OlmError> {
        let (msg, sender) = envelope.decode()?;
        let peer = sender.to_base64();
        let mut list = self.take_peer(&peer);
        let pre_id = match &msg {
            OlmMessage::PreKey(p) => Some(p.session_id()),
            OlmMessage::Normal(_) => None,
        };
        let mut result = Err(OlmError::NoSession);
        for i in 0..list.len() {
            let Some(s) = list.get_mut(i) else { break };
            if pre_id.as_ref().is_some_and(|id| *id != s.session_id()) {
                continue;
            }
            if let Ok(pt) = s.session.decrypt(&msg) {
                if let Some(s) = list.remove(i) {
                    list.push_front(s);
                }
                result = Ok(pt);
                break;
            }
        }
        if result.is_err() && pre_id.is_some() {
            match OlmSession::inbound(device, envelope) {
                Ok((s, pt)) => {
                    list.push_front(s);
                    result = Ok(pt);
                }
                Err(e) => result = Err(e),
            }
        }
        if !list.is_empty() {
            self.put_peer(peer, list);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed_from(bob: &mut Device) -> ClaimedKey {
        bob.generate_one_time_keys(1);
        let up = bob.keys_for_upload();
        let (key_id, k) = up.one_time_keys.into_iter().next().unwrap();
        ClaimedKey {
            user_id: up.user_id,
            device_id: up.device_id,
            identity_keys: up.identity_keys,
            key_id,
            key: k.key,
            signature: k.signature,
            fallback: false,
        }
    }

    #[test]
    fn round_trip_both_directions() {
        let alice = Device::new("alice", "A").unwrap();
        let mut bob = Device::new("bob", "B").unwrap();
        let claimed = claimed_from(&mut bob);
        bob.mark_keys_as_published();
        let mut a = OlmSession::outbound(&alice, &claimed).unwrap();
        let env = a.encrypt(b"hello bob").unwrap();
        assert_eq!(env.message_type, 0);
        let env = OlmEnvelope::from_json(&env.to_json()).unwrap();
        let (mut b, pt) = OlmSession::inbound(&mut bob, &env).unwrap();
        assert_eq!(pt, b"hello bob");
        assert_eq!(a.session_id(), b.session_id());
        let reply = b.encrypt(b"hi alice").unwrap();
        assert_eq!(reply.message_type, 1);
        assert_eq!(a.decrypt(&reply).unwrap(), b"hi alice");
        // The one-time key is used up: a second inbound from the same message fails.
        assert!(matches!(
            OlmSession::inbound(&mut bob, &env),
            Err(OlmError::SessionCreation(_))
        ));
    }

    #[test]
    fn tampered_and_replayed_messages_error() {
        let alice = Device::new("alice", "A").unwrap();
        let mut bob = Device::new("bob", "B").unwrap();
        let claimed = claimed_from(&mut bob);
        let mut a = OlmSession::outbound(&alice, &claimed).unwrap();
        let env = a.encrypt(b"first").unwrap();
        let (mut b, _) = OlmSession::inbound(&mut bob, &env).unwrap();
        let env2 = b.encrypt(b"second").unwrap();
        let mut bytes = util::base64_decode(&env2.body).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
        let tampered = OlmEnvelope {
            body: util::base64_encode(&bytes),
            ..env2.clone()
        };
        assert!(matches!(a.decrypt(&tampered), Err(OlmError::Decryption(_))));
        assert_eq!(a.decrypt(&env2).unwrap(), b"second");
        assert!(
            matches!(a.decrypt(&env2), Err(OlmError::Decryption(_))),
            "replay must fail"
        );
        let wrong_type = OlmEnvelope {
            message_type: 9,
            ..env2
        };
        assert!(matches!(
            a.decrypt(&wrong_type),
            Err(OlmError::Malformed(_))
        ));
    }

    #[test]
    fn bad_claimed_signature_is_refused() {
        let alice = Device::new("alice", "A").unwrap();
        let mut bob = Device::new("bob", "B").unwrap();
        let mut claimed = claimed_from(&mut bob);
        claimed.device_id = "OTHER".into();
        assert!(matches!(
            OlmSession::outbound(&alice, &claimed),
            Err(OlmError::Key(_))
        ));
    }

    #[test]
    fn store_routes_prekey_and_normal_messages() {
        let mut alice = Device::new("alice", "A").unwrap();
        let mut bob = Device::new("bob", "B").unwrap();
        let claimed = claimed_from(&mut bob);
        let mut a = OlmSession::outbound(&alice, &claimed).unwrap();
        let m1 = a.encrypt(b"one").unwrap();
        let m2 = a.encrypt(b"two").unwrap();
        let mut bob_store = OlmSessions::new();
        assert_eq!(bob_store.decrypt(&mut bob, &m1).unwrap(), b"one");
        // Second pre-key message of the same session goes to the stored session.
        assert_eq!(bob_store.decrypt(&mut bob, &m2).unwrap(), b"two");
        assert_eq!(bob_store.len(), 1);
        let reply = bob_store
            .session_for(&alice.identity_keys().curve25519)
            .unwrap()
            .encrypt(b"r")
            .unwrap();
        // The store survives a pickle round trip.
        let key = [4u8; 32];
        let mut bob_store = OlmSessions::unpickle(&bob_store.pickle(&key).unwrap(), &key).unwrap();
        assert_eq!(bob_store.len(), 1);
        let m3 = a.encrypt(b"three").unwrap();
        assert_eq!(bob_store.decrypt(&mut bob, &m3).unwrap(), b"three");
        assert!(OlmSessions::unpickle(&bob_store.pickle(&key).unwrap(), &[0u8; 32]).is_err());
        let mut alice_store = OlmSessions::new();
        alice_store.insert(a);
        assert_eq!(alice_store.decrypt(&mut alice, &reply).unwrap(), b"r");
        // Garbage from an unknown sender gives NoSession, not a panic.
        let unknown = Device::new("eve", "E").unwrap();
        let bogus = OlmEnvelope {
            sender_key: unknown.identity_keys().curve25519,
            ..reply
        };
        assert!(alice_store.decrypt(&mut alice, &bogus).is_err());
    }

    #[test]
    fn session_pickle_round_trip() {
        let alice = Device::new("alice", "A").unwrap();
        let mut bob = Device::new("bob", "B").unwrap();
        let claimed = claimed_from(&mut bob);
        let mut a = OlmSession::outbound(&alice, &claimed).unwrap();
        let env = a.encrypt(b"x").unwrap();
        let (b, _) = OlmSession::inbound(&mut bob, &env).unwrap();
        let key = [3u8; 32];
        let mut b = OlmSession::unpickle(&b.pickle(&key).unwrap(), &key).unwrap();
        let r = b.encrypt(b"after restore").unwrap();
        assert_eq!(a.decrypt(&r).unwrap(), b"after restore");
        assert!(OlmSession::unpickle(&b.pickle(&key).unwrap(), &[0u8; 32]).is_err());
    }

    #[test]
    fn store_is_bounded_per_peer() {
        let alice = Device::new("alice", "A").unwrap();
        let mut bob = Device::new("bob", "B").unwrap();
        let mut store = OlmSessions::new();
        for _ in 0..(MAX_SESSIONS_PER_PEER + 3) {
            let c = claimed_from(&mut bob);
            store.insert(OlmSession::outbound(&alice, &c).unwrap());
        }
        assert_eq!(store.len(), MAX_SESSIONS_PER_PEER);
    }
}
