//! `/servers/{id}/members`: list (paginated), get, update (nickname, roles, timeout), kick.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use copains_wire::Id;
use copains_wire::events::{Audience, Event, ModerationAction};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::audit::{self, Action, AuditReason, Entry};
use crate::communities::members::{self, Member};
use crate::communities::moderation;
use crate::communities::permissions::{self, Permissions, Rank};
use crate::communities::{self as c, events};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path, Query};
use crate::state::AppState;

/// The member routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(get_member, update_member, kick_member))
}

/// Page query of the member list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberPage {
    /// Only members whose user id is greater than this.
    #[param(value_type = Option<String>)]
    pub after: Option<Id>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /servers/{id}/members/{user_id}` body; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMember {
    /// New nickname (1–32 characters; "" clears). Own: CHANGE_NICKNAME; others: MANAGE_NICKNAMES.
    pub nickname: Option<String>,
    /// The member's complete set of roles (MANAGE_ROLES; only roles below your highest, and
    /// only roles whose permissions you hold yourself).
    #[schema(value_type = Option<Vec<String>>)]
    pub roles: Option<Vec<Id>>,
    /// Time the member out until then (at most 28 days ahead; MODERATE_MEMBERS); `null` ends it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub timeout_until: Option<Option<DateTime<Utc>>>,
    /// Why (at most 512 characters): recorded in the audit log and, with a timeout, told to the
    /// member. Takes precedence over the `X-Audit-Log-Reason` header.
    #[schema(max_length = 512)]
    pub reason: Option<String>,
}

/// `DELETE /servers/{id}/members/{user_id}` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct KickBody {
    /// Why (at most 512 characters): recorded in the audit log and told to the kicked member.
    /// Takes precedence over the `X-Audit-Log-Reason` header.
    #[schema(max_length = 512)]
    pub reason: Option<String>,
}

/// The members of a server I belong to, ordered by user id.
#[utoipa::path(get, path = "/servers/{server_id}/members", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), MemberPage),
    responses((status = 200, body = Vec<Member>)))]
pub async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
    Query(q): Query<MemberPage>,
) -> ApiResult<axum::Json<Vec<Member>>> {
    let limit = c::limit(q.limit, 100, 1000)?;
    permissions::require_member(&state.db, auth.user_id, server_id).await?;
    Ok(axum::Json(
        members::page(&state.db, server_id, q.after, limit).await?,
    ))
}

/// One member of a server I belong to.
#[utoipa::path(get, path = "/servers/{server_id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = Member)))]
pub async fn get_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((server_id, user_id)): Path<(Id, Id)>,
) -> ApiResult<axum::Json<Member>> {
    permissions::require_member(&state.db, auth.user_id, server_id).await?;
    Ok(axum::Json(
        members::get(&state.db, server_id, user_id).await?,
    ))
}

/// Loads the target's rank; 404 when they are not a member.
async fn target_rank(state: &AppState, server_id: Id, user_id: Id) -> ApiResult<Rank> {
    permissions::member_rank(&state.db, server_id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown member"))
}

fn outranked() -> ApiError {
    ApiError::forbidden(
        "role_hierarchy",
        "this member's highest role is not below yours",
    )
}

/// Change a member's nickname, roles or timeout.
#[utoipa::path(patch, path = "/servers/{server_id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("user_id" = String, Path, description = "User id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = UpdateMember, responses((status = 200, body = Member)))]
pub async fn update_member(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, user_id)): Path<(Id, Id)>,
    Json(req): Json<UpdateMember>,
) -> ApiResult<axum::Json<Member>> {
    let reason = moderation::reason_from(req.reason.as_deref(), reason)?;
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    let target = target_rank(&state, server_id, user_id).await?;
    let is_self = user_id == auth.user_id;
    let mut changes = serde_json::Map::new();

    let nickname = match &req.nickname {
        Some(n) => {
            if is_self {
                if !access.permissions.contains(Permissions::CHANGE_NICKNAME) {
                    access.require(Permissions::MANAGE_NICKNAMES)?;
                }
            } else {
                access.require(Permissions::MANAGE_NICKNAMES)?;
                if !permissions::can_manage_member(access.rank, target) {
                    return Err(outranked());
                }
            }
            let n = if n.trim().is_empty() {
                None
            } else {
                Some(c::name("nickname", n, 32)?)
            };
            changes.insert("nickname".into(), json!(n));
            Some(n)
        }
        None => None,
    };

    let mut new_roles: Option<Vec<i64>> = None;
    if let Some(roles) = &req.roles {
        access.require(Permissions::MANAGE_ROLES)?;
        if !is_self && !permissions::can_manage_member(access.rank, target) {
            return Err(outranked());
        }
        if roles.len() > c::MAX_ROLES_PER_SERVER as usize {
            return Err(ApiError::validation("too many roles"));
        }
        let mut wanted: Vec<i64> = roles.iter().map(|r| r.0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let found: Vec<(i64, i32, i64)> = sqlx::query_as(
            "SELECT id, position, permissions FROM roles WHERE server_id = $1 AND id = ANY($2) AND id <> server_id",
        )
        .bind(server_id.0)
        .bind(&wanted)
        .fetch_all(&state.db)
        .await?;
        if found.len() != wanted.len() {
            return Err(ApiError::validation(
                "roles must be ids of this server's roles (not @everyone)",
            ));
        }
        let current: Vec<(i64, i32)> = sqlx::query_as(
            "SELECT r.id, r.position FROM member_roles mr JOIN roles r ON r.id = mr.role_id
              WHERE mr.server_id = $1 AND mr.user_id = $2",
        )
        .bind(server_id.0)
        .bind(user_id.0)
        .fetch_all(&state.db)
        .await?;
        let added: Vec<&(i64, i32, i64)> = found
            .iter()
            .filter(|(id, _, _)| !current.iter().any(|(c, _)| c == id))
            .collect();
        let removed: Vec<&(i64, i32)> = current
            .iter()
            .filter(|(id, _)| !wanted.contains(id))
            .collect();
        let positions = added
            .iter()
            .map(|(_, p, _)| *p)
            .chain(removed.iter().map(|(_, p)| *p));
        for p in positions {
            if !permissions::can_manage_role(access.rank, p) {
                return Err(ApiError::forbidden(
                    "role_hierarchy",
                    "you can only give or take roles below your highest role",
                ));
            }
        }
        if !access.is_owner() {
            for (_, _, perms) in &added {
                permissions::require(access.permissions, Permissions::from_db(*perms))?;
            }
        }
        changes.insert(
            "roles".into(),
            json!({
                "added": added.iter().map(|(id, _, _)| Id(*id)).collect::<Vec<_>>(),
                "removed": removed.iter().map(|(id, _)| Id(*id)).collect::<Vec<_>>(),
            }),
        );
        new_roles = Some(wanted);
    }

    if let Some(until) = &req.timeout_until {
        access.require(Permissions::MODERATE_MEMBERS)?;
        if !permissions::can_manage_member(access.rank, target) {
            return Err(outranked());
        }
        if let Some(t) = until {
            let now = Utc::now();
            let max = now + chrono::Duration::seconds(c::MAX_TIMEOUT_SECS + 60);
            if *t <= now || *t > max {
                return Err(ApiError::validation(
                    "timeout_until must be in the future and at most 28 days ahead",
                ));
            }
        }
        changes.insert("timeout_until".into(), json!(until));
    }

    let mut tx = state.db.begin().await?;
    if let Some(n) = &nickname {
        sqlx::query("UPDATE members SET nickname = $3 WHERE server_id = $1 AND user_id = $2")
            .bind(server_id.0)
            .bind(user_id.0)
            .bind(n)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(roles) = &new_roles {
        sqlx::query(
            "DELETE FROM member_roles WHERE server_id = $1 AND user_id = $2 AND NOT (role_id = ANY($3))",
        )
        .bind(server_id.0)
        .bind(user_id.0)
        .bind(roles)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO member_roles (server_id, user_id, role_id)
             SELECT $1, $2, r FROM unnest($3::BIGINT[]) r
             WHERE EXISTS (SELECT 1 FROM members WHERE server_id = $1 AND user_id = $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(server_id.0)
        .bind(user_id.0)
        .bind(roles)
        .execute(&mut *tx)
        .await
        .map_err(|e| c::db_conflict(e, "a role was deleted meanwhile"))?;
    }
    if let Some(until) = &req.timeout_until {
        sqlx::query("UPDATE members SET timeout_until = $3 WHERE server_id = $1 AND user_id = $2")
            .bind(server_id.0)
            .bind(user_id.0)
            .bind(until)
            .execute(&mut *tx)
            .await?;
    }
    // A member renaming themselves is not a management action; everything else is logged.
    let self_rename_only = is_self && new_roles.is_none() && req.timeout_until.is_none();
    if !changes.is_empty() && !self_rename_only {
        audit::record(
            &mut *tx,
            &state,
            Entry {
                server_id,
                actor: auth.user_id,
                action: Action::MemberUpdate,
                target: Some(user_id),
                changes: serde_json::Value::Object(changes),
                reason: &reason,
            },
        )
        .await?;
    }
    tx.commit().await?;
    let member = members::get(&state.db, server_id, user_id).await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::MemberUpdate {
            server_id,
            member: events::value(&member),
        },
    )
    .await;
    if new_roles.is_some() || req.timeout_until.is_some() {
        events::scope_changed(&state, &[user_id]).await;
    }
    if let Some(Some(until)) = req.timeout_until
        && !is_self
    {
        moderation::notify(
            &state,
            server_id,
            user_id,
            ModerationAction::Timeout,
            reason.0.clone(),
            Some(until),
        )
        .await;
    }
    Ok(axum::Json(member))
}

/// Kick a member (KICK_MEMBERS, and their highest role must be below yours). They may rejoin
/// with an invite. The reason (body or `X-Audit-Log-Reason`) goes to the audit log and to the
/// kicked member (`moderation_notice` on their own gateway channel).
#[utoipa::path(delete, path = "/servers/{server_id}/members/{user_id}", tag = "moderation", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"), ("user_id" = String, Path, description = "User id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body(content = Option<KickBody>), responses((status = 204, description = "Kicked")))]
pub async fn kick_member(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((server_id, user_id)): Path<(Id, Id)>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let req: KickBody = moderation::optional_json(&body)?;
    let reason = moderation::reason_from(req.reason.as_deref(), reason)?;
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    let target = target_rank(&state, server_id, user_id).await?;
    if user_id == auth.user_id {
        return Err(ApiError::bad_request(
            "use_leave",
            "to leave a server use DELETE /users/@me/servers/{server_id}",
        ));
    }
    access.require(Permissions::KICK_MEMBERS)?;
    if !permissions::can_manage_member(access.rank, target) {
        return Err(outranked());
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
        .bind(server_id.0)
        .bind(user_id.0)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::MemberKick,
            target: Some(user_id),
            changes: json!({}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    moderation::notify(
        &state,
        server_id,
        user_id,
        ModerationAction::Kick,
        reason.0.clone(),
        None,
    )
    .await;
    removed(&state, server_id, user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes that `user_id` is no longer a member of `server_id` (left, kicked or banned).
pub async fn removed(state: &AppState, server_id: Id, user_id: Id) {
    events::publish(
        state,
        vec![Audience::Server(server_id), Audience::User(user_id)],
        Event::MemberRemove { server_id, user_id },
    )
    .await;
    events::publish(
        state,
        vec![Audience::User(user_id)],
        Event::ServerDelete { server_id },
    )
    .await;
    events::scope_changed(state, &[user_id]).await;
}
