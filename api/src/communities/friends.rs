//! Friends and blocks. Each user has their own row per other user: `friend` on both sides;
//! a request is `outgoing` for the sender and `incoming` for the recipient; `blocked` exists
//! only on the blocker's side. Use [`is_blocked`] before letting one user reach another (DMs).

use chrono::{DateTime, Utc};
use copains_wire::Id;
use copains_wire::events::{Audience, Event};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use super::events;
use super::members::{self, UserSummary};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How I see another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipKind {
    /// We are friends.
    Friend,
    /// I asked them.
    Outgoing,
    /// They asked me.
    Incoming,
    /// I blocked them.
    Blocked,
    /// Nothing (only in `relationship_update` events: the relationship ended).
    None,
}

impl RelationshipKind {
    fn parse(s: &str) -> Self {
        match s {
            "friend" => Self::Friend,
            "outgoing" => Self::Outgoing,
            "incoming" => Self::Incoming,
            "blocked" => Self::Blocked,
            _ => Self::None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Friend => "friend",
            Self::Outgoing => "outgoing",
            Self::Incoming => "incoming",
            Self::Blocked => "blocked",
            Self::None => "none",
        }
    }
}

/// A relationship as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Relationship {
    /// The other user.
    pub user: UserSummary,
    /// How I see them.
    pub kind: RelationshipKind,
    /// Since when (absent for `none`).
    pub since: Option<DateTime<Utc>>,
}

/// Whether `a` has blocked `b` or `b` has blocked `a` (then neither may befriend or DM the
/// other).
pub async fn is_blocked(db: &PgPool, a: Id, b: Id) -> ApiResult<bool> {
    let row: Option<(i32,)> = sqlx::query_as(
        "SELECT 1 FROM relationships WHERE kind = 'blocked'
            AND ((user_id = $1 AND other_id = $2) OR (user_id = $2 AND other_id = $1)) LIMIT 1",
    )
    .bind(a.0)
    .bind(b.0)
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

type RelationshipRow = (i64, String, Option<String>, String, DateTime<Utc>);

/// My relationships, oldest first (at most [`super::MAX_RELATIONSHIPS_PER_USER`]).
pub async fn list(db: &PgPool, me: Id) -> ApiResult<Vec<Relationship>> {
    let rows: Vec<RelationshipRow> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, r.kind, r.created_at
           FROM relationships r JOIN users u ON u.id = r.other_id
          WHERE r.user_id = $1 ORDER BY r.created_at, r.other_id LIMIT $2",
    )
    .bind(me.0)
    .bind(super::MAX_RELATIONSHIPS_PER_USER)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, username, display_name, kind, since)| Relationship {
            user: UserSummary {
                id: Id(id),
                username,
                display_name,
            },
            kind: RelationshipKind::parse(&kind),
            since: Some(since),
        })
        .collect())
}

async fn kind_of(c: &mut PgConnection, me: Id, other: Id) -> ApiResult<Option<RelationshipKind>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT kind FROM relationships WHERE user_id = $1 AND other_id = $2")
            .bind(me.0)
            .bind(other.0)
            .fetch_optional(&mut *c)
            .await?;
    Ok(row.map(|(k,)| RelationshipKind::parse(&k)))
}

async fn set(c: &mut PgConnection, me: Id, other: Id, kind: RelationshipKind) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO relationships (user_id, other_id, kind) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, other_id) DO UPDATE SET kind = EXCLUDED.kind, created_at = now()",
    )
    .bind(me.0)
    .bind(other.0)
    .bind(kind.as_str())
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn unset(c: &mut PgConnection, me: Id, other: Id) -> ApiResult<()> {
    sqlx::query("DELETE FROM relationships WHERE user_id = $1 AND other_id = $2")
        .bind(me.0)
        .bind(other.0)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Locks both users' rows in id order so concurrent changes to one pair are serialised.
/// 404 if `other` does not exist.
async fn lock_pair(c: &mut PgConnection, me: Id, other: Id) -> ApiResult<()> {
    let n = sqlx::query("SELECT 1 FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind([me.0.min(other.0), me.0.max(other.0)])
        .execute(&mut *c)
        .await?
        .rows_affected();
    if n != 2 {
        return Err(ApiError::not_found("unknown user"));
    }
    Ok(())
}

async fn quota(c: &mut PgConnection, user: Id) -> ApiResult<()> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM relationships WHERE user_id = $1")
        .bind(user.0)
        .fetch_one(&mut *c)
        .await?;
    if n >= super::MAX_RELATIONSHIPS_PER_USER {
        return Err(ApiError::conflict(
            "too_many_relationships",
            format!(
                "at most {} friends, requests and blocks per user",
                super::MAX_RELATIONSHIPS_PER_USER
            ),
        ));
    }
    Ok(())
}

/// The current view `me` has of `other`.
pub async fn view(db: &PgPool, me: Id, other: Id) -> ApiResult<Relationship> {
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT kind, created_at FROM relationships WHERE user_id = $1 AND other_id = $2",
    )
    .bind(me.0)
    .bind(other.0)
    .fetch_optional(db)
    .await?;
    Ok(Relationship {
        user: members::user_summary(db, other).await?,
        kind: row
            .as_ref()
            .map(|(k, _)| RelationshipKind::parse(k))
            .unwrap_or(RelationshipKind::None),
        since: row.map(|(_, t)| t),
    })
}

/// Sends `me`'s view and `other`'s view of each other to each of them.
async fn notify(state: &AppState, me: Id, other: Id) {
    for (a, b) in [(me, other), (other, me)] {
        if let Ok(v) = view(&state.db, a, b).await {
            events::publish(
                state,
                vec![Audience::User(a)],
                Event::RelationshipUpdate {
                    relationship: events::value(&v),
                },
            )
            .await;
        }
    }
    // Friendship decides who sees whose presence (and who may DM): both gateways recompute.
    events::scope_changed(state, &[me, other]).await;
}

/// The result of a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new request was sent.
    Sent,
    /// A request was already pending; nothing changed.
    AlreadySent,
    /// They had asked me: we are now friends.
    Accepted,
}

/// `me` asks `other` to be friends (accepting their request if they had sent one).
/// Refused (403 `friend_request_refused`) when either has blocked the other.
pub async fn request(state: &AppState, me: Id, other: Id) -> ApiResult<RequestOutcome> {
    if me == other {
        return Err(ApiError::validation("you cannot befriend yourself"));
    }
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    let mine = kind_of(&mut tx, me, other).await?;
    let theirs = kind_of(&mut tx, other, me).await?;
    if mine == Some(RelationshipKind::Blocked) {
        return Err(ApiError::forbidden(
            "friend_request_refused",
            "you blocked this user; unblock them first",
        ));
    }
    if theirs == Some(RelationshipKind::Blocked) {
        return Err(ApiError::forbidden(
            "friend_request_refused",
            "this user does not accept friend requests from you",
        ));
    }
    let outcome = match mine {
        Some(RelationshipKind::Friend) => {
            return Err(ApiError::conflict(
                "already_friends",
                "you are already friends",
            ));
        }
        Some(RelationshipKind::Outgoing) => RequestOutcome::AlreadySent,
        Some(RelationshipKind::Incoming) => {
            set(&mut tx, me, other, RelationshipKind::Friend).await?;
            set(&mut tx, other, me, RelationshipKind::Friend).await?;
            RequestOutcome::Accepted
        }
        _ => {
            quota(&mut tx, me).await?;
            quota(&mut tx, other).await?;
            set(&mut tx, me, other, RelationshipKind::Outgoing).await?;
            set(&mut tx, other, me, RelationshipKind::Incoming).await?;
            RequestOutcome::Sent
        }
    };
    tx.commit().await?;
    if outcome != RequestOutcome::AlreadySent {
        notify(state, me, other).await;
    }
    Ok(outcome)
}

/// `me` accepts `other`'s pending request (404 if there is none).
pub async fn accept(state: &AppState, me: Id, other: Id) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    if kind_of(&mut tx, me, other).await? != Some(RelationshipKind::Incoming) {
        return Err(ApiError::not_found("no pending request from this user"));
    }
    set(&mut tx, me, other, RelationshipKind::Friend).await?;
    set(&mut tx, other, me, RelationshipKind::Friend).await?;
    tx.commit().await?;
    notify(state, me, other).await;
    Ok(())
}

/// `me` declines `other`'s pending request (404 if there is none).
pub async fn decline(state: &AppState, me: Id, other: Id) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    if kind_of(&mut tx, me, other).await? != Some(RelationshipKind::Incoming) {
        return Err(ApiError::not_found("no pending request from this user"));
    }
    unset(&mut tx, me, other).await?;
    unset(&mut tx, other, me).await?;
    tx.commit().await?;
    notify(state, me, other).await;
    Ok(())
}

/// `me` ends a friendship or cancels their own pending request (404 if neither).
pub async fn remove(state: &AppState, me: Id, other: Id) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    match kind_of(&mut tx, me, other).await? {
        Some(RelationshipKind::Friend | RelationshipKind::Outgoing) => {}
        _ => {
            return Err(ApiError::not_found(
                "no friendship or request with this user",
            ));
        }
    }
    unset(&mut tx, me, other).await?;
    unset(&mut tx, other, me).await?;
    tx.commit().await?;
    notify(state, me, other).await;
    Ok(())
}

/// `me` blocks `other`: any friendship or request between them ends.
pub async fn block(state: &AppState, me: Id, other: Id) -> ApiResult<()> {
    if me == other {
        return Err(ApiError::validation("you cannot block yourself"));
    }
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    if kind_of(&mut tx, me, other).await?.is_none() {
        quota(&mut tx, me).await?;
    }
    set(&mut tx, me, other, RelationshipKind::Blocked).await?;
    if kind_of(&mut tx, other, me).await? != Some(RelationshipKind::Blocked) {
        unset(&mut tx, other, me).await?;
    }
    tx.commit().await?;
    notify(state, me, other).await;
    Ok(())
}

/// `me` unblocks `other` (404 if not blocked).
pub async fn unblock(state: &AppState, me: Id, other: Id) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    if kind_of(&mut tx, me, other).await? != Some(RelationshipKind::Blocked) {
        return Err(ApiError::not_found("this user is not blocked"));
    }
    unset(&mut tx, me, other).await?;
    tx.commit().await?;
    notify(state, me, other).await;
    Ok(())
}

/// Finds a user id by username (case-insensitive); 404 if none.
pub async fn user_by_name(db: &PgPool, username: &str) -> ApiResult<Id> {
    if username.len() > 64 {
        return Err(ApiError::not_found("unknown user"));
    }
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM users WHERE lower(username) = lower($1)")
            .bind(username)
            .fetch_optional(db)
            .await?;
    row.map(|(id,)| Id(id))
        .ok_or_else(|| ApiError::not_found("unknown user"))
}
