//! Threads: a child place of a server text channel started from one of its messages (one
//! thread per message). A thread has exactly its parent channel's permissions and encryption.
//! Auto-archive is a query-time rule: a thread whose last message is older than its
//! `auto_archive_secs` (1 h, 24 h, 3 d or 7 d) is archived; it is listed as active again as
//! soon as someone posts in it (no background job).

use chrono::{DateTime, Utc};
use copains_wire::Id;
use copains_wire::events::Event;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::place::{Place, PlaceKind};
use crate::communities::events::value;
use crate::communities::permissions::Permissions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A thread as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Thread {
    /// Thread id (used with `/channels/{id}/messages`).
    pub id: Id,
    /// Always `thread`: a thread is announced as a channel (`channel_create`), and this tells
    /// it apart from a server channel (`text`, `voice`, `category`).
    #[schema(example = "thread")]
    pub kind: &'static str,
    /// The parent text channel.
    pub parent_id: Id,
    /// The server.
    pub server_id: Id,
    /// The message it was started from.
    pub starter_message_id: Id,
    /// Who started it.
    pub owner_id: Option<Id>,
    /// Name (1–100 characters).
    pub name: String,
    /// Inactivity before auto-archive, in seconds.
    pub auto_archive_secs: i32,
    /// Archived now (inactive for longer than `auto_archive_secs`).
    pub archived: bool,
    /// Last message (or creation) time.
    pub last_activity_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// `POST /channels/{id}/messages/{message_id}/threads` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    /// Name (1–100 characters).
    pub name: String,
    /// 3600, 86400 (default), 259200 or 604800.
    pub auto_archive_secs: Option<i32>,
}

type ThreadRow = (
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    i32,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, parent_id, server_id, starter_message_id, owner_id, name, \
    auto_archive_secs, archived OR last_activity_at < now() - make_interval(secs => auto_archive_secs), \
    last_activity_at, created_at";

fn from_row(r: ThreadRow) -> Thread {
    Thread {
        id: Id(r.0),
        kind: "thread",
        parent_id: Id(r.1),
        server_id: Id(r.2),
        starter_message_id: Id(r.3),
        owner_id: r.4.map(Id),
        name: r.5,
        auto_archive_secs: r.6,
        archived: r.7,
        last_activity_at: r.8,
        created_at: r.9,
    }
}

/// Starts a thread from `message` of the text channel `place` (needs SEND_MESSAGES; 409 when
/// the message already has a thread).
pub async fn create(
    state: &AppState,
    me: Id,
    place: &Place,
    message: Id,
    req: NewThread,
) -> ApiResult<Thread> {
    if place.kind != PlaceKind::Channel {
        return Err(ApiError::validation(
            "threads start from messages of server text channels",
        ));
    }
    super::messages::check_can_send(place)?;
    place.require_perm(Permissions::READ_HISTORY)?;
    let name = crate::communities::name("name", &req.name, 100)?;
    let secs = req.auto_archive_secs.unwrap_or(86400);
    if ![3600, 86400, 259200, 604800].contains(&secs) {
        return Err(ApiError::validation(
            "auto_archive_secs must be 3600, 86400, 259200 or 604800",
        ));
    }
    super::messages::row(&state.db, place.id, message).await?;
    let server = place
        .server_id
        .ok_or_else(|| ApiError::validation("threads live in servers"))?;
    let id = state.ids.next();
    let row: ThreadRow = sqlx::query_as(&format!(
        "INSERT INTO threads (id, parent_id, server_id, starter_message_id, owner_id, name,
                              auto_archive_secs)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .bind(place.id.0)
    .bind(server.0)
    .bind(message.0)
    .bind(me.0)
    .bind(&name)
    .bind(secs)
    .fetch_one(&state.db)
    .await
    .map_err(|e| crate::communities::db_conflict(e, "this message already has a thread"))?;
    let t = from_row(row);
    super::messages::publish(state, place, Event::ChannelCreate { channel: value(&t) }).await?;
    Ok(t)
}

/// The threads of channel `place`: active ones, or archived ones when `archived`.
pub async fn list(db: &PgPool, place: &Place, archived: bool) -> ApiResult<Vec<Thread>> {
    if place.kind != PlaceKind::Channel {
        return Err(ApiError::validation(
            "only server text channels have threads",
        ));
    }
    let rows: Vec<ThreadRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM threads WHERE parent_id = $1
            AND (archived OR last_activity_at < now() - make_interval(secs => auto_archive_secs)) = $2
          ORDER BY last_activity_at DESC LIMIT 100"
    ))
    .bind(place.id.0)
    .bind(archived)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}
