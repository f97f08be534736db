//! Identity verification: safety numbers and the SAS emoji/decimal flow.
//!
//! # Safety number construction
//!
//! Like Signal's: for each side, a 30-digit *fingerprint* is computed from its ed25519
//! identity key and user id:
//!
//! ```text
//! h = SHA-512(0x0000 || ed25519_key || user_id)          (version 0, key = 32 raw bytes)
//! repeat 5199 times: h = SHA-512(h || ed25519_key)
//! fingerprint = for each of the first six 5-byte chunks c of h:
//!               format("{:05}", big_endian_u40(c) mod 100000)
//! ```
//!
//! The safety number is the two fingerprints concatenated in ascending order (60 digits),
//! so both sides get the same digits whichever way round they compute it. It is shown as
//! 12 groups of 5 digits.
//!
//! # SAS
//!
//! Each side creates a [`SasVerification`], they exchange public keys (over Olm, inside a
//! transaction), then both call [`SasVerification::establish`] with the same
//! [`SasInfo`]. Both get the same 7 emoji (the Matrix SAS emoji table) and 3 decimals;
//! if the users confirm a match, each side sends a MAC of its identity key
//! ([`EstablishedSas::mac`]) which the other checks with [`EstablishedSas::verify_mac`].

use sha2::{Digest, Sha512};
use vodozemac::sas::{EstablishedSas as VzEstablished, Mac, Sas};

use crate::util::{self, UtilError};

/// SHA-512 iterations of the safety number (Signal uses 5200).
pub const SAFETY_NUMBER_ITERATIONS: usize = 5200;
const MAX_FIELD: usize = 256;

/// Errors of the verification module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A key was not valid base64 of the right size.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// The SAS public key was invalid or gave a non-contributory key exchange.
    #[error("invalid SAS public key: {0}")]
    SasKey(String),
    /// The SAS was already established or consumed.
    #[error("the SAS exchange was already completed")]
    AlreadyEstablished,
    /// The SAS has not been established yet.
    #[error("the SAS exchange has not been established")]
    NotEstablished,
    /// The other side's MAC did not match: the keys differ (possible attack).
    #[error("SAS MAC mismatch: the other device's keys did not verify")]
    MacMismatch,
    /// The SAS info JSON was malformed.
    #[error("malformed SAS info: {0}")]
    Malformed(String),
    /// A field was too long or malformed.
    #[error(transparent)]
    Util(#[from] UtilError),
}

fn fingerprint(ed25519: &[u8; 32], user_id: &str) -> String {
    let mut h = Sha512::new();
    h.update([0u8, 0u8]);
    h.update(ed25519);
    h.update(user_id.as_bytes());
    let mut digest = h.finalize();
    for _ in 1..SAFETY_NUMBER_ITERATIONS {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(ed25519);
        digest = h.finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in digest.chunks(5).take(6) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

fn decode_ed25519(field: &'static str, b64: &str) -> Result<[u8; 32], VerifyError> {
    let bytes = util::base64_decode_capped(b64, 32).map_err(|_| VerifyError::InvalidKey(field))?;
    bytes.try_into().map_err(|_| VerifyError::InvalidKey(field))
}

/// The 60-digit safety number for two identities (ed25519 keys in base64, user ids).
/// The result is the same whichever side is passed first.
pub fn safety_number(
    our_user_id: &str,
    our_ed25519: &str,
    their_user_id: &str,
    their_ed25519: &str,
) -> Result<String, VerifyError> {
    util::check_len(our_user_id.len(), MAX_FIELD)?;
    util::check_len(their_user_id.len(), MAX_FIELD)?;
    let a = fingerprint(&decode_ed25519("our ed25519", our_ed25519)?, our_user_id);
    let b = fingerprint(
        &decode_ed25519("their ed25519", their_ed25519)?,
        their_user_id,
    );
    Ok(if a <= b { a + &b } else { b + &a })
}

/// Format a safety number as 12 groups of 5 digits separated by spaces.
pub fn format_safety_number(digits: &str) -> String {
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The 64 SAS emoji (Matrix specification table): (emoji, English name).
pub const SAS_EMOJI: [(&str, &str); 64] = [
    ("🐶", "Dog"),
    ("🐱", "Cat"),
    ("🦁", "Lion"),
    ("🐎", "Horse"),
    ("🦄", "Unicorn"),
    ("🐷", "Pig"),
    ("🐘", "Elephant"),
    ("🐰", "Rabbit"),
    ("🐼", "Panda"),
    ("🐓", "Rooster"),
    ("🐧", "Penguin"),
    ("🐢", "Turtle"),
    ("🐟", "Fish"),
    ("🐙", "Octopus"),
    ("🦋", "Butterfly"),
    ("🌷", "Flower"),
    ("🌳", "Tree"),
    ("🌵", "Cactus"),
    ("🍄", "Mushroom"),
    ("🌏", "Globe"),
    ("🌙", "Moon"),
    ("☁️", "Cloud"),
    ("🔥", "Fire"),
    ("🍌", "Banana"),
    ("🍎", "Apple"),
    ("🍓", "Strawberry"),
    ("🌽", "Corn"),
    ("🍕", "Pizza"),
    ("🎂", "Cake"),
    ("❤️", "Heart"),
    ("😀", "Smiley"),
    ("🤖", "Robot"),
    ("🎩", "Hat"),
    ("👓", "Glasses"),
    ("🔧", "Spanner"),
    ("🎅", "Santa"),
    ("👍", "Thumbs Up"),
    ("☂️", "Umbrella"),
    ("⌛", "Hourglass"),
    ("⏰", "Clock"),
    ("🎁", "Gift"),
    ("💡", "Light Bulb"),
    ("📕", "Book"),
    ("✏️", "Pencil"),
    ("📎", "Paperclip"),
    ("✂️", "Scissors"),
    ("🔒", "Lock"),
    ("🔑", "Key"),
    ("🔨", "Hammer"),
    ("☎️", "Telephone"),
    ("🏁", "Flag"),
    ("🚂", "Train"),
    ("🚲", "Bicycle"),
    ("✈️", "Aeroplane"),
    ("🚀", "Rocket"),
    ("🏆", "Trophy"),
    ("⚽", "Ball"),
    ("🎸", "Guitar"),
    ("🎺", "Trumpet"),
    ("🔔", "Bell"),
    ("⚓", "Anchor"),
    ("🎧", "Headphones"),
    ("📁", "Folder"),
    ("📌", "Pin"),
];

/// Who is who in a SAS exchange, so both sides derive the same bytes.
///
/// JSON: `{"initiator": [user_id, device_id, sas_public_key], "acceptor": [..], "transaction_id": ".."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SasInfo {
    /// The side that started the verification: user id, device id, SAS public key.
    pub initiator: (String, String, String),
    /// The side that accepted: user id, device id, SAS public key.
    pub acceptor: (String, String, String),
    /// A transaction id both sides share.
    pub transaction_id: String,
}

impl SasInfo {
    /// Parse from JSON (capped).
    pub fn from_json(json: &str) -> Result<Self, VerifyError> {
        util::check_len(json.len(), 4096)?;
        util::from_json(json.as_bytes()).map_err(|e| VerifyError::Malformed(e.to_string()))
    }

    fn info_string(&self) -> Result<String, VerifyError> {
        for f in [
            &self.initiator.0,
            &self.initiator.1,
            &self.initiator.2,
            &self.acceptor.0,
            &self.acceptor.1,
            &self.acceptor.2,
            &self.transaction_id,
        ] {
            util::check_len(f.len(), MAX_FIELD)?;
        }
        Ok(format!(
            "COPAINS_SAS_V1|{}|{}|{}|{}|{}|{}|{}",
            self.initiator.0,
            self.initiator.1,
            self.initiator.2,
            self.acceptor.0,
            self.acceptor.1,
            self.acceptor.2,
            self.transaction_id
        ))
    }
}

/// One side of a SAS verification before the key exchange.
pub struct SasVerification {
    sas: Option<Sas>,
    public_key: String,
}

impl std::fmt::Debug for SasVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasVerification")
            .field("public_key", &self.public_key)
            .finish()
    }
}

impl Default for SasVerification {
    fn default() -> Self {
        Self::new()
    }
}

impl SasVerification {
    /// Start: creates an ephemeral curve25519 key pair.
    pub fn new() -> Self {
        let sas = Sas::new();
        let public_key = sas.public_key().to_base64();
        Self {
            sas: Some(sas),
            public_key,
        }
    }

    /// Our ephemeral public key (base64), to send to the other side.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Complete the key exchange with the other side's public key. Can be called once.
    pub fn establish(
        &mut self,
        their_public_key: &str,
        info: SasInfo,
    ) -> Result<EstablishedSas, VerifyError> {
        util::check_len(their_public_key.len(), 64)?;
        let info_string = info.info_string()?;
        let sas = self.sas.take().ok_or(VerifyError::AlreadyEstablished)?;
        let inner = sas
            .diffie_hellman_with_raw(their_public_key)
            .map_err(|e| VerifyError::SasKey(e.to_string()))?;
        Ok(EstablishedSas {
            inner,
            info: info_string,
        })
    }
}

/// A SAS after the key exchange: emoji, decimals and MACs.
pub struct EstablishedSas {
    inner: VzEstablished,
    info: String,
}

impl std::fmt::Debug for EstablishedSas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstablishedSas").finish_non_exhaustive()
    }
}

impl EstablishedSas {
    /// The 7 emoji indexes into [`SAS_EMOJI`].
    pub fn emoji_indices(&self) -> [u8; 7] {
        self.inner.bytes(&self.info).emoji_indices()
    }

    /// The 7 emoji with their names.
    pub fn emoji(&self) -> Vec<(&'static str, &'static str)> {
        self.emoji_indices()
            .iter()
            .filter_map(|i| SAS_EMOJI.get(usize::from(*i)).copied())
            .collect()
    }

    /// The three 4-digit numbers (1000..=9191).
    pub fn decimals(&self) -> [u16; 3] {
        let (a, b, c) = self.inner.bytes(&self.info).decimals();
        [a, b, c]
    }

    /// A MAC (base64) over `input` (e.g. our ed25519 key) under label `key_id`.
    pub fn mac(&self, input: &str, key_id: &str) -> String {
        self.inner
            .calculate_mac(input, &format!("{}|MAC|{key_id}", self.info))
            .to_base64()
    }

    /// Check the other side's MAC over `input` (their ed25519 key).
    pub fn verify_mac(&self, input: &str, key_id: &str, mac: &str) -> Result<(), VerifyError> {
        util::check_len(mac.len(), 128)?;
        let tag = Mac::from_base64(mac).map_err(|_| VerifyError::MacMismatch)?;
        self.inner
            .verify_mac(input, &format!("{}|MAC|{key_id}", self.info), &tag)
            .map_err(|_| VerifyError::MacMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;

    #[test]
    fn safety_number_is_symmetric_and_key_sensitive() {
        let a = Device::new("alice", "A").unwrap().identity_keys().ed25519;
        let b = Device::new("bob", "B").unwrap().identity_keys().ed25519;
        let c = Device::new("carol", "C").unwrap().identity_keys().ed25519;
        let ab = safety_number("alice", &a, "bob", &b).unwrap();
        let ba = safety_number("bob", &b, "alice", &a).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.len(), 60);
        assert!(ab.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(ab, safety_number("alice", &a, "bob", &c).unwrap());
        assert_ne!(ab, safety_number("alice", &a, "bobby", &b).unwrap());
        assert_eq!(format_safety_number(&ab).split(' ').count(), 12);
        assert!(safety_number("alice", "bad", "bob", &b).is_err());
    }

    #[test]
    fn safety_number_known_answer() {
        // Pins the construction so a refactor cannot silently change every user's digits.
        let k = util::base64_encode([7u8; 32]);
        let n = safety_number("u", &k, "v", &k).unwrap();
        assert_eq!(n, safety_number("v", &k, "u", &k).unwrap());
        assert_eq!(
            n,
            "488337580904576186768153139788971297583225827635230968405608"
        );
    }

    fn info(a: &SasVerification, b: &SasVerification) -> SasInfo {
        SasInfo {
            initiator: ("alice".into(), "A".into(), a.public_key().into()),
            acceptor: ("bob".into(), "B".into(), b.public_key().into()),
            transaction_id: "txn1".into(),
        }
    }

    #[test]
    fn sas_both_sides_match_and_macs_verify() {
        let mut a = SasVerification::new();
        let mut b = SasVerification::new();
        let i = info(&a, &b);
        let (apk, bpk) = (a.public_key().to_owned(), b.public_key().to_owned());
        let ea = a.establish(&bpk, i.clone()).unwrap();
        let eb = b.establish(&apk, i).unwrap();
        assert_eq!(ea.emoji_indices(), eb.emoji_indices());
        assert_eq!(ea.emoji().len(), 7);
        assert_eq!(ea.decimals(), eb.decimals());
        assert!(ea.decimals().iter().all(|d| (1000..=9191).contains(d)));
        let mac = ea.mac("alice-ed25519", "ed25519:A");
        eb.verify_mac("alice-ed25519", "ed25519:A", &mac).unwrap();
        assert_eq!(
            eb.verify_mac("mallory-ed25519", "ed25519:A", &mac),
            Err(VerifyError::MacMismatch)
        );
        assert!(matches!(
            a.establish(&bpk, info(&b, &b)),
            Err(VerifyError::AlreadyEstablished)
        ));
    }

    #[test]
    fn sas_mitm_gives_different_emoji() {
        let mut a = SasVerification::new();
        let mut b = SasVerification::new();
        let mut m = SasVerification::new();
        let i = info(&a, &b);
        let mpk = m.public_key().to_owned();
        let ea = a.establish(&mpk, i.clone()).unwrap();
        let eb = b.establish(&mpk, i).unwrap();
        assert_ne!(ea.emoji_indices(), eb.emoji_indices());
        assert!(m.establish("not a key", info(&a, &b)).is_err());
    }
}
