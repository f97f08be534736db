//! Messaging: messages in server text channels, threads, DMs and group DMs; replies,
//! mentions, reactions, pins, read states and search. Routes live in
//! `routes/{messages,reactions,pins,threads,dms,read_states,search}.rs`; the rules here.
//! The design (places, ordering, nonces, encryption, counts) is in `docs/messaging.md`.
//!
//! - [`place`]: what a channel id names and what the caller may do there.
//! - [`messages`]: create (nonce-idempotent, ordered ids), edit, delete, fetch, history.
//! - [`send_batch`]: concurrent sends to one place grouped into one durable insert.
//! - [`history_cache`]: history pages from memory, coherent with every change;
//!   [`history_sync`] keeps it coherent across api nodes (Redis).
//! - [`place_cache`]: resolved places and permissions of the hot routes.
//! - [`mentions`]: `<@id>`, `<@&id>`, `@everyone` parsing and filtering.
//! - [`dms`]: 1:1 and group DMs.
//! - [`reactions`], [`reads`] (read states and pins), [`search`], [`threads`],
//!   [`attachments`].

pub mod attachments;
pub mod dms;
pub mod history_cache;
pub mod history_sync;
pub mod mentions;
pub mod messages;
pub mod place;
pub mod place_cache;
pub mod reactions;
pub mod reads;
pub mod search;
pub mod send_batch;
pub mod threads;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// Longest plaintext message, in characters.
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Largest decoded ciphertext of an encrypted envelope, in bytes.
pub const MAX_CIPHERTEXT_BYTES: usize = 64 * 1024;
/// Longest client nonce, in characters.
pub const MAX_NONCE_CHARS: usize = 64;
/// How long a nonce names its message (seconds).
pub const NONCE_WINDOW_SECS: i64 = 600;
/// Most mentions of each kind kept on one message.
pub const MAX_MENTIONS: usize = 100;
/// Largest history page.
pub const MAX_PAGE: i64 = 100;
/// Default history page.
pub const DEFAULT_PAGE: i64 = 50;
/// Most pinned messages per place.
pub const MAX_PINS: i64 = 50;
/// Most distinct emojis on one message.
pub const MAX_EMOJIS_PER_MESSAGE: i64 = 20;
/// Most members of a group DM (the owner included).
pub const MAX_GROUP_DM_MEMBERS: usize = 10;

/// An end-to-end encrypted message body, opaque to the server: stored and relayed as sent.
/// The server only checks sizes and that `ciphertext` is base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// E.g. `m.megolm.v1.aes-sha2` or `m.olm.v1.curve25519-aes-sha2` (1–64 characters).
    pub algorithm: String,
    /// The sending device (1–128 characters).
    pub sender_device_id: String,
    /// The Megolm / Olm session (1–256 characters).
    pub session_id: String,
    /// Standard base64 of the ciphertext (at most 64 KiB once decoded).
    pub ciphertext: String,
}

impl Envelope {
    /// The envelope stored in four nullable columns (`None` unless all four are set).
    pub fn from_columns(
        algorithm: Option<String>,
        sender_device_id: Option<String>,
        session_id: Option<String>,
        ciphertext: Option<String>,
    ) -> Option<Self> {
        Some(Self {
            algorithm: algorithm?,
            sender_device_id: sender_device_id?,
            session_id: session_id?,
            ciphertext: ciphertext?,
        })
    }

    /// Checks sizes and the base64 form; 422 otherwise.
    pub fn validate(&self) -> ApiResult<()> {
        let field = |name: &str, v: &str, max: usize| {
            if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
                Err(ApiError::validation(format!(
                    "encrypted.{name} must be 1 to {max} printable characters"
                )))
            } else {
                Ok(())
            }
        };
        field("algorithm", &self.algorithm, 64)?;
        field("sender_device_id", &self.sender_device_id, 128)?;
        field("session_id", &self.session_id, 256)?;
        let max_b64 = MAX_CIPHERTEXT_BYTES.div_ceil(3) * 4;
        if self.ciphertext.is_empty() || self.ciphertext.len() > max_b64 {
            return Err(ApiError::validation(format!(
                "encrypted.ciphertext must be non-empty base64 of at most {MAX_CIPHERTEXT_BYTES} bytes"
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&self.ciphertext)
            .map_err(|_| ApiError::validation("encrypted.ciphertext must be standard base64"))?;
        if decoded.len() > MAX_CIPHERTEXT_BYTES {
            return Err(ApiError::validation(format!(
                "encrypted.ciphertext must be at most {MAX_CIPHERTEXT_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: i64,
    /// Whether the caller did.
    pub me: bool,
}

/// A message as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    /// Message id (time-sortable snowflake; history is ordered by it).
    pub id: Id,
    /// The place: server channel, thread, DM or group DM.
    pub channel_id: Id,
    /// The server, `null` in DMs.
    pub server_id: Option<Id>,
    /// The author, `null` once their account is deleted.
    pub author_id: Option<Id>,
    /// Plaintext (plaintext places only).
    pub content: Option<String>,
    /// The encrypted envelope (encrypted places only).
    pub encrypted: Option<Envelope>,
    /// The client nonce it was sent with, if any.
    pub nonce: Option<String>,
    /// The message of the same place it replies to.
    pub reply_to: Option<Id>,
    /// Whether it mentions everyone.
    pub mention_everyone: bool,
    /// Mentioned users.
    pub mentions: Vec<Id>,
    /// Mentioned roles.
    pub mention_roles: Vec<Id>,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Last edit.
    pub edited_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Reaction counts, in first-reaction order.
    pub reactions: Vec<ReactionCount>,
    /// Attached files.
    pub attachments: Vec<attachments::Attachment>,
}

/// The columns [`MessageRow`] reads, from `messages m`.
pub const MESSAGE_COLUMNS: &str = "m.id, m.channel_id, m.server_id, m.author_id, m.content, \
     m.enc_algorithm, m.enc_sender_device, m.enc_session_id, m.enc_ciphertext, m.nonce, \
     m.reply_to, m.mention_everyone, m.mention_users, m.mention_roles, m.pinned_at, \
     m.edited_at, m.created_at";

/// [`MESSAGE_COLUMNS`] plus whether each message has reactions / attachments, so rendering a
/// page skips the lookups that would find nothing (history pages, pins, search).
pub const LISTED_COLUMNS: &str = "m.id, m.channel_id, m.server_id, m.author_id, m.content, \
     m.enc_algorithm, m.enc_sender_device, m.enc_session_id, m.enc_ciphertext, m.nonce, \
     m.reply_to, m.mention_everyone, m.mention_users, m.mention_roles, m.pinned_at, \
     m.edited_at, m.created_at, \
     EXISTS (SELECT 1 FROM reactions r WHERE r.message_id = m.id) AS has_reactions, \
     EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id) AS has_attachments";

/// A stored message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    /// Id.
    pub id: i64,
    /// Place.
    pub channel_id: i64,
    /// Server.
    pub server_id: Option<i64>,
    /// Author.
    pub author_id: Option<i64>,
    /// Plaintext.
    pub content: Option<String>,
    /// Envelope algorithm.
    pub enc_algorithm: Option<String>,
    /// Envelope sender device.
    pub enc_sender_device: Option<String>,
    /// Envelope session.
    pub enc_session_id: Option<String>,
    /// Envelope ciphertext.
    pub enc_ciphertext: Option<String>,
    /// Client nonce.
    pub nonce: Option<String>,
    /// Reply target.
    pub reply_to: Option<i64>,
    /// @everyone.
    pub mention_everyone: bool,
    /// Mentioned users.
    pub mention_users: Vec<i64>,
    /// Mentioned roles.
    pub mention_roles: Vec<i64>,
    /// Pinned since.
    pub pinned_at: Option<DateTime<Utc>>,
    /// Edited at.
    pub edited_at: Option<DateTime<Utc>>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Has reactions (`None`: not loaded, look them up).
    #[sqlx(default)]
    pub has_reactions: Option<bool>,
    /// Has attachments (`None`: not loaded, look them up).
    #[sqlx(default)]
    pub has_attachments: Option<bool>,
    /// The place's head in the same snapshot (history pages only).
    #[sqlx(default)]
    pub head: Option<i64>,
}

impl MessageRow {
    /// Renders the row with its reactions and attachments.
    pub fn render(
        self,
        reactions: Vec<ReactionCount>,
        attachments: Vec<attachments::Attachment>,
    ) -> Message {
        let encrypted = Envelope::from_columns(
            self.enc_algorithm,
            self.enc_sender_device,
            self.enc_session_id,
            self.enc_ciphertext,
        );
        Message {
            id: Id(self.id),
            channel_id: Id(self.channel_id),
            server_id: self.server_id.map(Id),
            author_id: self.author_id.map(Id),
            content: self.content,
            encrypted,
            nonce: self.nonce,
            reply_to: self.reply_to.map(Id),
            mention_everyone: self.mention_everyone,
            mentions: self.mention_users.into_iter().map(Id).collect(),
            mention_roles: self.mention_roles.into_iter().map(Id).collect(),
            pinned: self.pinned_at.is_some(),
            edited_at: self.edited_at,
            created_at: self.created_at,
            reactions,
            attachments,
        }
    }
}

/// The ids of `rows` whose reactions, and whose attachments, must be looked up (all, unless
/// the row says it has none).
fn lookups(rows: &[MessageRow]) -> (Vec<i64>, Vec<i64>) {
    let with = |f: fn(&MessageRow) -> Option<bool>| -> Vec<i64> {
        rows.iter()
            .filter(|r| f(r) != Some(false))
            .map(|r| r.id)
            .collect()
    };
    (with(|r| r.has_reactions), with(|r| r.has_attachments))
}

/// Renders rows with their reaction counts as seen by `viewer` (one query for all).
pub async fn render_all(
    db: &sqlx::PgPool,
    viewer: Id,
    rows: Vec<MessageRow>,
) -> ApiResult<Vec<Message>> {
    let (react_ids, file_ids) = lookups(&rows);
    let mut counts = reactions::counts(db, viewer, &react_ids).await?;
    let mut files = attachments::of_messages(db, &file_ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let rc = counts.remove(&r.id).unwrap_or_default();
            let f = files.remove(&r.id).unwrap_or_default();
            r.render(rc, f)
        })
        .collect())
}

/// Renders rows for the history cache: reader-neutral JSON plus, per emoji, its count and
/// (for messages with at most [`history_cache::MAX_REACTORS`] reactions) who reacted.
pub async fn render_cached(
    db: &sqlx::PgPool,
    rows: Vec<MessageRow>,
) -> ApiResult<Vec<std::sync::Arc<history_cache::CachedMessage>>> {
    let (react_ids, file_ids) = lookups(&rows);
    let mut groups = reactions::groups(db, &react_ids).await?;
    let mut files = attachments::of_messages(db, &file_ids).await?;
    rows.into_iter()
        .map(|r| {
            let g = groups.remove(&r.id).unwrap_or_default();
            let f = files.remove(&r.id).unwrap_or_default();
            let msg = r.render(Vec::new(), f);
            history_cache::CachedMessage::new(&msg, g)
                .map(std::sync::Arc::new)
                .map_err(|e| ApiError::Internal(format!("rendering a message: {e}")))
        })
        .collect()
}

/// Makes a rendered message reader-neutral for events: drops `me` from its reactions. The API
/// renders `me` for the caller, but an event goes to every reader of the place, so it must not
/// carry the actor's point of view; clients keep their own `me` from reaction events.
pub fn reader_neutral(message: &mut serde_json::Value) {
    if let Some(list) = message
        .get_mut("reactions")
        .and_then(serde_json::Value::as_array_mut)
    {
        for r in list {
            if let Some(o) = r.as_object_mut() {
                o.remove("me");
            }
        }
    }
}

/// A plaintext body: 1–4000 characters, not blank, no control characters but newlines/tabs.
pub fn content(s: &str) -> ApiResult<String> {
    if s.trim().is_empty() {
        return Err(ApiError::validation("a message cannot be blank"));
    }
    let n = s.chars().count();
    if n > MAX_CONTENT_CHARS {
        return Err(ApiError::validation(format!(
            "a message can be up to {MAX_CONTENT_CHARS} characters; this one has {n}"
        )));
    }
    if s.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::validation(
            "content must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// A client nonce: 1–64 printable ASCII characters.
pub fn nonce(s: &str) -> ApiResult<String> {
    if s.is_empty() || s.len() > MAX_NONCE_CHARS || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(format!(
            "nonce must be 1 to {MAX_NONCE_CHARS} printable ASCII characters"
        )));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ct: &str) -> Envelope {
        Envelope {
            algorithm: "m.megolm.v1.aes-sha2".into(),
            sender_device_id: "DEV".into(),
            session_id: "s".into(),
            ciphertext: ct.into(),
        }
    }

    #[test]
    fn envelope_checks_base64_and_size() {
        assert!(env("aGVsbG8=").validate().is_ok());
        assert!(env("not base64!").validate().is_err());
        assert!(env("").validate().is_err());
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 64 * 1024]);
        assert!(env(&big).validate().is_ok());
        let too_big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 64 * 1024 + 1]);
        assert!(env(&too_big).validate().is_err());
    }

    #[test]
    fn content_and_nonce_rules() {
        assert!(content("hi\nthere").is_ok());
        assert!(content("   ").is_err());
        assert!(content("a\u{0}b").is_err());
        assert!(content(&"x".repeat(4001)).is_err());
        assert!(nonce("abc-123").is_ok());
        assert!(nonce("").is_err());
        assert!(nonce("with space").is_err());
        assert!(nonce(&"n".repeat(65)).is_err());
    }
}
