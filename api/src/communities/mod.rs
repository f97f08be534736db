//! Communities: servers, channels, roles and permissions, members, invites, friends and
//! moderation. The routes live in `routes/{servers,channels,roles,members,invites,friends,
//! moderation}.rs`; the models, limits and rules shared by them live here.
//!
//! - [`permissions`]: the bitfield, the resolution algorithm (pure functions) and
//!   [`permissions::channel_permissions`] for messaging and voice.
//! - [`audit`]: the audit log and the `X-Audit-Log-Reason` extractor.
//! - [`events`]: publishing bus events.
//! - [`servers`], [`channels`], [`roles`], [`members`], [`invites`], [`friends`],
//!   [`moderation`]: the objects as the API renders them and their loaders.

pub mod audit;
pub mod channels;
pub mod events;
pub mod friends;
pub mod invites;
pub mod members;
pub mod moderation;
pub mod permissions;
pub mod roles;
pub mod servers;

use crate::error::{ApiError, ApiResult};

/// Servers a user may own or belong to.
pub const MAX_SERVERS_PER_USER: i64 = 100;
/// Channels (categories included) per server.
pub const MAX_CHANNELS_PER_SERVER: i64 = 500;
/// Roles per server (@everyone included).
pub const MAX_ROLES_PER_SERVER: i64 = 250;
/// Live invites per server.
pub const MAX_INVITES_PER_SERVER: i64 = 1000;
/// Overwrites per channel.
pub const MAX_OVERWRITES_PER_CHANNEL: i64 = 100;
/// Relationships (friends, requests, blocks) per user.
pub const MAX_RELATIONSHIPS_PER_USER: i64 = 1000;
/// Longest timeout, in seconds (28 days).
pub const MAX_TIMEOUT_SECS: i64 = 28 * 24 * 3600;

/// A name (server, channel, role): 1 to `max` characters, not blank, no control characters.
/// Returns it trimmed.
pub fn name(field: &str, s: &str, max: usize) -> ApiResult<String> {
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 || n > max || t.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field} must be 1 to {max} visible characters"
        )));
    }
    Ok(t.to_owned())
}

/// Optional free text: at most `max` characters; control characters other than newlines and
/// tabs refused; "" means "clear" (`None`).
pub fn text(field: &str, s: &str, max: usize) -> ApiResult<Option<String>> {
    if s.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::validation(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok((!s.trim().is_empty()).then(|| s.to_owned()))
}

/// A page size: `None` → `default`, else 1..=`max`.
pub fn limit(v: Option<i64>, default: i64, max: i64) -> ApiResult<i64> {
    match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation(format!(
            "limit must be between 1 and {max}"
        ))),
    }
}

/// Maps a unique-violation or check-violation to a client error; anything else stays a
/// server error.
pub fn db_conflict(e: sqlx::Error, message: &'static str) -> ApiError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ApiError::conflict("conflict", message)
        }
        sqlx::Error::Database(d) if d.is_check_violation() || d.is_foreign_key_violation() => {
            ApiError::validation(message)
        }
        _ => e.into(),
    }
}
