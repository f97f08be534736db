//! Creating, editing, deleting and reading messages.
//!
//! Ordering: every insert upserts its place's `channel_heads` row first (a row lock held until
//! commit) and takes `max(generated id, last id + 1)` as its id, so within a place ids become
//! visible in increasing order and a reader paging with `after` never skips a late commit.
//!
//! Idempotency: with a `nonce`, the insert claims `(author, nonce)` in `message_nonces`
//! (`INSERT … ON CONFLICT DO UPDATE … WHERE older than 10 minutes`); a retry that finds a
//! fresh claim rolls back and answers the original message. Concurrent retries serialize on
//! the unique key, so exactly one message is created.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use copains_wire::Id;
use copains_wire::events::{BusEvent, Event};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::history_cache::{CachedMessage, Change, Fill, Range};
use super::mentions::{self, Parsed};
use super::place::{Place, PlaceKind};
use super::send_batch::{NewRow, Outcome, SendBatcher};
use super::{Envelope, LISTED_COLUMNS, MESSAGE_COLUMNS, Message, MessageRow, NONCE_WINDOW_SECS};
use crate::communities::events::value;
use crate::communities::permissions::Permissions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `POST /channels/{id}/messages` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Plaintext (1–4000 characters); plaintext places only (422 in encrypted places).
    pub content: Option<String>,
    /// The encrypted envelope; encrypted places only (DMs, group DMs, encrypted channels).
    pub encrypted: Option<Envelope>,
    /// Client nonce (1–64 printable ASCII): a retry with the same nonce within 10 minutes
    /// returns the original message (200) instead of creating another (201).
    pub nonce: Option<String>,
    /// A message of the same place this one replies to (another place's id: 422).
    #[schema(value_type = Option<String>)]
    pub reply_to: Option<Id>,
    /// Encrypted places only: the user ids the (encrypted) text mentions (at most 100).
    #[schema(value_type = Option<Vec<String>>)]
    pub mentions: Option<Vec<Id>>,
    /// Encrypted places only: the text mentions everyone (needs MENTION_EVERYONE).
    pub mention_everyone: Option<bool>,
    /// Ids of my unused uploads to this place (at most 10); with attachments, `content` may
    /// be omitted in plaintext places.
    #[schema(value_type = Option<Vec<String>>)]
    pub attachments: Option<Vec<Id>>,
}

/// `PATCH /channels/{id}/messages/{message_id}` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// New plaintext (plaintext places).
    pub content: Option<String>,
    /// New envelope (encrypted places).
    pub encrypted: Option<Envelope>,
    /// Encrypted places: the mentioned user ids of the new text.
    #[schema(value_type = Option<Vec<String>>)]
    pub mentions: Option<Vec<Id>>,
}

/// A validated body: plaintext or an envelope, with its filtered mentions.
struct Body {
    content: Option<String>,
    envelope: Option<Envelope>,
    mentions: Parsed,
}

async fn body(
    db: &PgPool,
    place: &Place,
    content: Option<String>,
    envelope: Option<Envelope>,
    declared: Option<Vec<Id>>,
    declared_everyone: bool,
    has_files: bool,
) -> ApiResult<Body> {
    if place.encrypted {
        if content.is_some() {
            return Err(ApiError::validation(
                "this place is end-to-end encrypted: send `encrypted`, never `content`",
            ));
        }
        let env = envelope.ok_or_else(|| {
            ApiError::validation("this place is end-to-end encrypted: `encrypted` is required")
        })?;
        env.validate()?;
        let declared = declared.unwrap_or_default();
        if declared.len() > super::MAX_MENTIONS {
            return Err(ApiError::validation(format!(
                "at most {} mentions",
                super::MAX_MENTIONS
            )));
        }
        let parsed = Parsed {
            users: declared.into_iter().map(|i| i.0).collect(),
            roles: Vec::new(),
            everyone: declared_everyone,
        };
        Ok(Body {
            content: None,
            envelope: Some(env),
            mentions: mentions::filter(db, place, parsed).await?,
        })
    } else {
        if envelope.is_some() {
            return Err(ApiError::validation(
                "this channel is not encrypted: send `content`, not `encrypted`",
            ));
        }
        if declared.is_some() {
            return Err(ApiError::validation(
                "`mentions` is declared only in encrypted places; here they are parsed from content",
            ));
        }
        let text = match content.as_deref() {
            Some(c) => Some(super::content(c)?),
            None if has_files => None,
            None => return Err(ApiError::validation("`content` is required")),
        };
        let parsed = text.as_deref().map(mentions::parse).unwrap_or_default();
        Ok(Body {
            content: text,
            envelope: None,
            mentions: mentions::filter(db, place, parsed).await?,
        })
    }
}

/// Loads message `id` of place `channel_id` (404 if it is in no such place).
pub async fn row(db: &PgPool, channel_id: Id, id: Id) -> ApiResult<MessageRow> {
    sqlx::query_as::<_, MessageRow>(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 AND m.channel_id = $2"
    ))
    .bind(id.0)
    .bind(channel_id.0)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::not_found("unknown message"))
}

/// One message rendered for `viewer`.
pub async fn get(db: &PgPool, viewer: Id, channel_id: Id, id: Id) -> ApiResult<Message> {
    let r = row(db, channel_id, id).await?;
    super::render_all(db, viewer, vec![r])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("unknown message"))
}

/// Refuses sending where the caller may not: timed out (403 `timed_out`), no SEND_MESSAGES
/// (403 `missing_permission`), not a text place (422).
pub fn check_can_send(place: &Place) -> ApiResult<()> {
    if !place.is_text {
        return Err(ApiError::validation("messages live only in text channels"));
    }
    if place.timed_out {
        return Err(ApiError::forbidden(
            "timed_out",
            format!(
                "you are timed out in this server for {} more seconds",
                place.timeout_left_secs
            ),
        ));
    }
    place.require_perm(Permissions::SEND_MESSAGES)
}

/// Creates a message; returns it and whether it is new (`false`: a nonce retry).
pub async fn create(
    state: &AppState,
    author: Id,
    place: &Place,
    req: NewMessage,
) -> ApiResult<(Message, bool)> {
    check_can_send(place)?;
    if place.kind == PlaceKind::Dm {
        super::dms::check_not_blocked(&state.db, place.id, author).await?;
    }
    let nonce = req.nonce.as_deref().map(super::nonce).transpose()?;
    let mut files: Vec<i64> = req
        .attachments
        .unwrap_or_default()
        .iter()
        .map(|a| a.0)
        .collect();
    files.sort_unstable();
    files.dedup();
    if files.len() > super::attachments::MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(ApiError::validation(format!(
            "at most {} attachments per message",
            super::attachments::MAX_ATTACHMENTS_PER_MESSAGE
        )));
    }
    if !files.is_empty() {
        place.require_perm(Permissions::ATTACH_FILES)?;
    }
    let b = body(
        &state.db,
        place,
        req.content,
        req.encrypted,
        req.mentions,
        req.mention_everyone.unwrap_or(false),
        !files.is_empty(),
    )
    .await?;
    if let Some(r) = req.reply_to {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM messages WHERE id = $1 AND channel_id = $2")
                .bind(r.0)
                .bind(place.id.0)
                .fetch_optional(&state.db)
                .await?;
        if found.is_none() {
            return Err(ApiError::validation(
                "reply_to names no message of this channel",
            ));
        }
    }
    let exempt = place.permissions.contains(Permissions::MANAGE_MESSAGES)
        || place.permissions.contains(Permissions::MANAGE_CHANNELS)
        || place.is_dm();

    // From here on a message may be committed: whatever happens to this request, the
    // cached open span of the place closes when it ends.
    let _cache = state.history.guard(Change::Create(place.id.0));
    if (place.slowmode_secs == 0 || exempt) && files.is_empty() {
        // The common case: grouped with concurrent sends to the place (`send_batch`).
        let row = NewRow {
            author,
            content: b.content,
            envelope: b.envelope,
            nonce: nonce.clone(),
            reply_to: req.reply_to,
            mention_everyone: b.mentions.everyone,
            mention_users: b.mentions.users,
            mention_roles: b.mentions.roles,
        };
        let done = match SendBatcher::submit(state, place, row).await? {
            Outcome::Created(r) => ((*r).render(Vec::new(), Vec::new()), true),
            Outcome::NonceTaken => {
                let n = nonce
                    .as_deref()
                    .ok_or_else(|| ApiError::Internal("message insert returned nothing".into()))?;
                (original(state, author, place, n).await?, false)
            }
        };
        if nonce.is_some() && rand::random::<u8>() < 8 {
            prune_nonces(state, author);
        }
        return Ok(done);
    }
    // Slow mode to check under the lock, or attachments to claim: one transaction. An id
    // bumped past the channel head (`last id + 1`) can collide with an id the generator hands
    // out later elsewhere (or the reverse): the insert then fails on the primary key and is
    // retried with a fresh id.
    for _ in 0..MAX_ID_ATTEMPTS {
        let generated = state.ids.next();
        let done = create_tx(
            state,
            author,
            place,
            generated,
            nonce.as_deref(),
            req.reply_to,
            &b,
            &files,
        )
        .await?;
        if let Some(done) = done {
            if nonce.is_some() && rand::random::<u8>() < 8 {
                prune_nonces(state, author);
            }
            return Ok(done);
        }
    }
    Err(ApiError::Unavailable)
}

/// Now and then (1 send in 32 with a nonce), drops the author's nonces older than the window,
/// in the background, so `message_nonces` stays about one window of rows per active author.
fn prune_nonces(state: &AppState, author: Id) {
    let db = state.db.clone();
    tokio::spawn(async move {
        if let Err(e) = prune_stale_nonces(&db, author).await {
            tracing::warn!(error = %e, "pruning message nonces failed");
        }
    });
}

/// Deletes `author`'s nonces older than the 10-minute window; returns how many.
pub async fn prune_stale_nonces(db: &PgPool, author: Id) -> ApiResult<u64> {
    Ok(sqlx::query(
        "DELETE FROM message_nonces WHERE author_id = $1
            AND created_at < now() - make_interval(secs => $2)",
    )
    .bind(author.0)
    .bind(NONCE_WINDOW_SECS as f64)
    .execute(db)
    .await?
    .rows_affected())
}

/// Most attempts at a fresh id when inserts collide on the primary key.
const MAX_ID_ATTEMPTS: usize = 8;

/// Whether `e` is a primary-key collision of `messages` (retry with another id).
fn id_collision(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some("messages_pkey"))
}

/// The multi-statement insert (slow mode to check under the lock, attachments to claim).
/// `None`: the id collided, try again.
#[allow(clippy::too_many_arguments)]
async fn create_tx(
    state: &AppState,
    author: Id,
    place: &Place,
    generated: Id,
    nonce: Option<&str>,
    reply_to: Option<Id>,
    b: &Body,
    files: &[i64],
) -> ApiResult<Option<(Message, bool)>> {
    let exempt = place.permissions.contains(Permissions::MANAGE_MESSAGES)
        || place.permissions.contains(Permissions::MANAGE_CHANNELS)
        || place.is_dm();
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO channel_heads (channel_id, last_message_id) VALUES ($1, $2)
         ON CONFLICT (channel_id) DO UPDATE
            SET last_message_id = GREATEST(channel_heads.last_message_id + 1, EXCLUDED.last_message_id)
         RETURNING last_message_id",
    )
    .bind(place.id.0)
    .bind(generated.0)
    .fetch_one(&mut *tx)
    .await?;

    if let Some(n) = nonce {
        let claimed: Option<i64> = sqlx::query_scalar(
            "INSERT INTO message_nonces (author_id, nonce, message_id, channel_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (author_id, nonce) DO UPDATE
                SET message_id = EXCLUDED.message_id, channel_id = EXCLUDED.channel_id, created_at = now()
              WHERE message_nonces.created_at < now() - make_interval(secs => $5)
             RETURNING message_id",
        )
        .bind(author.0)
        .bind(n)
        .bind(id)
        .bind(place.id.0)
        .bind(NONCE_WINDOW_SECS as f64)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            tx.rollback().await?;
            return original(state, author, place, n)
                .await
                .map(|m| Some((m, false)));
        }
    }

    if place.slowmode_secs > 0 && !exempt {
        let since: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM messages
              WHERE channel_id = $1 AND author_id = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(place.id.0)
        .bind(author.0)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(since) = since {
            let wait = f64::from(place.slowmode_secs) - since;
            if wait > 0.0 {
                tx.rollback().await?;
                return Err(ApiError::RateLimited(wait.ceil() as u64));
            }
        }
    }

    let users = &b.mentions.users;
    let roles = &b.mentions.roles;
    let env = b.envelope.as_ref();
    let r: Result<MessageRow, sqlx::Error> = sqlx::query_as(&format!(
        "INSERT INTO messages AS m (id, channel_id, server_id, author_id, content, enc_algorithm,
                enc_sender_device, enc_session_id, enc_ciphertext, nonce, reply_to,
                mention_everyone, mention_users, mention_roles)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         RETURNING {MESSAGE_COLUMNS}"
    ))
    .bind(id)
    .bind(place.id.0)
    .bind(place.server_id.map(|s| s.0))
    .bind(author.0)
    .bind(&b.content)
    .bind(env.map(|e| &e.algorithm))
    .bind(env.map(|e| &e.sender_device_id))
    .bind(env.map(|e| &e.session_id))
    .bind(env.map(|e| &e.ciphertext))
    .bind(nonce)
    .bind(reply_to.map(|r| r.0))
    .bind(b.mentions.everyone)
    .bind(users)
    .bind(roles)
    .fetch_one(&mut *tx)
    .await;
    let r = match r {
        Err(e) if id_collision(&e) => return Ok(None),
        r => r?,
    };
    super::attachments::claim(&mut tx, place.id, author, id, files).await?;
    if place.kind == PlaceKind::Thread {
        sqlx::query("UPDATE threads SET last_activity_at = now() WHERE id = $1")
            .bind(place.id.0)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let attached = if files.is_empty() {
        Vec::new()
    } else {
        super::attachments::of_messages(&state.db, &[id])
            .await?
            .remove(&id)
            .unwrap_or_default()
    };
    let msg = r.render(Vec::new(), attached);
    publish(
        state,
        place,
        Event::MessageCreate {
            message: value(&msg),
        },
    )
    .await?;
    Ok(Some((msg, true)))
}

/// The message a fresh nonce claim names (409 `nonce_reused` when it was used in another
/// place or its message is gone).
async fn original(state: &AppState, author: Id, place: &Place, nonce: &str) -> ApiResult<Message> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT message_id, channel_id FROM message_nonces WHERE author_id = $1 AND nonce = $2",
    )
    .bind(author.0)
    .bind(nonce)
    .fetch_optional(&state.db)
    .await?;
    let reused = || {
        ApiError::conflict(
            "nonce_reused",
            "this nonce was used for another message in the last 10 minutes",
        )
    };
    let (mid, cid) = row.ok_or_else(reused)?;
    if cid != place.id.0 {
        return Err(reused());
    }
    get(&state.db, author, place.id, Id(mid))
        .await
        .map_err(|_| reused())
}

/// Publishes `event` to the place's audience (message objects made reader-neutral first).
pub async fn publish(state: &AppState, place: &Place, mut event: Event) -> ApiResult<()> {
    if let Event::MessageCreate { message } | Event::MessageUpdate { message } = &mut event {
        super::reader_neutral(message);
    }
    let audience = place.audience(&state.db).await?;
    state.publish(BusEvent::new(audience, event)).await;
    Ok(())
}

/// Edits a message (its author only: 403 `not_author`).
pub async fn edit(
    state: &AppState,
    user: Id,
    place: &Place,
    id: Id,
    req: EditMessage,
) -> ApiResult<Message> {
    let current = row(&state.db, place.id, id).await?;
    if current.author_id != Some(user.0) {
        return Err(ApiError::forbidden(
            "not_author",
            "only the author may edit a message",
        ));
    }
    let b = body(
        &state.db,
        place,
        req.content,
        req.encrypted,
        req.mentions,
        current.mention_everyone,
        false,
    )
    .await?;
    let _cache = state.history.guard(Change::Message(place.id.0, id.0));
    let env = b.envelope.as_ref();
    let r: MessageRow = sqlx::query_as(&format!(
        "UPDATE messages AS m SET content = $3, enc_algorithm = $4, enc_sender_device = $5,
                enc_session_id = $6, enc_ciphertext = $7, mention_everyone = $8,
                mention_users = $9, mention_roles = $10, edited_at = now()
          WHERE m.id = $1 AND m.channel_id = $2
         RETURNING {MESSAGE_COLUMNS}"
    ))
    .bind(id.0)
    .bind(place.id.0)
    .bind(&b.content)
    .bind(env.map(|e| &e.algorithm))
    .bind(env.map(|e| &e.sender_device_id))
    .bind(env.map(|e| &e.session_id))
    .bind(env.map(|e| &e.ciphertext))
    .bind(b.mentions.everyone)
    .bind(&b.mentions.users)
    .bind(&b.mentions.roles)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found("unknown message"))?;
    let msg = super::render_all(&state.db, user, vec![r])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("unknown message"))?;
    publish(
        state,
        place,
        Event::MessageUpdate {
            message: value(&msg),
        },
    )
    .await?;
    Ok(msg)
}

/// Deletes a message: its author, or (in server places) a holder of MANAGE_MESSAGES.
pub async fn delete(state: &AppState, user: Id, place: &Place, id: Id) -> ApiResult<()> {
    let current = row(&state.db, place.id, id).await?;
    let is_author = current.author_id == Some(user.0);
    if !is_author {
        if place.is_dm() {
            return Err(ApiError::forbidden(
                "not_author",
                "only the author may delete a message in a DM",
            ));
        }
        place.require_perm(Permissions::MANAGE_MESSAGES)?;
    }
    let _cache = state.history.guard(Change::Message(place.id.0, id.0));
    let done = sqlx::query("DELETE FROM messages WHERE id = $1 AND channel_id = $2")
        .bind(id.0)
        .bind(place.id.0)
        .execute(&state.db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("unknown message"));
    }
    publish(
        state,
        place,
        Event::MessageDelete {
            channel_id: place.id,
            message_id: id,
        },
    )
    .await
}

/// `GET /channels/{id}/messages` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages older than this id.
    #[param(value_type = Option<String>)]
    pub before: Option<Id>,
    /// Messages newer than this id.
    #[param(value_type = Option<String>)]
    pub after: Option<Id>,
    /// Messages around this id (it included when it exists): `limit / 2` up to and including
    /// it, the rest after.
    #[param(value_type = Option<String>)]
    pub around: Option<Id>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
}

/// A history page, oldest first, as the JSON array the API answers (`me` of each reaction
/// for `viewer`). Pages come from the node's [`HistoryCache`] when it covers them, else from
/// the database (which then fills the cache); both go through the same rendering.
pub async fn history(
    state: &AppState,
    viewer: Id,
    place: &Place,
    q: HistoryQuery,
) -> ApiResult<String> {
    place.require_perm(Permissions::READ_HISTORY)?;
    let limit = crate::communities::limit(q.limit, super::DEFAULT_PAGE, super::MAX_PAGE)?;
    let set = [q.before.is_some(), q.after.is_some(), q.around.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        return Err(ApiError::validation(
            "use at most one of before, after and around",
        ));
    }
    let n = usize::try_from(limit).unwrap_or(0);
    let msgs = if let Some(a) = q.after {
        range(state, place.id, Range::Up { lower: a.0, n }).await?
    } else if let Some(c) = q.around {
        let half = n.div_ceil(2);
        let mut before = range(
            state,
            place.id,
            Range::Down {
                upper: c.0,
                n: half,
            },
        )
        .await?;
        before.reverse();
        let after = range(
            state,
            place.id,
            Range::Up {
                lower: c.0,
                n: n - half,
            },
        )
        .await?;
        before.extend(after);
        before
    } else {
        let upper = q.before.map_or(i64::MAX, |b| b.0.saturating_sub(1));
        let mut rows = range(state, place.id, Range::Down { upper, n }).await?;
        rows.reverse();
        rows
    };
    let needs: Vec<i64> = msgs
        .iter()
        .filter(|m| m.needs_lookup())
        .map(|m| m.id)
        .collect();
    let mine: HashSet<(i64, String)> = if needs.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT message_id, emoji FROM reactions WHERE user_id = $1 AND message_id = ANY($2)",
        )
        .bind(viewer.0)
        .bind(&needs)
        .fetch_all(&state.db)
        .await?
        .into_iter()
        .collect()
    };
    let mut out = String::with_capacity(2 + msgs.len() * 320);
    out.push('[');
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        m.write_json(viewer.0, &mine, &mut out);
    }
    out.push(']');
    Ok(out)
}

/// One range of a place's history: from the cache, or read (and cached).
async fn range(state: &AppState, place: Id, range: Range) -> ApiResult<Vec<Arc<CachedMessage>>> {
    if let Some(hit) = state.history.read(place.0, range) {
        return Ok(hit);
    }
    let ticket = state.history.begin(place.0);
    let (rows, head) = page(&state.db, place, range).await?;
    let messages = super::render_cached(&state.db, rows).await?;
    if let (Some(ticket), Some(head)) = (ticket, head) {
        state.history.fill(
            ticket,
            Fill {
                range,
                messages: messages.clone(),
                head,
            },
        );
    }
    Ok(messages)
}

/// The messages of `range`, nearest the cursor first, and the place's head
/// (`channel_heads.last_message_id`) in the same snapshot (`None` when nothing came back).
async fn page(db: &PgPool, place: Id, range: Range) -> ApiResult<(Vec<MessageRow>, Option<i64>)> {
    // One text per direction, built once (statements are prepared and cached by text).
    static PAGES: LazyLock<[String; 2]> = LazyLock::new(|| {
        [("<=", "DESC"), (">", "ASC")].map(|(op, order)| {
            format!(
                "SELECT {LISTED_COLUMNS},
                        COALESCE((SELECT h.last_message_id FROM channel_heads h
                                   WHERE h.channel_id = $1), 0) AS head
                   FROM messages m WHERE m.channel_id = $1 AND m.id {op} $2
                  ORDER BY m.id {order} LIMIT $3"
            )
        })
    });
    let (sql, cursor, n) = match range {
        Range::Down { upper, n } => (&PAGES[0], upper, n),
        Range::Up { lower, n } => (&PAGES[1], lower, n),
    };
    let rows: Vec<MessageRow> = sqlx::query_as::<_, MessageRow>(sql)
        .bind(place.0)
        .bind(cursor)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(db)
        .await?;
    let head = rows.first().and_then(|r| r.head);
    Ok((rows, head))
}

/// Deletes `user`'s messages in `server` from the last `secs` seconds — what a ban's
/// `delete_message_secs` asks for (the ban route calls this after recording the ban) — and
/// publishes `message_delete` for each. Returns how many were deleted.
pub async fn purge_recent(state: &AppState, server: Id, user: Id, secs: i64) -> ApiResult<u64> {
    if secs <= 0 {
        return Ok(0);
    }
    let _cache = state.history.guard(Change::All);
    let gone: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
        "WITH d AS (
            DELETE FROM messages WHERE server_id = $1 AND author_id = $2
               AND created_at > now() - make_interval(secs => $3)
            RETURNING id, channel_id
         )
         SELECT d.id, d.channel_id, t.parent_id FROM d LEFT JOIN threads t ON t.id = d.channel_id",
    )
    .bind(server.0)
    .bind(user.0)
    .bind(secs as f64)
    .fetch_all(&state.db)
    .await?;
    for (id, channel, parent) in &gone {
        state
            .publish(BusEvent::to(
                copains_wire::events::Audience::Channel {
                    server_id: Some(server),
                    channel_id: Id(parent.unwrap_or(*channel)),
                },
                Event::MessageDelete {
                    channel_id: Id(*channel),
                    message_id: Id(*id),
                },
            ))
            .await;
    }
    Ok(gone.len() as u64)
}
