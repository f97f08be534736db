//! Small shared helpers: bounded base64, randomness, and an AES-256-GCM "seal" used by
//! the device pickle and the key backup.

use aes_gcm::{
    AeadInOut, Aes256Gcm, KeyInit,
    aead::{Nonce, Tag},
};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Errors of the shared helpers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UtilError {
    /// The input was longer than the cap for that field.
    #[error("input too long: {len} bytes, at most {max} allowed")]
    TooLong {
        /// Length received.
        len: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// The input was not valid base64.
    #[error("invalid base64")]
    Base64,
    /// The system random number generator failed.
    #[error("the random number generator failed")]
    Random,
    /// A number was not a non-negative integer below 2^53.
    #[error("expected a non-negative integer below 2^53")]
    BadNumber,
    /// A key was not 32 bytes.
    #[error("expected a 32-byte key, got {0} bytes")]
    BadKeyLength(usize),
    /// A sealed blob was malformed, had an unknown version, or failed authentication
    /// (wrong key or tampered data).
    #[error("the sealed data could not be opened (wrong key, tampered or malformed)")]
    Open,
}

/// Encode bytes as unpadded standard base64 (the encoding vodozemac uses).
pub fn base64_encode(bytes: impl AsRef<[u8]>) -> String {
    vodozemac::base64_encode(bytes)
}

/// Decode unpadded (or padded) standard base64.
pub fn base64_decode(input: &str) -> Result<Vec<u8>, UtilError> {
    vodozemac::base64_decode(input.trim_end_matches('=')).map_err(|_| UtilError::Base64)
}

/// Decode base64 after checking the encoded length against `max_decoded` bytes.
pub(crate) fn base64_decode_capped(input: &str, max_decoded: usize) -> Result<Vec<u8>, UtilError> {
    let max_encoded = max_decoded.div_ceil(3) * 4;
    if input.len() > max_encoded {
        return Err(UtilError::TooLong {
            len: input.len(),
            max: max_encoded,
        });
    }
    base64_decode(input)
}

/// Parse JSON into `T`. Every JSON input of the crate (wire shapes and pickles) goes
/// through here so that serde_json's parser is instantiated for one reader (`SliceRead`)
/// only, which keeps the wasm module small; `from_str` would add a second copy.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    crate::json::from_slice(json)
}

/// Reject a string or byte field longer than `max`.
pub(crate) fn check_len(len: usize, max: usize) -> Result<(), UtilError> {
    if len > max {
        Err(UtilError::TooLong { len, max })
    } else {
        Ok(())
    }
}

/// Fill a fresh array with CSPRNG bytes.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], UtilError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| UtilError::Random)?;
    Ok(out)
}

/// Convert a JavaScript number to a `u64`: it must be a finite, non-negative integer no
/// larger than 2^53 - 1 (the largest integer a JS number holds exactly).
pub fn u64_from_js_number(value: f64) -> Result<u64, UtilError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if value.is_finite() && (0.0..=MAX_SAFE).contains(&value) && value.fract() == 0.0 {
        Ok(value as u64)
    } else {
        Err(UtilError::BadNumber)
    }
}

/// Convert a byte slice to a 32-byte key.
pub fn key32(bytes: &[u8]) -> Result<[u8; 32], UtilError> {
    bytes
        .try_into()
        .map_err(|_| UtilError::BadKeyLength(bytes.len()))
}

/// Version byte of sealed blobs.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Derive a 32-byte AES-256-GCM key from `ikm` with HKDF-SHA256 and a purpose label.
fn derive_seal_key(ikm: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"copains-seal-v1"), ikm);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: this cannot fail.
    let _ = hk.expand(label, okm.as_mut());
    okm
}

/// Encrypt `plaintext` under a key derived from `ikm` and `label`:
/// `version(1) || nonce(12) || ciphertext || tag(16)`, with `label` also bound as AAD.
pub(crate) fn seal(ikm: &[u8], label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, UtilError> {
    let key = derive_seal_key(ikm, label);
    let cipher = Aes256Gcm::new(&(*key).into());
    let nonce_bytes: [u8; NONCE_LEN] = random_array()?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce_bytes);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let nonce = Nonce::<Aes256Gcm>::from(nonce_bytes);
    let tag = cipher
        .encrypt_inout_detached(&nonce, label, (&mut out[start..]).into())
        .map_err(|_| UtilError::TooLong {
            len: plaintext.len(),
            max: usize::MAX,
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Inverse of [`seal`].
pub(crate) fn open(ikm: &[u8], label: &[u8], sealed: &[u8]) -> Result<Vec<u8>, UtilError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_VERSION {
        return Err(UtilError::Open);
    }
    let key = derive_seal_key(ikm, label);
    let cipher = Aes256Gcm::new(&(*key).into());
    let nonce_bytes: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
        .try_into()
        .map_err(|_| UtilError::Open)?;
    let body = &sealed[1 + NONCE_LEN..];
    let (ct, tag) = body.split_at(body.len() - TAG_LEN);
    let tag = Tag::<Aes256Gcm>::try_from(tag).map_err(|_| UtilError::Open)?;
    let mut buf = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(nonce_bytes),
            label,
            buf.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| UtilError::Open)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper() {
        let sealed = seal(b"key", b"label", b"hello").unwrap();
        assert_eq!(open(b"key", b"label", &sealed).unwrap(), b"hello");
        assert_eq!(open(b"other", b"label", &sealed), Err(UtilError::Open));
        assert_eq!(open(b"key", b"other", &sealed), Err(UtilError::Open));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(open(b"key", b"label", &bad), Err(UtilError::Open));
        assert_eq!(open(b"key", b"label", &sealed[..5]), Err(UtilError::Open));
    }

    #[test]
    fn base64_caps() {
        assert!(base64_decode_capped(&"A".repeat(100), 3).is_err());
        assert_eq!(base64_decode_capped("aGk", 3).unwrap(), b"hi");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("!!"), Err(UtilError::Base64));
        assert_eq!(u64_from_js_number(5.0), Ok(5));
        assert!(u64_from_js_number(-1.0).is_err());
        assert!(u64_from_js_number(f64::NAN).is_err());
        assert!(u64_from_js_number(1.5).is_err());
        assert!(u64_from_js_number(1e300).is_err());
        assert!(key32(&[0u8; 31]).is_err());
    }
}
