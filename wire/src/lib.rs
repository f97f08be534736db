//! Types that cross process boundaries: ids, access-token claims and bus events.
//!
//! The api, gateway and SFU roles may run in different processes; everything they
//! exchange (JSON ids, the access token, events on the bus) is defined once here.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod id;
pub mod token;

pub use id::{Id, IdGenerator};
pub use token::{AccessClaims, TokenError, TokenSigner, TokenVerifier};
pub mod events;
pub mod gateway;
