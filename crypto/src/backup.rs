//! Key backup: a recovery key generated on the client and session keys encrypted under a
//! key derived from it. The server stores the resulting blob and cannot read it.
//!
//! - **Recovery key**: 32 random bytes. Shown to the user as base58 (Bitcoin alphabet) of
//!   `0x43 0x50 ("CP") || key || parity`, where parity is the XOR of all previous bytes,
//!   in groups of 4 characters separated by spaces. Decoding ignores whitespace and
//!   rejects a bad prefix or parity (typos).
//! - **Backup key**: `HKDF-SHA256(ikm = recovery key, salt = "copains-seal-v1",
//!   info = "copains.key_backup.v1")`, used with AES-256-GCM and a random 96-bit nonce.
//! - **Blob**: `version(1) || nonce(12) || ciphertext || tag(16)`, base64 in JSON. The
//!   plaintext of a session-key backup is the JSON array of
//!   [`ExportedRoomKey`](crate::megolm::ExportedRoomKey).

use zeroize::{Zeroize, Zeroizing};

use crate::{
    megolm::ExportedRoomKey,
    util::{self, UtilError},
};

/// Largest backup plaintext or blob accepted, in bytes.
pub const MAX_BACKUP_LEN: usize = 16 * 1024 * 1024;
/// Most room keys in one session-key backup.
pub const MAX_BACKUP_KEYS: usize = 100_000;
const PREFIX: [u8; 2] = [0x43, 0x50];
const LABEL: &[u8] = b"copains.key_backup.v1";
const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const MAX_ENCODED_LEN: usize = 128;

/// Errors of the backup module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    /// The recovery key text is not a valid recovery key (typo, wrong length or prefix).
    #[error("invalid recovery key: {0}")]
    InvalidRecoveryKey(&'static str),
    /// The blob could not be decrypted: wrong recovery key, or tampered or corrupted data.
    #[error("could not decrypt the backup (wrong recovery key or corrupted data)")]
    Decryption,
    /// The decrypted content was not a valid session-key list.
    #[error("malformed backup content: {0}")]
    Malformed(String),
    /// A size cap or helper failed.
    #[error(transparent)]
    Util(#[from] UtilError),
}

/// A 32-byte recovery key.
pub struct RecoveryKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

fn base58_encode(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|d| char::from(ALPHABET[usize::from(*d)])),
    );
    digits.zeroize();
    out
}

fn base58_decode(s: &str) -> Result<Vec<u8>, BackupError> {
    let mut bytes: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes() {
        let mut carry =
            ALPHABET
                .iter()
                .position(|a| *a == c)
                .ok_or(BackupError::InvalidRecoveryKey(
                    "character outside the base58 alphabet",
                ))? as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|c| *c == b'1').count();
    bytes.extend(std::iter::repeat_n(0, zeros));
    bytes.reverse();
    Ok(bytes)
}

impl RecoveryKey {
    /// A new random recovery key.
    pub fn generate() -> Result<Self, BackupError> {
        Ok(Self(Zeroizing::new(util::random_array()?)))
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The human-readable form: base58 in groups of 4 characters.
    pub fn to_display(&self) -> String {
        let mut raw = Zeroizing::new(Vec::with_capacity(35));
        raw.extend_from_slice(&PREFIX);
        raw.extend_from_slice(self.0.as_ref());
        let parity = raw.iter().fold(0u8, |a, b| a ^ b);
        raw.push(parity);
        let encoded = Zeroizing::new(base58_encode(&raw));
        encoded
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parse the human-readable form (whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        if text.len() > MAX_ENCODED_LEN * 2 {
            return Err(BackupError::InvalidRecoveryKey("too long"));
        }
        let compact: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        if compact.len() > MAX_ENCODED_LEN {
            return Err(BackupError::InvalidRecoveryKey("too long"));
        }
        let raw = Zeroizing::new(base58_decode(&compact)?);
        if raw.len() != 35 {
            return Err(BackupError::InvalidRecoveryKey("wrong length"));
        }
        if raw[..2] != PREFIX {
            return Err(BackupError::InvalidRecoveryKey("wrong prefix"));
        }
        if raw.iter().fold(0u8, |a, b| a ^ b) != 0 {
            return Err(BackupError::InvalidRecoveryKey(
                "parity check failed (typo?)",
            ));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[2..34]);
        Ok(Self::from_bytes(key))
    }

    /// Encrypt arbitrary bytes (at most [`MAX_BACKUP_LEN`]) into a backup blob.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, BackupError> {
        util::check_len(plaintext.len(), MAX_BACKUP_LEN)?;
        Ok(util::seal(self.0.as_ref(), LABEL, plaintext)?)
    }

    /// Decrypt a blob from [`RecoveryKey::encrypt`].
    pub fn decrypt(&self, blob: &[u8]) -> Result<Vec<u8>, BackupError> {
        util::check_len(blob.len(), MAX_BACKUP_LEN + 64)?;
        util::open(self.0.as_ref(), LABEL, blob).map_err(|_| BackupError::Decryption)
    }

    /// Encrypt a list of exported room keys into a base64 blob for the server.
    pub fn encrypt_room_keys(&self, keys: &[ExportedRoomKey]) -> Result<String, BackupError> {
        if keys.len() > MAX_BACKUP_KEYS {
            return Err(BackupError::Malformed(format!(
                "too many keys: {}",
                keys.len()
            )));
        }
        let json = Zeroizing::new(
            serde_json::to_vec(keys).map_err(|e| BackupError::Malformed(e.to_string()))?,
        );
        Ok(util::base64_encode(self.encrypt(&json)?))
    }

    /// Decrypt a base64 blob back into room keys.
    pub fn decrypt_room_keys(&self, blob_b64: &str) -> Result<Vec<ExportedRoomKey>, BackupError> {
        let blob = util::base64_decode_capped(blob_b64, MAX_BACKUP_LEN + 64)?;
        let json = Zeroizing::new(self.decrypt(&blob)?);
        let keys: Vec<ExportedRoomKey> =
            util::from_json(&json).map_err(|e| BackupError::Malformed(e.to_string()))?;
        if keys.len() > MAX_BACKUP_KEYS {
            return Err(BackupError::Malformed(format!(
                "too many keys: {}",
                keys.len()
            )));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::megolm::{InboundGroup, OutboundGroup};

    #[test]
    fn base58_round_trip() {
        for v in [
            vec![],
            vec![0],
            vec![0, 0, 1],
            vec![255; 35],
            (0..35).collect::<Vec<u8>>(),
        ] {
            assert_eq!(base58_decode(&base58_encode(&v)).unwrap(), v);
        }
        assert_eq!(base58_encode(b"hello world"), "StV1DL6CwTryKyV");
    }

    #[test]
    fn recovery_key_display_round_trip_and_typos() {
        let k = RecoveryKey::generate().unwrap();
        let shown = k.to_display();
        assert!(shown.split(' ').all(|g| g.len() <= 4));
        let back = RecoveryKey::parse(&shown).unwrap();
        assert_eq!(back.0.as_ref(), k.0.as_ref());
        // One changed character is caught.
        let mut chars: Vec<char> = shown.chars().collect();
        let i = chars.iter().rposition(|c| *c != ' ').unwrap() - 3;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(RecoveryKey::parse(&typo).is_err());
        assert!(RecoveryKey::parse("0OIl").is_err());
        assert!(RecoveryKey::parse("").is_err());
    }

    #[test]
    fn backup_round_trip_wrong_key_and_tamper() {
        let k = RecoveryKey::generate().unwrap();
        let mut out = OutboundGroup::new("chan", 0).unwrap();
        let inb = InboundGroup::from_room_key(&out.room_key()).unwrap();
        let msg = out.encrypt(b"backed up").unwrap();
        let blob = k.encrypt_room_keys(&[inb.export()]).unwrap();
        let keys = k.decrypt_room_keys(&blob).unwrap();
        let mut restored = InboundGroup::from_exported(&keys[0]).unwrap();
        assert_eq!(restored.decrypt(&msg).unwrap().plaintext, b"backed up");
        let other = RecoveryKey::generate().unwrap();
        assert_eq!(
            other.decrypt_room_keys(&blob).err(),
            Some(BackupError::Decryption)
        );
        let mut raw = util::base64_decode(&blob).unwrap();
        raw[20] ^= 1;
        assert_eq!(k.decrypt(&raw).err(), Some(BackupError::Decryption));
    }
}
