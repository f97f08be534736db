//! Moderation: bans (kicks and timeouts are member changes; see the routes) and the notice
//! a kicked, banned or timed-out member receives.

use chrono::{DateTime, SecondsFormat, Utc};
use copains_wire::Id;
use copains_wire::events::{Audience, Event, ModerationAction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::audit::{AuditReason, MAX_REASON_CHARS, clean_reason};
use super::members::UserSummary;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Longest message-deletion window on ban, in seconds (7 days).
pub const MAX_DELETE_MESSAGE_SECS: i32 = 7 * 24 * 3600;

/// A ban as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ban {
    /// The banned user.
    pub user: UserSummary,
    /// Why (the audit reason given when banning).
    pub reason: Option<String>,
    /// Who banned them.
    pub moderator_id: Option<Id>,
    /// Seconds of their most recent messages deleted with the ban.
    pub delete_message_secs: i32,
    /// When.
    pub created_at: DateTime<Utc>,
}

type BanRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i32,
    DateTime<Utc>,
);

/// A page of a server's bans ordered by user id, after `after`.
pub async fn list(db: &PgPool, server: Id, after: Option<Id>, limit: i64) -> ApiResult<Vec<Ban>> {
    let rows: Vec<BanRow> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, b.reason, b.moderator_id, b.delete_message_secs, b.created_at
           FROM bans b JOIN users u ON u.id = b.user_id
          WHERE b.server_id = $1 AND ($2::BIGINT IS NULL OR b.user_id > $2)
          ORDER BY b.user_id LIMIT $3",
    )
    .bind(server.0)
    .bind(after.map(|a| a.0))
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Ban {
            user: UserSummary {
                id: Id(r.0),
                username: r.1,
                display_name: r.2,
            },
            reason: r.3,
            moderator_id: r.4.map(Id),
            delete_message_secs: r.5,
            created_at: r.6,
        })
        .collect())
}

/// Whether `user` is banned from `server`.
pub async fn is_banned(db: &PgPool, server: Id, user: Id) -> ApiResult<bool> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM bans WHERE server_id = $1 AND user_id = $2")
            .bind(server.0)
            .bind(user.0)
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

/// Tells `user` (on their own gateway channel) that they were kicked, banned or timed out of
/// `server`, with the moderator's reason: the web app shows "You were banned from Club:
/// reason" instead of a server that vanished. Best effort: a server gone meanwhile sends nothing.
pub async fn notify(
    state: &AppState,
    server: Id,
    user: Id,
    action: ModerationAction,
    reason: Option<String>,
    timeout_until: Option<DateTime<Utc>>,
) {
    let name: Option<(String,)> = match sqlx::query_as("SELECT name FROM servers WHERE id = $1")
        .bind(server.0)
        .fetch_optional(&state.db)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "moderation notice: server name");
            None
        }
    };
    let Some((server_name,)) = name else { return };
    super::events::publish(
        state,
        vec![Audience::User(user)],
        Event::ModerationNotice {
            server_id: server,
            server_name,
            action,
            reason,
            timeout_until: timeout_until.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        },
    )
    .await;
}

/// An optional JSON body (`{}` fields all optional): empty → `T::default()`, malformed →
/// 400 `malformed_json`, wrong shapes → 422.
pub fn optional_json<T: Default + DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // The one string rule, as the `Json` extractor applies it.
    crate::validate::json_text_fields(body)?;
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::validation(e.to_string())
        } else {
            ApiError::bad_request("malformed_json", format!("malformed JSON: {e}"))
        }
    })
}

/// The reason of a moderation action: the body's `reason` when given (at most
/// [`MAX_REASON_CHARS`] characters, else 422; control characters dropped; blank → none),
/// otherwise the `X-Audit-Log-Reason` header's.
pub fn reason_from(body: Option<&str>, header: AuditReason) -> ApiResult<AuditReason> {
    match body {
        None => Ok(header),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApiError::validation(format!(
            "reason must be at most {MAX_REASON_CHARS} characters"
        ))),
        Some(r) => Ok(AuditReason(clean_reason(r))),
    }
}
