//! Moderation: bans (`/servers/{id}/bans`) and the audit log (`/servers/{id}/audit-log`).
//! Kicks are `DELETE /servers/{id}/members/{user_id}` and timeouts are a member field
//! (`PATCH /servers/{id}/members/{user_id}` with `timeout_until`), see `members.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use copains_wire::events::{Audience, Event, ModerationAction};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::audit::{self, Action, AuditEntry, AuditReason, Entry};
use crate::communities::invites;
use crate::communities::moderation::{self, Ban, MAX_DELETE_MESSAGE_SECS};
use crate::communities::permissions::{self, Permissions};
use crate::communities::{self as c, events, members};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Path, Query};
use crate::state::AppState;

/// The moderation routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bans))
        .routes(routes!(ban, unban))
        .routes(routes!(audit_log))
}

/// Page query of the ban list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BanPage {
    /// Only bans of users whose id is greater than this.
    #[param(value_type = Option<String>)]
    pub after: Option<Id>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// `PUT /servers/{id}/bans/{user_id}` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct NewBan {
    /// Delete the user's messages from the last this-many seconds (0–604800; the web app
    /// offers 1 h, 24 h and 7 d).
    #[schema(minimum = 0, maximum = 604800)]
    pub delete_message_secs: Option<i32>,
    /// Why (at most 512 characters): recorded with the ban and in the audit log, and told to
    /// the banned member. Takes precedence over the `X-Audit-Log-Reason` header.
    #[schema(max_length = 512)]
    pub reason: Option<String>,
}

/// Page query of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditPage {
    /// Only entries older than this entry id.
    #[param(value_type = Option<String>)]
    pub before: Option<Id>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only this action (e.g. `member_ban`).
    pub action: Option<String>,
}

/// The bans of a server (BAN_MEMBERS), ordered by user id.
#[utoipa::path(get, path = "/servers/{server_id}/bans", tag = "moderation", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), BanPage),
    responses((status = 200, body = Vec<Ban>)))]
pub async fn list_bans(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
    Query(q): Query<BanPage>,
) -> ApiResult<axum::Json<Vec<Ban>>> {
    let limit = c::limit(q.limit, 100, 1000)?;
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::BAN_MEMBERS)?;
    Ok(axum::Json(
        moderation::list(&state.db, server_id, q.after, limit).await?,
    ))
}

/// Ban a user (BAN_MEMBERS; a member's highest role must be below yours). They are removed
/// and no invite lets them back until unbanned; their messages in this server from the last
/// `delete_message_secs` seconds are deleted (each with a `message_delete` event). The reason is
/// the body's `reason` or the `X-Audit-Log-Reason` header; a member banned is told on their own
/// gateway channel (`moderation_notice`).
#[utoipa::path(put, path = "/servers/{server_id}/bans/{user_id}", tag = "moderation", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("user_id" = String, Path, description = "User id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded with the ban and in the audit log")),
    request_body(content = Option<NewBan>), responses((status = 204, description = "Banned")))]
pub async fn ban(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, user_id)): Path<(Id, Id)>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::BAN_MEMBERS)?;
    let req: NewBan = moderation::optional_json(&body)?;
    let reason = moderation::reason_from(req.reason.as_deref(), reason)?;
    let window = req.delete_message_secs.unwrap_or(0);
    if !(0..=MAX_DELETE_MESSAGE_SECS).contains(&window) {
        return Err(ApiError::validation(
            "delete_message_secs must be between 0 and 604800",
        ));
    }
    if user_id == auth.user_id {
        return Err(ApiError::validation("you cannot ban yourself"));
    }
    members::user_summary(&state.db, user_id).await?;
    if let Some(target) = permissions::member_rank(&state.db, server_id, user_id).await?
        && !permissions::can_manage_member(access.rank, target)
    {
        return Err(ApiError::forbidden(
            "role_hierarchy",
            "this member's highest role is not below yours",
        ));
    }
    let mut tx = state.db.begin().await?;
    invites::lock_user(&mut tx, user_id).await?;
    sqlx::query(
        "INSERT INTO bans (server_id, user_id, moderator_id, reason, delete_message_secs)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (server_id, user_id) DO UPDATE
            SET moderator_id = EXCLUDED.moderator_id, reason = EXCLUDED.reason,
                delete_message_secs = EXCLUDED.delete_message_secs",
    )
    .bind(server_id.0)
    .bind(user_id.0)
    .bind(auth.user_id.0)
    .bind(&reason.0)
    .bind(window)
    .execute(&mut *tx)
    .await?;
    let was_member = sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
        .bind(server_id.0)
        .bind(user_id.0)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    // Their messages of the last `window` seconds in this server go with the ban
    // (threads included: `perm` is the channel whose permissions govern the message).
    let _cache = (window > 0).then(|| {
        state
            .history
            .guard(crate::messaging::history_cache::Change::All)
    });
    let deleted: Vec<(i64, i64, i64)> = if window > 0 {
        sqlx::query_as(
            "DELETE FROM messages m WHERE m.server_id = $1 AND m.author_id = $2
                AND m.created_at > now() - make_interval(secs => $3)
             RETURNING m.channel_id, m.id,
                COALESCE((SELECT t.parent_id FROM threads t WHERE t.id = m.channel_id), m.channel_id)",
        )
        .bind(server_id.0)
        .bind(user_id.0)
        .bind(f64::from(window))
        .fetch_all(&mut *tx)
        .await?
    } else {
        Vec::new()
    };
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::MemberBan,
            target: Some(user_id),
            changes: json!({"delete_message_secs": window, "was_member": was_member,
                "messages_deleted": deleted.len()}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    if was_member {
        moderation::notify(
            &state,
            server_id,
            user_id,
            ModerationAction::Ban,
            reason.0.clone(),
            None,
        )
        .await;
        super::members::removed(&state, server_id, user_id).await;
    }
    for (channel_id, message_id, perm) in deleted {
        events::publish(
            &state,
            vec![Audience::Channel {
                server_id: Some(server_id),
                channel_id: Id(perm),
            }],
            Event::MessageDelete {
                channel_id: Id(channel_id),
                message_id: Id(message_id),
            },
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a ban (BAN_MEMBERS).
#[utoipa::path(delete, path = "/servers/{server_id}/bans/{user_id}", tag = "moderation", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("user_id" = String, Path, description = "User id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    responses((status = 204, description = "Unbanned")))]
pub async fn unban(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, user_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::BAN_MEMBERS)?;
    let mut tx = state.db.begin().await?;
    let r = sqlx::query("DELETE FROM bans WHERE server_id = $1 AND user_id = $2")
        .bind(server_id.0)
        .bind(user_id.0)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("this user is not banned"));
    }
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::MemberUnban,
            target: Some(user_id),
            changes: json!({}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log of a server (VIEW_AUDIT_LOG), newest first.
#[utoipa::path(get, path = "/servers/{server_id}/audit-log", tag = "moderation", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), AuditPage),
    responses((status = 200, body = Vec<AuditEntry>)))]
pub async fn audit_log(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
    Query(q): Query<AuditPage>,
) -> ApiResult<axum::Json<Vec<AuditEntry>>> {
    let limit = c::limit(q.limit, 50, 100)?;
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::VIEW_AUDIT_LOG)?;
    let action = q.action.as_deref().filter(|a| a.len() <= 64);
    Ok(axum::Json(
        audit::list(&state.db, server_id, q.before, limit, action).await?,
    ))
}
