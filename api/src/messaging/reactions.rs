//! Reactions: one per (message, emoji, user). Adding needs ADD_REACTIONS (and READ_HISTORY to
//! see the message); a message carries at most [`super::MAX_EMOJIS_PER_MESSAGE`] distinct
//! emojis. An emoji is 1–64 characters without whitespace or control characters (a unicode
//! emoji, or a custom emoji's name/id).

use std::collections::HashMap;

use copains_wire::Id;
use copains_wire::events::Event;
use sqlx::PgPool;

use super::ReactionCount;
use super::place::Place;
use crate::communities::members::UserSummary;
use crate::communities::permissions::Permissions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Validates an emoji from the path.
pub fn emoji(s: &str) -> ApiResult<String> {
    let n = s.chars().count();
    if n == 0 || n > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::validation(
            "emoji must be 1 to 64 characters without spaces",
        ));
    }
    Ok(s.to_owned())
}

/// Reaction counts of `messages`, with `me` telling whether `viewer` reacted.
pub async fn counts(
    db: &PgPool,
    viewer: Id,
    messages: &[i64],
) -> ApiResult<HashMap<i64, Vec<ReactionCount>>> {
    let mut out: HashMap<i64, Vec<ReactionCount>> = HashMap::new();
    if messages.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(i64, String, i64, bool)> = sqlx::query_as(
        "SELECT message_id, emoji, count(*), bool_or(user_id = $2) FROM reactions
          WHERE message_id = ANY($1) GROUP BY message_id, emoji
          ORDER BY message_id, min(created_at), emoji",
    )
    .bind(messages)
    .bind(viewer.0)
    .fetch_all(db)
    .await?;
    for (m, emoji, count, me) in rows {
        out.entry(m)
            .or_default()
            .push(ReactionCount { emoji, count, me });
    }
    Ok(out)
}

/// Per message, its reactions in first-reaction order with who reacted (only for groups of
/// at most [`super::history_cache::MAX_REACTORS`]; the cache keeps reactors only when the
/// whole message has no more than that).
pub async fn groups(
    db: &PgPool,
    messages: &[i64],
) -> ApiResult<HashMap<i64, Vec<super::history_cache::ReactionGroup>>> {
    let mut out: HashMap<i64, Vec<super::history_cache::ReactionGroup>> = HashMap::new();
    if messages.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(i64, String, i64, Option<Vec<i64>>)> = sqlx::query_as(
        "SELECT message_id, emoji, count(*),
                CASE WHEN count(*) <= $2 THEN array_agg(user_id) END
           FROM reactions WHERE message_id = ANY($1) GROUP BY message_id, emoji
          ORDER BY message_id, min(created_at), emoji",
    )
    .bind(messages)
    .bind(super::history_cache::MAX_REACTORS as i64)
    .fetch_all(db)
    .await?;
    for (m, emoji, count, reactors) in rows {
        out.entry(m)
            .or_default()
            .push(super::history_cache::ReactionGroup {
                emoji,
                count,
                reactors,
            });
    }
    Ok(out)
}

/// Adds my reaction (idempotent).
pub async fn add(state: &AppState, me: Id, place: &Place, message: Id, e: &str) -> ApiResult<()> {
    let e = emoji(e)?;
    place.require_perm(Permissions::READ_HISTORY)?;
    if place.timed_out {
        return Err(ApiError::forbidden(
            "timed_out",
            "you are timed out in this server",
        ));
    }
    place.require_perm(Permissions::ADD_REACTIONS)?;
    super::messages::row(&state.db, place.id, message).await?;
    let _cache = state
        .history
        .guard(super::history_cache::Change::Message(place.id.0, message.0));
    let mut tx = state.db.begin().await?;
    // Serialize reactions on this message so the emoji cap holds.
    sqlx::query("SELECT id FROM messages WHERE id = $1 FOR UPDATE")
        .bind(message.0)
        .execute(&mut *tx)
        .await?;
    let (distinct, has_emoji): (i64, bool) = sqlx::query_as(
        "SELECT count(DISTINCT emoji), COALESCE(bool_or(emoji = $2), FALSE) FROM reactions
          WHERE message_id = $1",
    )
    .bind(message.0)
    .bind(&e)
    .fetch_one(&mut *tx)
    .await?;
    if !has_emoji && distinct >= super::MAX_EMOJIS_PER_MESSAGE {
        return Err(ApiError::validation(format!(
            "a message has at most {} different reactions",
            super::MAX_EMOJIS_PER_MESSAGE
        )));
    }
    let added = sqlx::query(
        "INSERT INTO reactions (message_id, emoji, user_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(message.0)
    .bind(&e)
    .bind(me.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    if added > 0 {
        super::messages::publish(
            state,
            place,
            Event::ReactionAdd {
                channel_id: place.id,
                message_id: message,
                user_id: me,
                emoji: e,
            },
        )
        .await?;
    }
    Ok(())
}

/// Removes my reaction (idempotent).
pub async fn remove(
    state: &AppState,
    me: Id,
    place: &Place,
    message: Id,
    e: &str,
) -> ApiResult<()> {
    let e = emoji(e)?;
    place.require_perm(Permissions::READ_HISTORY)?;
    super::messages::row(&state.db, place.id, message).await?;
    let _cache = state
        .history
        .guard(super::history_cache::Change::Message(place.id.0, message.0));
    let gone =
        sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3")
            .bind(message.0)
            .bind(&e)
            .bind(me.0)
            .execute(&state.db)
            .await?
            .rows_affected();
    if gone > 0 {
        super::messages::publish(
            state,
            place,
            Event::ReactionRemove {
                channel_id: place.id,
                message_id: message,
                user_id: me,
                emoji: e,
            },
        )
        .await?;
    }
    Ok(())
}

/// Who reacted with `e`, by user id, after user id `after` (at most `limit`).
pub async fn users(
    db: &PgPool,
    place: &Place,
    message: Id,
    e: &str,
    after: Option<Id>,
    limit: i64,
) -> ApiResult<Vec<UserSummary>> {
    let e = emoji(e)?;
    place.require_perm(Permissions::READ_HISTORY)?;
    super::messages::row(db, place.id, message).await?;
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name FROM reactions r JOIN users u ON u.id = r.user_id
          WHERE r.message_id = $1 AND r.emoji = $2 AND u.id > $3 ORDER BY u.id LIMIT $4",
    )
    .bind(message.0)
    .bind(&e)
    .bind(after.map(|a| a.0).unwrap_or(0))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, username, display_name)| UserSummary {
            id: Id(id),
            username,
            display_name,
        })
        .collect())
}
