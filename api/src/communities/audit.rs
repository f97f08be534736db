//! The audit log: every management and moderation action of a server, with its actor,
//! target, changes and the reason given in the `X-Audit-Log-Reason` header.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The header carrying the reason for an action.
pub const REASON_HEADER: &str = "x-audit-log-reason";
/// Longest reason kept, in characters (longer ones are cut).
pub const MAX_REASON_CHARS: usize = 512;

/// The reason of this request, from `X-Audit-Log-Reason` (UTF-8, cut to 512 characters,
/// control characters removed; empty → none).
#[derive(Debug, Clone, Default)]
pub struct AuditReason(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for AuditReason {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(REASON_HEADER) else {
            return Ok(AuditReason(None));
        };
        let s = std::str::from_utf8(v.as_bytes()).map_err(|_| {
            ApiError::bad_request("bad_audit_reason", "X-Audit-Log-Reason must be UTF-8")
        })?;
        Ok(AuditReason(clean_reason(s)))
    }
}

/// Trims, drops control characters and cuts to [`MAX_REASON_CHARS`].
pub fn clean_reason(s: &str) -> Option<String> {
    let r: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    (!r.is_empty()).then_some(r)
}

/// What was done (the `action` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Server settings changed.
    ServerUpdate,
    /// Ownership moved to another member.
    ServerTransfer,
    /// A channel was created.
    ChannelCreate,
    /// A channel changed.
    ChannelUpdate,
    /// A channel was deleted.
    ChannelDelete,
    /// Channels were moved.
    ChannelReorder,
    /// A channel overwrite was set.
    OverwriteUpdate,
    /// A channel overwrite was removed.
    OverwriteDelete,
    /// A role was created.
    RoleCreate,
    /// A role changed.
    RoleUpdate,
    /// A role was deleted.
    RoleDelete,
    /// Roles were reordered.
    RoleReorder,
    /// A member's nickname, roles or timeout changed.
    MemberUpdate,
    /// A member was kicked.
    MemberKick,
    /// A user was banned.
    MemberBan,
    /// A user was unbanned.
    MemberUnban,
    /// An invite was created.
    InviteCreate,
    /// An invite was revoked.
    InviteDelete,
}

impl Action {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ServerUpdate => "server_update",
            Action::ServerTransfer => "server_transfer",
            Action::ChannelCreate => "channel_create",
            Action::ChannelUpdate => "channel_update",
            Action::ChannelDelete => "channel_delete",
            Action::ChannelReorder => "channel_reorder",
            Action::OverwriteUpdate => "overwrite_update",
            Action::OverwriteDelete => "overwrite_delete",
            Action::RoleCreate => "role_create",
            Action::RoleUpdate => "role_update",
            Action::RoleDelete => "role_delete",
            Action::RoleReorder => "role_reorder",
            Action::MemberUpdate => "member_update",
            Action::MemberKick => "member_kick",
            Action::MemberBan => "member_ban",
            Action::MemberUnban => "member_unban",
            Action::InviteCreate => "invite_create",
            Action::InviteDelete => "invite_delete",
        }
    }
}

/// One entry to record.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The server.
    pub server_id: Id,
    /// Who acted.
    pub actor: Id,
    /// What was done.
    pub action: Action,
    /// The object acted on.
    pub target: Option<Id>,
    /// What changed.
    pub changes: Value,
    /// Why (from the header).
    pub reason: &'a AuditReason,
}

/// Records one entry (inside the caller's transaction when given one).
pub async fn record(
    db: impl sqlx::PgExecutor<'_>,
    state: &AppState,
    e: Entry<'_>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, server_id, actor_id, action, target_id, changes, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(state.ids.next().0)
    .bind(e.server_id.0)
    .bind(e.actor.0)
    .bind(e.action.as_str())
    .bind(e.target.map(|t| t.0))
    .bind(e.changes)
    .bind(&e.reason.0)
    .execute(db)
    .await?;
    Ok(())
}

/// One audit-log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Entry id (time-sortable).
    pub id: Id,
    /// Who acted (`null` if their account was deleted).
    pub actor_id: Option<Id>,
    /// What was done, e.g. `member_ban`.
    pub action: String,
    /// The object acted on (a user, role, channel…), if any.
    pub target_id: Option<Id>,
    /// What changed (shape depends on the action).
    #[schema(value_type = Object)]
    pub changes: Value,
    /// The reason given, if any.
    pub reason: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

type EntryRow = (
    i64,
    Option<i64>,
    String,
    Option<i64>,
    Value,
    Option<String>,
    DateTime<Utc>,
);

/// Entries of a server, newest first, older than `before` (if given), at most `limit`.
pub async fn list(
    db: &sqlx::PgPool,
    server_id: Id,
    before: Option<Id>,
    limit: i64,
    action: Option<&str>,
) -> ApiResult<Vec<AuditEntry>> {
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT id, actor_id, action, target_id, changes, reason, created_at FROM audit_log
          WHERE server_id = $1 AND ($2::BIGINT IS NULL OR id < $2) AND ($3::TEXT IS NULL OR action = $3)
          ORDER BY id DESC LIMIT $4",
    )
    .bind(server_id.0)
    .bind(before.map(|b| b.0))
    .bind(action)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, actor, action, target, changes, reason, created_at)| AuditEntry {
                id: Id(id),
                actor_id: actor.map(Id),
                action,
                target_id: target.map(Id),
                changes,
                reason,
                created_at,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_trimmed_cleaned_and_capped() {
        assert_eq!(clean_reason("  "), None);
        assert_eq!(clean_reason(" spam\n").as_deref(), Some("spam"));
        assert_eq!(clean_reason(&"é".repeat(600)).unwrap().chars().count(), 512);
        assert_eq!(clean_reason("a\u{7}b").as_deref(), Some("ab"));
    }
}
