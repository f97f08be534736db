//! The str0m selective forwarding unit: sans-IO rooms and the UDP driver.
//!
//! - [`router`]: pure forwarding logic (layer choice, sequence rewriting, VP8 key frame
//!   detection, key frame request throttle, active speaker);
//! - [`room`]: the sans-IO [`Room`] state machine, one str0m `Rtc` per participant in RTP
//!   mode, fed with time, datagrams and commands and drained with `poll_output`;
//! - [`stun`]: just enough STUN parsing to route a client's first datagram by ICE ufrag;
//! - [`udp`]: the IO driver (port range, worker threads, batched sends) and [`SfuHandle`],
//!   the small async handle the rest of Copains uses;
//! - [`client`]: a native str0m client on a UDP socket, for the loopback test and the load
//!   generator.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod room;
pub mod router;
pub mod stun;
pub mod udp;

pub use room::{
    LeaveReason, Negotiated, Output, ParticipantId, Room, RoomConfig, RoomError, RoomEvent,
    RoomStats, TrackId, TrackKind, Transmit,
};
pub use router::{Layer, ViewSize};
pub use udp::{PortRange, RoomId, SfuConfig, SfuError, SfuEvent, SfuHandle};

/// Re-exported str0m, so users of this crate build clients with the same version.
pub use str0m;
