//! The realtime gateway and the event bus.
//!
//! - [`bus`]: the [`bus::EventBus`] trait, in-process (one node) or Redis pub/sub (many nodes).
//! - [`session`]: the sans-IO gateway session state machine (hello, identify, ready,
//!   dispatch with sequence numbers, heartbeats, rate limit, replay buffer for resume).
//! - [`hub`]: the node-local router from bus topics to sessions.
//! - [`directory`]: what a user may see ([`directory::Directory`], implemented by the api).
//! - [`presence`]: online / idle / dnd / invisible across connections and nodes.
//! - [`server`]: the axum WebSocket endpoint `/gateway`.
//!
//! The protocol reference is in this crate's README.md.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod bus;
pub mod directory;
pub mod hub;
pub mod presence;
pub mod server;
pub mod session;

pub use bus::{EventBus, InProcessBus, RedisBus, Topic};
pub use directory::{Directory, MemoryDirectory, Visibility, VisibleChannel};
pub use presence::{MemoryPresence, PresenceStore, RedisPresence};
pub use server::{Gateway, GatewayConfig, GatewayState, router};
pub use session::{Session, SessionConfig};
