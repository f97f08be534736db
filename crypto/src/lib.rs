//! End-to-end encryption for Copains: vodozemac Olm/Megolm wrappers, SFrame media
//! frames, verification and key backup. Builds natively and for `wasm32-unknown-unknown`.
//!
//! Module map:
//! - [`device`]: a device's Olm account, its encrypted pickle, and the signed prekey
//!   bundle uploaded to `POST /api/v1/keys/upload` (and its verification, used by the server).
//! - [`olm`]: 1:1 Olm sessions (outbound from a claimed key, inbound from a pre-key
//!   message) and the JSON envelope they travel in.
//! - [`megolm`]: group sessions per (channel, sending device), key sharing, replay-safe
//!   decryption, and the rotation policy.
//! - [`sframe`]: RFC 9605 SFrame media-frame encryption (AES_128_GCM_SHA256_128) with a
//!   codec-aware clear prefix and a key ratchet.
//! - [`verify`]: safety numbers and the SAS emoji/decimal flow.
//! - [`backup`]: the recovery key and encrypted session-key backup blobs.
//! - `wasm` (feature `wasm`, wasm32 only): the wasm-bindgen API for the web app.
//!
//! Every input a peer or the server controls is size-capped, every store is bounded, and
//! no code path panics on bad input: errors are typed per module.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod backup;
pub mod device;
mod json;
pub mod megolm;
pub mod olm;
pub mod sframe;
mod util;
pub mod verify;

#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub mod wasm;

pub use util::{UtilError, base64_decode, base64_encode, key32, u64_from_js_number};
