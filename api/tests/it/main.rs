//! Integration tests of the api against a real PostgreSQL: each test gets its own database
//! and its own server on 127.0.0.1:0. One test binary (faster to link) with a module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity,
    missing_docs
)]

mod support;

mod accounts;
mod communities;
mod errors;
mod events;
mod everyday;
mod keys;
mod messages;
mod moderation;
mod node_lease;
mod ops;
mod policy;
mod strings;
mod voice_ice;
mod whiteboard;
