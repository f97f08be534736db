//! A device: its Olm account, the encrypted local pickle, and the signed prekey bundle.
//!
//! # The upload JSON (`POST /api/v1/keys/upload`)
//!
//! [`KeysUpload`] serializes to:
//!
//! ```json
//! {
//!   "user_id": "0190f1c2-…",
//!   "device_id": "DEVICEA",
//!   "identity_keys": { "curve25519": "<base64 32 B>", "ed25519": "<base64 32 B>" },
//!   "signature": "<base64 ed25519 signature over the canonical device keys>",
//!   "one_time_keys": {
//!     "AAAAAAAAAAE": { "key": "<base64 curve25519>", "signature": "<base64 ed25519>" }
//!   },
//!   "fallback_key": { "key_id": "AAAAAAAAAAA", "key": "<base64>", "signature": "<base64>" }
//! }
//! ```
//!
//! `fallback_key` is `null` when no new fallback key is being published. Base64 is
//! standard alphabet without padding. Every signature is made with the device's ed25519
//! identity key over a canonical byte string (fields joined by NUL, which ids may not
//! contain):
//!
//! - device keys: `copains.device_keys.v1 \0 user_id \0 device_id \0 curve25519 \0 ed25519`
//! - one-time key: `copains.one_time_key.v1 \0 user_id \0 device_id \0 key_id \0 key`
//! - fallback key: `copains.fallback_key.v1 \0 user_id \0 device_id \0 key_id \0 key`
//!
//! Binding user and device ids into every signature stops a server from replaying one
//! device's keys as another's. [`KeysUpload::verify`] checks all of it (the server
//! answers 422 when it fails); [`ClaimedKey::verify`] lets a client check a key it claimed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vodozemac::{
    Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature,
    olm::{Account, AccountPickle},
};

use crate::util::{self, UtilError};

/// Longest accepted user or device id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Most one-time keys accepted in one upload (vodozemac advises keeping 50 on the server).
pub const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize = 100;
/// Longest accepted encrypted device pickle, in bytes (a full account holding vodozemac's
/// 5,000 private one-time keys must fit; the pickle comes from local storage).
pub const MAX_PICKLE_LEN: usize = 8 << 20;
/// Longest accepted upload JSON, in bytes.
pub const MAX_UPLOAD_JSON_LEN: usize = 64 * 1024;

const DEVICE_KEYS_LABEL: &str = "copains.device_keys.v1";
const OTK_LABEL: &str = "copains.one_time_key.v1";
const FALLBACK_LABEL: &str = "copains.fallback_key.v1";
const PICKLE_LABEL: &[u8] = b"copains.device_pickle.v1";
/// Longest base64 key id vodozemac produces (a u64): 11 characters. We allow some slack.
const MAX_KEY_ID_LEN: usize = 16;

/// Errors of the device module.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A user or device id was empty, too long, or contained a NUL/control character.
    #[error("invalid {field}: must be 1..={MAX_ID_LEN} bytes with no control characters")]
    InvalidId {
        /// Which field.
        field: &'static str,
    },
    /// A public key was not valid base64 of the right length.
    #[error("invalid {field} key: {reason}")]
    InvalidKey {
        /// Which key.
        field: String,
        /// Why.
        reason: String,
    },
    /// A signature was malformed or did not verify.
    #[error("bad signature on {0}")]
    BadSignature(String),
    /// Too many one-time keys in one upload.
    #[error("too many one-time keys: {0}, at most {MAX_ONE_TIME_KEYS_PER_UPLOAD}")]
    TooManyKeys(usize),
    /// The upload JSON could not be parsed.
    #[error("malformed keys upload JSON: {0}")]
    Json(String),
    /// The pickle could not be decrypted or parsed (wrong key or corrupted data).
    #[error("could not unpickle the device (wrong key or corrupted data)")]
    Unpickle,
    /// A shared helper failed.
    #[error(transparent)]
    Util(#[from] UtilError),
}

/// The two public identity keys of a device, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityKeys {
    /// Curve25519 key used for Olm's triple Diffie-Hellman.
    pub curve25519: String,
    /// Ed25519 key used for signing (the device fingerprint).
    pub ed25519: String,
}

/// A signed public key (one-time key) in an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedKey {
    /// The curve25519 public key, base64.
    pub key: String,
    /// Ed25519 signature by the device, base64.
    pub signature: String,
}

/// The signed fallback key in an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFallbackKey {
    /// vodozemac key id, base64.
    pub key_id: String,
    /// The curve25519 public key, base64.
    pub key: String,
    /// Ed25519 signature by the device, base64.
    pub signature: String,
}

/// The body of `POST /api/v1/keys/upload`: signed device keys, one-time keys and the
/// fallback key (the prekey bundle). See the module docs for the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysUpload {
    /// Owner of the device.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// Public identity keys.
    pub identity_keys: IdentityKeys,
    /// Signature over the canonical device keys.
    pub signature: String,
    /// Unpublished one-time keys by key id.
    pub one_time_keys: BTreeMap<String, SignedKey>,
    /// The unpublished fallback key, if any.
    pub fallback_key: Option<SignedFallbackKey>,
}

/// What a verified upload contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSummary {
    /// Number of one-time keys.
    pub one_time_keys: usize,
    /// Whether a fallback key was included.
    pub has_fallback_key: bool,
}

/// A key handed out by `POST /api/v1/keys/claim`, with what a client needs to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKey {
    /// Owner of the device.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// The device's identity keys (from `keys/query`).
    pub identity_keys: IdentityKeys,
    /// Key id of the claimed key.
    pub key_id: String,
    /// The claimed curve25519 key, base64.
    pub key: String,
    /// The device's signature over it.
    pub signature: String,
    /// True when the server ran out of one-time keys and handed out the fallback key.
    #[serde(default)]
    pub fallback: bool,
}

fn validate_id(field: &'static str, id: &str) -> Result<(), DeviceError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(DeviceError::InvalidId { field });
    }
    Ok(())
}

fn canonical(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

fn parse_ed25519(field: &str, s: &str) -> Result<Ed25519PublicKey, DeviceError> {
    util::check_len(s.len(), 64)?;
    Ed25519PublicKey::from_base64(s).map_err(|e| DeviceError::InvalidKey {
        field: field.to_owned(),
        reason: e.to_string(),
    })
}

pub(crate) fn parse_curve25519(field: &str, s: &str) -> Result<Curve25519PublicKey, DeviceError> {
    util::check_len(s.len(), 64)?;
    Curve25519PublicKey::from_base64(s).map_err(|e| DeviceError::InvalidKey {
        field: field.to_owned(),
        reason: e.to_string(),
    })
}

fn check_signature(
    signer: &Ed25519PublicKey,
    what: &str,
    message: &[u8],
    signature: &str,
) -> Result<(), DeviceError> {
    util::check_len(signature.len(), 128)?;
    let sig = Ed25519Signature::from_base64(signature)
        .map_err(|_| DeviceError::BadSignature(what.to_owned()))?;
    signer
        .verify(message, &sig)
        .map_err(|_| DeviceError::BadSignature(what.to_owned()))
}

impl KeysUpload {
    /// Parse an upload from JSON, capping its size first.
    pub fn from_json(json: &str) -> Result<Self, DeviceError> {
        util::check_len(json.len(), MAX_UPLOAD_JSON_LEN)?;
        util::from_json(json.as_bytes()).map_err(|e| DeviceError::Json(e.to_string()))
    }

    /// Serialize to the JSON body.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Verify every signature and bound in the upload. The server answers 422 on error.
    pub fn verify(&self) -> Result<UploadSummary, DeviceError> {
        validate_id("user_id", &self.user_id)?;
        validate_id("device_id", &self.device_id)?;
        let ed = parse_ed25519("ed25519", &self.identity_keys.ed25519)?;
        parse_curve25519("curve25519", &self.identity_keys.curve25519)?;
        let msg = canonical(&[
            DEVICE_KEYS_LABEL,
            &self.user_id,
            &self.device_id,
            &self.identity_keys.curve25519,
            &self.identity_keys.ed25519,
        ]);
        check_signature(&ed, "device keys", &msg, &self.signature)?;
        if self.one_time_keys.len() > MAX_ONE_TIME_KEYS_PER_UPLOAD {
            return Err(DeviceError::TooManyKeys(self.one_time_keys.len()));
        }
        for (key_id, k) in &self.one_time_keys {
            util::check_len(key_id.len(), MAX_KEY_ID_LEN)?;
            parse_curve25519("one-time", &k.key)?;
            let msg = canonical(&[OTK_LABEL, &self.user_id, &self.device_id, key_id, &k.key]);
            check_signature(&ed, &format!("one-time key {key_id}"), &msg, &k.signature)?;
        }
        if let Some(fb) = &self.fallback_key {
            util::check_len(fb.key_id.len(), MAX_KEY_ID_LEN)?;
            parse_curve25519("fallback", &fb.key)?;
            let msg = canonical(&[
                FALLBACK_LABEL,
                &self.user_id,
                &self.device_id,
                &fb.key_id,
                &fb.key,
            ]);
            check_signature(&ed, "fallback key", &msg, &fb.signature)?;
        }
        Ok(UploadSummary {
            one_time_keys: self.one_time_keys.len(),
            has_fallback_key: self.fallback_key.is_some(),
        })
    }
}

impl ClaimedKey {
    /// Parse from JSON (capped).
    pub fn from_json(json: &str) -> Result<Self, DeviceError> {
        util::check_len(json.len(), 4096)?;
        util::from_json(json.as_bytes()).map_err(|e| DeviceError::Json(e.to_string()))
    }

    /// Check the claimed key's signature by the device's ed25519 identity key.
    pub fn verify(&self) -> Result<(), DeviceError> {
        validate_id("user_id", &self.user_id)?;
        validate_id("device_id", &self.device_id)?;
        util::check_len(self.key_id.len(), MAX_KEY_ID_LEN)?;
        let ed = parse_ed25519("ed25519", &self.identity_keys.ed25519)?;
        parse_curve25519("claimed", &self.key)?;
        let label = if self.fallback {
            FALLBACK_LABEL
        } else {
            OTK_LABEL
        };
        let msg = canonical(&[
            label,
            &self.user_id,
            &self.device_id,
            &self.key_id,
            &self.key,
        ]);
        check_signature(&ed, "claimed key", &msg, &self.signature)
    }
}

#[derive(Serialize, Deserialize)]
struct DevicePickle {
    user_id: String,
    device_id: String,
    account: AccountPickle,
}

/// One device: an Olm account plus the ids it is registered under.
pub struct Device {
    pub(crate) account: Account,
    user_id: String,
    device_id: String,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("ed25519", &self.account.ed25519_key().to_base64())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Create a device with fresh random identity keys.
    pub fn new(user_id: &str, device_id: &str) -> Result<Self, DeviceError> {
        validate_id("user_id", user_id)?;
        validate_id("device_id", device_id)?;
        Ok(Self {
            account: Account::new(),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
        })
    }

    /// The owner's user id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The device id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Public identity keys.
    pub fn identity_keys(&self) -> IdentityKeys {
        let k = self.account.identity_keys();
        IdentityKeys {
            curve25519: k.curve25519.to_base64(),
            ed25519: k.ed25519.to_base64(),
        }
    }

    /// Sign arbitrary bytes with the ed25519 identity key (base64 signature).
    pub fn sign(&self, message: &[u8]) -> String {
        self.account.sign(message).to_base64()
    }

    /// Generate up to `count` new one-time keys (capped at vodozemac's advised maximum of
    /// 50 unpublished keys); returns how many were created.
    pub fn generate_one_time_keys(&mut self, count: usize) -> usize {
        let room = self
            .account
            .max_number_of_one_time_keys()
            .saturating_sub(self.account.one_time_keys().len());
        self.account
            .generate_one_time_keys(count.min(room))
            .created
            .len()
    }

    /// Generate a new fallback key (the previous one stays usable until the next rotation).
    pub fn generate_fallback_key(&mut self) {
        let _ = self.account.generate_fallback_key();
    }

    /// The signed bundle of unpublished keys, ready for `POST /api/v1/keys/upload`.
    pub fn keys_for_upload(&self) -> KeysUpload {
        let ik = self.identity_keys();
        let signature = self.sign(&canonical(&[
            DEVICE_KEYS_LABEL,
            &self.user_id,
            &self.device_id,
            &ik.curve25519,
            &ik.ed25519,
        ]));
        // Filled with `insert` rather than `collect()`: the latter adds a sort to the wasm
        // module, `insert` is already there for deserialization.
        let mut one_time_keys = BTreeMap::new();
        for (id, key) in self.account.one_time_keys() {
            let key_id = id.to_base64();
            let key = key.to_base64();
            let signature = self.sign(&canonical(&[
                OTK_LABEL,
                &self.user_id,
                &self.device_id,
                &key_id,
                &key,
            ]));
            one_time_keys.insert(key_id, SignedKey { key, signature });
        }
        let fallback_key = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .map(|(id, key)| {
                let key_id = id.to_base64();
                let key = key.to_base64();
                let signature = self.sign(&canonical(&[
                    FALLBACK_LABEL,
                    &self.user_id,
                    &self.device_id,
                    &key_id,
                    &key,
                ]));
                SignedFallbackKey {
                    key_id,
                    key,
                    signature,
                }
            });
        KeysUpload {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            identity_keys: ik,
            signature,
            one_time_keys,
            fallback_key,
        }
    }

    /// Mark every current one-time and fallback key as published (call after a
    /// successful upload so they are not uploaded again).
    pub fn mark_keys_as_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    /// Encrypt the whole device state under a 32-byte local key (base64 output).
    pub fn pickle(&self, local_key: &[u8; 32]) -> Result<String, DeviceError> {
        let p = DevicePickle {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            account: self.account.pickle(),
        };
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&p).map_err(|e| DeviceError::Json(e.to_string()))?,
        );
        Ok(util::base64_encode(util::seal(
            local_key,
            PICKLE_LABEL,
            &json,
        )?))
    }

    /// Restore a device from [`Device::pickle`] output.
    pub fn unpickle(pickle: &str, local_key: &[u8; 32]) -> Result<Self, DeviceError> {
        let sealed = util::base64_decode_capped(pickle, MAX_PICKLE_LEN)?;
        let json = zeroize::Zeroizing::new(
            util::open(local_key, PICKLE_LABEL, &sealed).map_err(|_| DeviceError::Unpickle)?,
        );
        let p: DevicePickle = util::from_json(&json).map_err(|_| DeviceError::Unpickle)?;
        validate_id("user_id", &p.user_id)?;
        validate_id("device_id", &p.device_id)?;
        Ok(Self {
            account: Account::from_pickle(p.account),
            user_id: p.user_id,
            device_id: p.device_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        let mut d = Device::new("alice", "DEV1").unwrap();
        assert_eq!(d.generate_one_time_keys(5), 5);
        d.generate_fallback_key();
        d
    }

    #[test]
    fn bundle_verifies_and_json_round_trips() {
        let d = device();
        let up = d.keys_for_upload();
        assert_eq!(up.one_time_keys.len(), 5);
        assert!(up.fallback_key.is_some());
        let parsed = KeysUpload::from_json(&up.to_json()).unwrap();
        assert_eq!(parsed, up);
        let s = parsed.verify().unwrap();
        assert_eq!(
            s,
            UploadSummary {
                one_time_keys: 5,
                has_fallback_key: true
            }
        );
        let v: serde_json::Value = serde_json::from_str(&up.to_json()).unwrap();
        for k in [
            "user_id",
            "device_id",
            "identity_keys",
            "signature",
            "one_time_keys",
            "fallback_key",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn tampered_bundles_are_rejected() {
        let d = device();
        let up = d.keys_for_upload();
        let mut a = up.clone();
        a.device_id = "DEV2".into();
        assert!(matches!(a.verify(), Err(DeviceError::BadSignature(_))));
        let mut b = up.clone();
        let other = Device::new("alice", "DEV1").unwrap();
        b.identity_keys.curve25519 = other.identity_keys().curve25519;
        assert!(matches!(b.verify(), Err(DeviceError::BadSignature(_))));
        let mut c = up.clone();
        let first = c.one_time_keys.values_mut().next().unwrap();
        first.key = other.identity_keys().curve25519;
        assert!(matches!(c.verify(), Err(DeviceError::BadSignature(_))));
        let mut e = up.clone();
        e.fallback_key.as_mut().unwrap().signature = up.signature.clone();
        assert!(matches!(e.verify(), Err(DeviceError::BadSignature(_))));
        let mut f = up;
        f.identity_keys.ed25519 = "nope".into();
        assert!(matches!(f.verify(), Err(DeviceError::InvalidKey { .. })));
    }

    #[test]
    fn mark_published_empties_the_next_bundle() {
        let mut d = device();
        d.mark_keys_as_published();
        let up = d.keys_for_upload();
        assert!(up.one_time_keys.is_empty());
        assert!(up.fallback_key.is_none());
        up.verify().unwrap();
    }

    #[test]
    fn claimed_key_verification() {
        let d = device();
        let up = d.keys_for_upload();
        let (key_id, k) = up.one_time_keys.iter().next().unwrap();
        let mut claimed = ClaimedKey {
            user_id: up.user_id.clone(),
            device_id: up.device_id.clone(),
            identity_keys: up.identity_keys.clone(),
            key_id: key_id.clone(),
            key: k.key.clone(),
            signature: k.signature.clone(),
            fallback: false,
        };
        claimed.verify().unwrap();
        claimed.fallback = true;
        assert!(claimed.verify().is_err());
        let fb = up.fallback_key.unwrap();
        let claimed = ClaimedKey {
            key_id: fb.key_id,
            key: fb.key,
            signature: fb.signature,
            ..claimed
        };
        claimed.verify().unwrap();
    }

    #[test]
    fn pickle_round_trip_and_wrong_key() {
        let d = device();
        let key = [7u8; 32];
        let p = d.pickle(&key).unwrap();
        let back = Device::unpickle(&p, &key).unwrap();
        assert_eq!(back.identity_keys(), d.identity_keys());
        assert_eq!(back.user_id(), "alice");
        assert_eq!(back.keys_for_upload().one_time_keys.len(), 5);
        assert!(matches!(
            Device::unpickle(&p, &[8u8; 32]),
            Err(DeviceError::Unpickle)
        ));
        assert!(Device::unpickle("%%%", &key).is_err());
    }

    #[test]
    fn pickle_of_a_full_account_fits_the_cap() {
        let mut d = Device::new("u", "d").unwrap();
        for _ in 0..110 {
            d.generate_one_time_keys(50);
            d.mark_keys_as_published();
        }
        let p = d.pickle(&[1u8; 32]).unwrap();
        assert!(
            p.len() < MAX_PICKLE_LEN / 4 * 3,
            "pickle is {} bytes",
            p.len()
        );
        Device::unpickle(&p, &[1u8; 32]).unwrap();
    }

    #[test]
    fn ids_are_validated() {
        assert!(Device::new("", "x").is_err());
        assert!(Device::new("a\0b", "x").is_err());
        assert!(Device::new(&"a".repeat(MAX_ID_LEN + 1), "x").is_err());
    }

    #[test]
    fn one_time_key_generation_is_capped() {
        let mut d = Device::new("u", "d").unwrap();
        assert_eq!(d.generate_one_time_keys(10_000), 50);
        assert_eq!(d.generate_one_time_keys(1), 0);
        assert!(d.keys_for_upload().verify().is_ok());
    }
}
