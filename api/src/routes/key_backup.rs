//! `/keys/backup`: my encrypted key backup. The server stores a version, opaque `auth_data`
//! and opaque session blobs (Megolm session keys encrypted on the client under a recovery key
//! the server never sees); it cannot read any of it.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Auth, Json, Query};
use crate::keys::{self, KeysResult};
use crate::state::AppState;

/// The `/keys/backup` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_backup, put_backup))
        .routes(routes!(get_sessions, put_sessions))
}

fn printable(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field} must be 1 to {max} characters with no control characters"
        )));
    }
    Ok(())
}

/// `PUT /keys/backup` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewBackup {
    /// Opaque client data about the backup (for example a check value of the recovery key),
    /// at most 4096 characters.
    pub auth_data: String,
}

/// The current backup version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    /// Version, increasing with every `PUT /keys/backup`.
    pub version: i64,
    /// The opaque client data.
    pub auth_data: String,
    /// Session blobs stored in this version.
    pub sessions: i64,
    /// When this version was created.
    pub created_at: DateTime<Utc>,
}

/// Start a new backup version (e.g. after a new recovery key): the previous version's
/// sessions are deleted.
#[utoipa::path(put, path = "/keys/backup", tag = "keys", security(("bearer" = [])), request_body = NewBackup,
    responses((status = 200, body = Backup)))]
pub async fn put_backup(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<NewBackup>,
) -> KeysResult<axum::Json<Backup>> {
    printable("auth_data", &req.auth_data, keys::MAX_BACKUP_AUTH_DATA)?;
    let mut tx = state.db.begin().await?;
    let (version, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO key_backups (user_id, version, auth_data) VALUES ($1, 1, $2)
         ON CONFLICT (user_id) DO UPDATE
            SET version = key_backups.version + 1, auth_data = EXCLUDED.auth_data, created_at = now()
         RETURNING version, created_at",
    )
    .bind(auth.user_id.0)
    .bind(&req.auth_data)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM key_backup_sessions WHERE user_id = $1 AND version <> $2")
        .bind(auth.user_id.0)
        .bind(version)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(axum::Json(Backup {
        version,
        auth_data: req.auth_data,
        sessions: 0,
        created_at,
    }))
}

async fn current(state: &AppState, auth: &Auth) -> KeysResult<Backup> {
    let row: Option<(i64, String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT b.version, b.auth_data, b.created_at,
                (SELECT count(*) FROM key_backup_sessions s WHERE s.user_id = b.user_id)
           FROM key_backups b WHERE b.user_id = $1",
    )
    .bind(auth.user_id.0)
    .fetch_optional(&state.db)
    .await?;
    let (version, auth_data, created_at, sessions) =
        row.ok_or_else(|| ApiError::not_found("no key backup"))?;
    Ok(Backup {
        version,
        auth_data,
        sessions,
        created_at,
    })
}

/// My current backup version (404 when I have none).
#[utoipa::path(get, path = "/keys/backup", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Backup)))]
pub async fn get_backup(
    State(state): State<AppState>,
    auth: Auth,
) -> KeysResult<axum::Json<Backup>> {
    Ok(axum::Json(current(&state, &auth).await?))
}

/// One encrypted session blob.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupSession {
    /// The channel (or DM) the Megolm session belongs to, 1 to 128 characters.
    pub channel_id: String,
    /// The Megolm session id, 1 to 128 characters.
    pub session_id: String,
    /// The encrypted blob (opaque), at most 16 KiB.
    pub data: String,
}

/// `PUT /keys/backup/sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutSessions {
    /// The backup version these blobs are encrypted for (must be the current one).
    pub version: i64,
    /// At most 1000 blobs; a blob for an existing (channel, session) replaces it.
    pub sessions: Vec<BackupSession>,
}

/// `PUT /keys/backup/sessions` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PutSessionsResult {
    /// Blobs now stored in the backup.
    pub sessions: i64,
}

/// Store encrypted session blobs in my current backup (409 `wrong_backup_version` when
/// `version` is not the current one; at most 100,000 blobs in all).
#[utoipa::path(put, path = "/keys/backup/sessions", tag = "keys", security(("bearer" = [])), request_body = PutSessions,
    responses((status = 200, body = PutSessionsResult), (status = 409, description = "Not the current version", body = crate::error::ErrorBody)))]
pub async fn put_sessions(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<PutSessions>,
) -> KeysResult<axum::Json<PutSessionsResult>> {
    if req.sessions.len() > keys::MAX_BACKUP_SESSIONS_PER_REQUEST {
        return Err(ApiError::validation(format!(
            "at most {} sessions per request",
            keys::MAX_BACKUP_SESSIONS_PER_REQUEST
        ))
        .into());
    }
    for s in &req.sessions {
        printable("channel_id", &s.channel_id, 128)?;
        printable("session_id", &s.session_id, 128)?;
        printable("data", &s.data, keys::MAX_BACKUP_SESSION_DATA)?;
    }
    let mut tx = state.db.begin().await?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM key_backups WHERE user_id = $1 FOR UPDATE")
            .bind(auth.user_id.0)
            .fetch_optional(&mut *tx)
            .await?;
    let version = version.ok_or_else(|| ApiError::not_found("no key backup"))?;
    if version != req.version {
        return Err(ApiError::conflict(
            "wrong_backup_version",
            format!("the current backup version is {version}"),
        )
        .into());
    }
    let channels: Vec<&str> = req.sessions.iter().map(|s| s.channel_id.as_str()).collect();
    let sessions: Vec<&str> = req.sessions.iter().map(|s| s.session_id.as_str()).collect();
    let data: Vec<&str> = req.sessions.iter().map(|s| s.data.as_str()).collect();
    sqlx::query(
        "INSERT INTO key_backup_sessions (user_id, version, channel_id, session_id, data)
         SELECT DISTINCT ON (c, s) $1, $2, c, s, d FROM unnest($3::text[], $4::text[], $5::text[]) AS x(c, s, d)
         ON CONFLICT (user_id, channel_id, session_id) DO UPDATE
            SET data = EXCLUDED.data, version = EXCLUDED.version, updated_at = now()",
    )
    .bind(auth.user_id.0)
    .bind(version)
    .bind(&channels)
    .bind(&sessions)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM key_backup_sessions WHERE user_id = $1")
            .bind(auth.user_id.0)
            .fetch_one(&mut *tx)
            .await?;
    if stored > keys::MAX_BACKUP_SESSIONS_STORED {
        return Err(ApiError::conflict(
            "backup_full",
            format!(
                "at most {} sessions per backup",
                keys::MAX_BACKUP_SESSIONS_STORED
            ),
        )
        .into());
    }
    tx.commit().await?;
    Ok(axum::Json(PutSessionsResult { sessions: stored }))
}

/// `GET /keys/backup/sessions` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionsQuery {
    /// Return blobs after this cursor (the `next` of the previous page; default 0).
    #[serde(default)]
    pub since: i64,
    /// Blobs per page, 1 to 1000 (default 1000).
    pub limit: Option<i64>,
}

/// `GET /keys/backup/sessions` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionsPage {
    /// The current backup version.
    pub version: i64,
    /// Blobs after `since`.
    pub sessions: Vec<BackupSession>,
    /// The cursor for the next page (equal to `since` when there is nothing more).
    pub next: i64,
}

/// A page of the encrypted session blobs of my current backup.
#[utoipa::path(get, path = "/keys/backup/sessions", tag = "keys", security(("bearer" = [])), params(SessionsQuery),
    responses((status = 200, body = SessionsPage)))]
pub async fn get_sessions(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<SessionsQuery>,
) -> KeysResult<axum::Json<SessionsPage>> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) || q.since < 0 {
        return Err(
            ApiError::bad_request("bad_query", "limit must be 1 to 1000 and since ≥ 0").into(),
        );
    }
    let backup = current(&state, &auth).await?;
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, channel_id, session_id, data FROM key_backup_sessions
          WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(auth.user_id.0)
    .bind(q.since)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next = rows.last().map_or(q.since, |r| r.0);
    Ok(axum::Json(SessionsPage {
        version: backup.version,
        sessions: rows
            .into_iter()
            .map(|(_, channel_id, session_id, data)| BackupSession {
                channel_id,
                session_id,
                data,
            })
            .collect(),
        next,
    }))
}
