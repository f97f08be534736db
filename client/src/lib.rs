//! A native Rust client of Copains, used by the tests and later by bots: it drives a real
//! server with the `copains-crypto` crate.
//!
//! - [`api`]: an authenticated HTTP session ([`ApiClient`]) with one method per route used.
//! - [`e2ee`]: one encrypted device ([`E2eeClient`]): publish keys, open Olm sessions, send
//!   DMs and Megolm room keys over the to-device queue, receive and decrypt, Megolm channel
//!   messages with rotation.
//! - [`error`]: the error type, [`ClientError`].
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod e2ee;
pub mod error;

pub use api::ApiClient;
pub use e2ee::{E2eeClient, GroupTransport, Incoming};
pub use error::{ClientError, ClientResult};
