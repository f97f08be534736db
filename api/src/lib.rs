//! The REST API under `/api/v1`: accounts, sessions and the instance access policy
//! (communities, messages and keys join as their issues land).
//!
//! Module map:
//! - [`config`]: the settings the api role reads.
//! - [`state`]: shared state handed to every handler.
//! - [`error`]: the one error type, rendered as JSON `{code, message}`.
//! - [`extract`]: extractors that turn rejections into that error (JSON body, bearer auth, client IP).
//! - [`password`], [`secret`]: argon2id hashing and random tokens stored as SHA-256 hashes.
//! - [`accounts`]: the account and session rules (used by the routes and the admin CLI).
//! - [`policy`]: who may register or connect (registration mode, email domains, IP rules).
//! - [`ratelimit`]: per-client-IP limits on the auth routes (429 + Retry-After).
//! - [`mail`]: password-reset mail over SMTP, when configured.
//! - [`metrics`]: Prometheus counters.
//! - [`node_lease`]: node ids (the node bits of every id) leased in PostgreSQL by each process.
//! - [`directory`]: the gateway's view of the database (what each user may see).
//! - [`whiteboard`]: per-place whiteboards (strokes, bounds, clear).
//! - [`routes`]: one file per resource; [`openapi`] gathers them into `/api/v1/openapi.json`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod auth_cache;
pub mod communities;
pub mod config;
pub mod db;
pub mod directory;
pub mod error;
pub mod extract;
pub mod keys;
pub mod mail;
pub mod messaging;
pub mod metrics;
pub mod node_lease;
pub mod openapi;
pub mod password;
pub mod policy;
pub mod ratelimit;
pub mod routes;
pub mod secret;
pub mod state;
pub mod validate;
pub mod whiteboard;

pub use config::ApiConfig;
pub use error::ApiError;
pub use state::AppState;
