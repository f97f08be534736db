//! Full-text search of one server's plaintext messages (PostgreSQL `tsvector` generated
//! column with the `simple` configuration, GIN index, `websearch_to_tsquery` syntax:
//! words, `"phrases"`, `or`, `-excluded`). Only places the searcher may read are searched:
//! unencrypted text channels where they hold VIEW_CHANNEL and READ_HISTORY, and the threads of
//! those channels. Encrypted channels and DMs hold only ciphertext: clients search them locally.

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{LISTED_COLUMNS, Message, MessageRow};
use crate::communities::channels::{self, ChannelKind};
use crate::communities::permissions::{self, Permissions};
use crate::error::{ApiError, ApiResult};

/// `GET /servers/{id}/messages/search` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The words to find (1–200 characters, web-search syntax).
    pub q: String,
    /// Only messages by this user.
    #[param(value_type = Option<String>)]
    pub author_id: Option<Id>,
    /// Only this channel (or thread).
    #[param(value_type = Option<String>)]
    pub channel_id: Option<Id>,
    /// Only messages sent at or after this time (RFC 3339).
    pub after: Option<DateTime<Utc>>,
    /// Only messages sent before this time (RFC 3339).
    pub before: Option<DateTime<Utc>>,
    /// Cursor: only messages with an id below this one (the last id of the previous page).
    #[param(value_type = Option<String>)]
    pub before_id: Option<Id>,
    /// Page size, 1–50 (default 25).
    pub limit: Option<i64>,
}

/// Search results, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Matching messages.
    pub messages: Vec<Message>,
}

fn id_at(t: DateTime<Utc>) -> i64 {
    Id::min_at(u64::try_from(t.timestamp_millis()).unwrap_or(0)).0
}

/// The readable, searchable places of `server` for `user` (404 when not a member).
pub async fn readable_places(db: &PgPool, user: Id, server: Id) -> ApiResult<Vec<i64>> {
    let access = permissions::require_member(db, user, server).await?;
    let mut ids = Vec::new();
    for c in channels::visible(db, &access).await? {
        if c.kind != ChannelKind::Text || c.encrypted {
            continue;
        }
        let ow = channels::applicable(&access, &c.overwrites);
        let p = permissions::channel_permissions_for(&access.inputs, &ow);
        if p.contains(Permissions::VIEW_CHANNEL.union(Permissions::READ_HISTORY)) {
            ids.push(c.id.0);
        }
    }
    let threads: Vec<i64> = sqlx::query_scalar("SELECT id FROM threads WHERE parent_id = ANY($1)")
        .bind(&ids)
        .fetch_all(db)
        .await?;
    ids.extend(threads);
    Ok(ids)
}

/// Runs a search for `user` in `server`.
pub async fn search(db: &PgPool, user: Id, server: Id, q: SearchQuery) -> ApiResult<SearchResults> {
    let text = q.q.trim();
    if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "q must be 1 to 200 characters without control characters",
        ));
    }
    let limit = crate::communities::limit(q.limit, 25, 50)?;
    let mut places = readable_places(db, user, server).await?;
    if let Some(c) = q.channel_id {
        if !places.contains(&c.0) {
            return Err(ApiError::not_found(
                "unknown channel (or not searchable: encrypted, or no READ_HISTORY)",
            ));
        }
        places = vec![c.0];
    }
    let low = q.after.map(id_at).unwrap_or(0);
    let mut high = q.before.map(id_at).unwrap_or(i64::MAX);
    if let Some(b) = q.before_id {
        high = high.min(b.0);
    }
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "SELECT {LISTED_COLUMNS} FROM messages m
          WHERE m.channel_id = ANY($1) AND m.search @@ websearch_to_tsquery('simple', $2)
            AND ($3::BIGINT IS NULL OR m.author_id = $3) AND m.id >= $4 AND m.id < $5
          ORDER BY m.id DESC LIMIT $6"
    ))
    .bind(&places)
    .bind(text)
    .bind(q.author_id.map(|a| a.0))
    .bind(low)
    .bind(high)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(SearchResults {
        messages: super::render_all(db, user, rows).await?,
    })
}
