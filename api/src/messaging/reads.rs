//! Read states and pins.
//!
//! A read state is the last message a user read in a place (`POST …/ack` sets it, backwards
//! too, which is how "mark unread" works). Counts are computed at query time from it:
//! `unread_count` = messages after it not written by the user; `mention_count` = those of them
//! that mention the user, one of their roles, or everyone. Both are capped at
//! [`MAX_COUNT`] (a never-read busy channel shows "999+").

use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::place::Place;
use crate::communities::permissions::{self, Permissions};
use crate::communities::{channels, channels::ChannelKind};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Counts stop here.
pub const MAX_COUNT: i64 = 1000;

/// My read state of one place.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadState {
    /// The place (server channel, thread, DM or group DM).
    pub channel_id: Id,
    /// The server, `null` for DMs.
    pub server_id: Option<Id>,
    /// The last message I read, if I ever acknowledged one.
    pub last_read_id: Option<Id>,
    /// The newest message of the place, if any.
    pub last_message_id: Option<Id>,
    /// Messages after `last_read_id` by others (at most 1000).
    pub unread_count: i64,
    /// Of those, the ones mentioning me, one of my roles or everyone (at most 1000).
    pub mention_count: i64,
}

type CountRow = (i64, Option<i64>, Option<i64>, i64, i64);

/// Read states of `places` (`(place, server)`) for `me` with `roles` (all of my role ids).
pub async fn states(
    db: &PgPool,
    me: Id,
    places: &[(Id, Option<Id>)],
    roles: &[i64],
) -> ApiResult<Vec<ReadState>> {
    let ids: Vec<i64> = places.iter().map(|(p, _)| p.0).collect();
    let rows: Vec<CountRow> = sqlx::query_as(
        "SELECT c.id, rs.last_read_id, h.last_message_id,
                (SELECT count(*) FROM (SELECT 1 FROM messages m
                   WHERE m.channel_id = c.id AND m.id > COALESCE(rs.last_read_id, 0)
                     AND m.author_id IS DISTINCT FROM $2 LIMIT $4) x),
                (SELECT count(*) FROM (SELECT 1 FROM messages m
                   WHERE m.channel_id = c.id AND m.id > COALESCE(rs.last_read_id, 0)
                     AND m.author_id IS DISTINCT FROM $2
                     AND (m.mention_everyone OR $2 = ANY(m.mention_users) OR m.mention_roles && $3)
                   LIMIT $4) y)
           FROM unnest($1::BIGINT[]) WITH ORDINALITY AS c(id, ord)
           LEFT JOIN read_states rs ON rs.user_id = $2 AND rs.channel_id = c.id
           LEFT JOIN channel_heads h ON h.channel_id = c.id
          ORDER BY c.ord",
    )
    .bind(&ids)
    .bind(me.0)
    .bind(roles)
    .bind(MAX_COUNT)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .zip(places)
        .map(
            |((id, last_read, last_msg, unread, mentions), (_, server))| ReadState {
                channel_id: Id(id),
                server_id: *server,
                last_read_id: last_read.map(Id),
                last_message_id: last_msg.map(Id),
                unread_count: unread,
                mention_count: mentions,
            },
        )
        .collect())
}

/// Acknowledges `message` in `place`: my read state moves to it.
pub async fn ack(state: &AppState, me: Id, place: &Place, message: Id) -> ApiResult<ReadState> {
    place.require_perm(Permissions::READ_HISTORY)?;
    super::messages::row(&state.db, place.id, message).await?;
    sqlx::query(
        "INSERT INTO read_states (user_id, channel_id, last_read_id) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, channel_id) DO UPDATE SET last_read_id = $3, updated_at = now()",
    )
    .bind(me.0)
    .bind(place.id.0)
    .bind(message.0)
    .execute(&state.db)
    .await?;
    state
        .publish(BusEvent::to(
            Audience::User(me),
            Event::ReadStateUpdate {
                channel_id: place.id,
                last_read_id: message,
            },
        ))
        .await;
    states(
        &state.db,
        me,
        &[(place.id, place.server_id)],
        &place.role_ids,
    )
    .await?
    .pop()
    .ok_or_else(|| ApiError::Internal("read state vanished".into()))
}

/// My read states: every DM and group DM I am in, every text channel I can see in my servers,
/// and the threads of those channels I have acknowledged at least once.
pub async fn mine(db: &PgPool, me: Id) -> ApiResult<Vec<ReadState>> {
    let mut places: Vec<(Id, Option<Id>)> = Vec::new();
    let dms: Vec<i64> =
        sqlx::query_scalar("SELECT channel_id FROM dm_recipients WHERE user_id = $1 LIMIT 500")
            .bind(me.0)
            .fetch_all(db)
            .await?;
    places.extend(dms.into_iter().map(|d| (Id(d), None)));
    let servers: Vec<i64> = sqlx::query_scalar(
        "SELECT server_id FROM members WHERE user_id = $1 ORDER BY server_id LIMIT 200",
    )
    .bind(me.0)
    .fetch_all(db)
    .await?;
    let mut roles = Vec::new();
    for s in servers {
        let Some(access) = permissions::server_access(db, me, Id(s)).await? else {
            continue;
        };
        roles.extend_from_slice(&access.role_ids);
        for c in channels::visible(db, &access).await? {
            if c.kind == ChannelKind::Text {
                places.push((c.id, Some(c.server_id)));
            }
        }
    }
    // Threads of those channels that I have acknowledged at least once.
    let visible: Vec<i64> = places
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(c, _)| c.0)
        .collect();
    let threads: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT t.id, t.server_id FROM threads t
           JOIN read_states rs ON rs.channel_id = t.id AND rs.user_id = $1
          WHERE t.parent_id = ANY($2) ORDER BY t.id LIMIT 500",
    )
    .bind(me.0)
    .bind(&visible)
    .fetch_all(db)
    .await?;
    places.extend(threads.into_iter().map(|(t, s)| (Id(t), Some(Id(s)))));
    states(db, me, &places, &roles).await
}

/// Pins or unpins a message (MANAGE_MESSAGES in servers; any recipient in DMs). At most
/// [`super::MAX_PINS`] pins per place (422 beyond).
pub async fn set_pinned(
    state: &AppState,
    me: Id,
    place: &Place,
    message: Id,
    pinned: bool,
) -> ApiResult<()> {
    place.require_perm(Permissions::MANAGE_MESSAGES)?;
    super::messages::row(&state.db, place.id, message).await?;
    let _cache = state
        .history
        .guard(super::history_cache::Change::Message(place.id.0, message.0));
    let mut tx = state.db.begin().await?;
    if pinned {
        sqlx::query("SELECT channel_id FROM channel_heads WHERE channel_id = $1 FOR UPDATE")
            .bind(place.id.0)
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE channel_id = $1 AND pinned_at IS NOT NULL AND id <> $2",
        )
        .bind(place.id.0)
        .bind(message.0)
        .fetch_one(&mut *tx)
        .await?;
        if n >= super::MAX_PINS {
            return Err(ApiError::validation(format!(
                "a channel has at most {} pinned messages",
                super::MAX_PINS
            )));
        }
    }
    let changed = sqlx::query(
        "UPDATE messages SET pinned_at = CASE WHEN $3 THEN now() ELSE NULL END
          WHERE id = $1 AND channel_id = $2 AND (pinned_at IS NOT NULL) <> $3",
    )
    .bind(message.0)
    .bind(place.id.0)
    .bind(pinned)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    if changed > 0 {
        let msg = super::messages::get(&state.db, me, place.id, message).await?;
        super::messages::publish(
            state,
            place,
            Event::MessageUpdate {
                message: crate::communities::events::value(&msg),
            },
        )
        .await?;
    }
    Ok(())
}

/// The pinned messages of a place, most recently pinned first.
pub async fn pins(db: &PgPool, me: Id, place: &Place) -> ApiResult<Vec<super::Message>> {
    place.require_perm(Permissions::READ_HISTORY)?;
    let rows: Vec<super::MessageRow> = sqlx::query_as(&format!(
        "SELECT {} FROM messages m WHERE m.channel_id = $1 AND m.pinned_at IS NOT NULL
          ORDER BY m.pinned_at DESC, m.id DESC LIMIT $2",
        super::LISTED_COLUMNS
    ))
    .bind(place.id.0)
    .bind(super::MAX_PINS)
    .fetch_all(db)
    .await?;
    super::render_all(db, me, rows).await
}
