//! `/servers/{id}/channels` and `/channels/{id}`: create, list, get, update, delete, and
//! per-channel permission overwrites for a role or a member.

use axum::extract::State;
use axum::http::StatusCode;
use copains_wire::Id;
use copains_wire::events::{Audience, Event};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::communities::audit::{self, Action, AuditReason, Entry};
use crate::communities::channels::{self, Channel, ChannelKind, OverwriteKind};
use crate::communities::permissions::{self, ChannelAccess, Permissions};
use crate::communities::{self as c, events, servers};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Json, Path};
use crate::state::AppState;

/// The channel routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel, reorder_channels))
        .routes(routes!(get_channel, update_channel, delete_channel))
        .routes(routes!(put_overwrite, delete_overwrite))
}

/// `POST /servers/{id}/channels` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewChannel {
    /// Name (1–100 characters).
    pub name: String,
    /// `text`, `voice` or `category`.
    pub kind: ChannelKind,
    /// The category to put it in (not for categories).
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Id>,
    /// End-to-end encrypted; cannot be turned off later (not for categories).
    pub encrypted: Option<bool>,
    /// Topic (≤ 1024 characters).
    pub topic: Option<String>,
    /// Slow mode in seconds (0–21600).
    #[schema(minimum = 0, maximum = 21600)]
    pub slowmode_secs: Option<i32>,
    /// Sort position (0–10000; default: after the others).
    #[schema(minimum = 0, maximum = 10000)]
    pub position: Option<i32>,
}

fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /channels/{id}` body; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateChannel {
    /// New name.
    pub name: Option<String>,
    /// New topic ("" clears).
    pub topic: Option<String>,
    /// New slow mode (0–21600 s).
    #[schema(minimum = 0, maximum = 21600)]
    pub slowmode_secs: Option<i32>,
    /// New position (0–10000).
    #[schema(minimum = 0, maximum = 10000)]
    pub position: Option<i32>,
    /// New category; `null` takes it out of its category.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<Id>>,
    /// `true` turns encryption on; `false` is refused once it is on.
    pub encrypted: Option<bool>,
}

/// One entry of `PATCH /servers/{id}/channels`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChannelPosition {
    /// The channel.
    pub id: Id,
    /// Its new position (0–10000).
    #[schema(minimum = 0, maximum = 10000)]
    pub position: i32,
    /// Its new category (`null`: none; absent: unchanged).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<Id>>,
}

/// `PUT /channels/{id}/overwrites/{target_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutOverwrite {
    /// Whether `target_id` is a role (the server id for @everyone) or a member.
    pub kind: OverwriteKind,
    /// Bits granted in this channel (channel-scoped permissions only).
    #[schema(minimum = 0, maximum = 8388607)]
    pub allow: u64,
    /// Bits removed in this channel (channel-scoped permissions only).
    #[schema(minimum = 0, maximum = 8388607)]
    pub deny: u64,
}

fn check_slowmode(s: Option<i32>) -> ApiResult<()> {
    if let Some(s) = s
        && !(0..=21_600).contains(&s)
    {
        return Err(ApiError::validation(
            "slowmode_secs must be between 0 and 21600",
        ));
    }
    Ok(())
}

fn check_position(p: Option<i32>) -> ApiResult<()> {
    if let Some(p) = p
        && !(0..=10_000).contains(&p)
    {
        return Err(ApiError::validation("position must be between 0 and 10000"));
    }
    Ok(())
}

/// Checks that `parent` is a category of `server`.
async fn check_parent(state: &AppState, server: Id, parent: Id) -> ApiResult<()> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT kind FROM channels WHERE id = $1 AND server_id = $2")
            .bind(parent.0)
            .bind(server.0)
            .fetch_optional(&state.db)
            .await?;
    match row {
        Some((k,)) if k == "category" => Ok(()),
        _ => Err(ApiError::validation(
            "parent_id must be a category of this server",
        )),
    }
}

async fn channel_access(state: &AppState, auth: &Auth, id: Id) -> ApiResult<ChannelAccess> {
    permissions::channel_access(&state.db, auth.user_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown channel"))
}

/// The channels of a server I can see, in display order.
#[utoipa::path(get, path = "/servers/{server_id}/channels", tag = "channels", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id")),
    responses((status = 200, body = Vec<Channel>)))]
pub async fn list_channels(
    State(state): State<AppState>,
    auth: Auth,
    Path(server_id): Path<Id>,
) -> ApiResult<axum::Json<Vec<Channel>>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    Ok(axum::Json(channels::visible(&state.db, &access).await?))
}

/// Create a channel or category (MANAGE_CHANNELS). A channel created in a category starts
/// with a copy of the category's overwrites. At most 500 per server.
#[utoipa::path(post, path = "/servers/{server_id}/channels", tag = "channels", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = NewChannel, responses((status = 201, body = Channel), (status = 409, description = "Limit reached or conflicting state", body = crate::error::ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<NewChannel>,
) -> ApiResult<(StatusCode, axum::Json<Channel>)> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MANAGE_CHANNELS)?;
    let name = c::name("name", &req.name, 100)?;
    let topic = match &req.topic {
        Some(t) => c::text("topic", t, 1024)?,
        None => None,
    };
    check_slowmode(req.slowmode_secs)?;
    check_position(req.position)?;
    let encrypted = req.encrypted.unwrap_or(false);
    if req.kind == ChannelKind::Category && (req.parent_id.is_some() || encrypted) {
        return Err(ApiError::validation(
            "a category has no parent and is not encrypted itself",
        ));
    }
    if let Some(p) = req.parent_id {
        check_parent(&state, server_id, p).await?;
    }
    let id = state.ids.next();
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR NO KEY UPDATE")
        .bind(server_id.0)
        .execute(&mut *tx)
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM channels WHERE server_id = $1")
        .bind(server_id.0)
        .fetch_one(&mut *tx)
        .await?;
    if n >= c::MAX_CHANNELS_PER_SERVER {
        return Err(ApiError::conflict(
            "too_many_channels",
            format!(
                "a server may have at most {} channels",
                c::MAX_CHANNELS_PER_SERVER
            ),
        ));
    }
    let position = req.position.unwrap_or(n.min(10_000) as i32);
    sqlx::query(
        "INSERT INTO channels (id, server_id, kind, name, parent_id, position, topic, slowmode_secs, encrypted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.0)
    .bind(server_id.0)
    .bind(req.kind.as_str())
    .bind(&name)
    .bind(req.parent_id.map(|p| p.0))
    .bind(position)
    .bind(&topic)
    .bind(req.slowmode_secs.unwrap_or(0))
    .bind(encrypted)
    .execute(&mut *tx)
    .await
    .map_err(|e| c::db_conflict(e, "the category was deleted meanwhile"))?;
    if let Some(p) = req.parent_id {
        sqlx::query(
            "INSERT INTO overwrites (channel_id, target_id, target_kind, allow, deny)
             SELECT $1, target_id, target_kind, allow, deny FROM overwrites WHERE channel_id = $2",
        )
        .bind(id.0)
        .bind(p.0)
        .execute(&mut *tx)
        .await?;
    }
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::ChannelCreate,
            target: Some(id),
            changes: json!({"name": name, "kind": req.kind, "encrypted": encrypted}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let channel = channels::get(&state.db, id).await?;
    events::publish(
        &state,
        vec![Audience::Channel {
            server_id: Some(server_id),
            channel_id: id,
        }],
        Event::ChannelCreate {
            channel: events::value(&channel),
        },
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(channel)))
}

/// Move several channels at once (MANAGE_CHANNELS): new positions and, optionally,
/// categories. Returns the channels I can see, in display order.
#[utoipa::path(patch, path = "/servers/{server_id}/channels", tag = "channels", security(("bearer" = [])),
    params(("server_id" = String, Path, description = "Server id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = Vec<ChannelPosition>, responses((status = 200, body = Vec<Channel>)))]
pub async fn reorder_channels(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(server_id): Path<Id>,
    Json(req): Json<Vec<ChannelPosition>>,
) -> ApiResult<axum::Json<Vec<Channel>>> {
    let access = permissions::require_member(&state.db, auth.user_id, server_id).await?;
    access.require(Permissions::MANAGE_CHANNELS)?;
    if req.is_empty() || req.len() > c::MAX_CHANNELS_PER_SERVER as usize {
        return Err(ApiError::validation("give 1 to 500 channels to move"));
    }
    let kinds: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, kind FROM channels WHERE server_id = $1")
            .bind(server_id.0)
            .fetch_all(&state.db)
            .await?;
    let kind_of = |id: Id| {
        kinds
            .iter()
            .find(|(c, _)| *c == id.0)
            .map(|(_, k)| k.as_str())
    };
    let mut seen = std::collections::HashSet::new();
    for m in &req {
        check_position(Some(m.position))?;
        let Some(kind) = kind_of(m.id) else {
            return Err(ApiError::validation(
                "every id must be a channel of this server",
            ));
        };
        if !seen.insert(m.id) {
            return Err(ApiError::validation("a channel appears twice"));
        }
        if let Some(Some(p)) = m.parent_id
            && (kind == "category" || kind_of(p) != Some("category"))
        {
            return Err(ApiError::validation(
                "parent_id must be a category of this server, and categories have no parent",
            ));
        }
    }
    let mut tx = state.db.begin().await?;
    for m in &req {
        sqlx::query(
            "UPDATE channels SET position = $3, parent_id = CASE WHEN $4 THEN $5 ELSE parent_id END
              WHERE id = $1 AND server_id = $2",
        )
        .bind(m.id.0)
        .bind(server_id.0)
        .bind(m.position)
        .bind(m.parent_id.is_some())
        .bind(m.parent_id.flatten().map(|p| p.0))
        .execute(&mut *tx)
        .await
        .map_err(|e| c::db_conflict(e, "a category was deleted meanwhile"))?;
    }
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::ChannelReorder,
            target: None,
            changes: json!(
                req.iter()
                    .map(|m| json!({"id": m.id, "position": m.position, "parent_id": m.parent_id}))
                    .collect::<Vec<_>>()
            ),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    for m in &req {
        if let Ok(ch) = channels::get(&state.db, m.id).await {
            publish_update(&state, &ch).await;
        }
    }
    Ok(axum::Json(channels::visible(&state.db, &access).await?))
}

/// A channel I can see (VIEW_CHANNEL; 404 otherwise).
#[utoipa::path(get, path = "/channels/{channel_id}", tag = "channels", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel id")),
    responses((status = 200, body = Channel)))]
pub async fn get_channel(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
) -> ApiResult<axum::Json<Channel>> {
    channel_access(&state, &auth, channel_id).await?;
    Ok(axum::Json(channels::get(&state.db, channel_id).await?))
}

/// Change a channel (MANAGE_CHANNELS in it).
#[utoipa::path(patch, path = "/channels/{channel_id}", tag = "channels", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = UpdateChannel, responses((status = 200, body = Channel)))]
pub async fn update_channel(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(channel_id): Path<Id>,
    Json(req): Json<UpdateChannel>,
) -> ApiResult<axum::Json<Channel>> {
    let access = channel_access(&state, &auth, channel_id).await?;
    access.require(Permissions::MANAGE_CHANNELS)?;
    let old = channels::get(&state.db, channel_id).await?;
    let server_id = old.server_id;
    let name = req
        .name
        .as_deref()
        .map(|n| c::name("name", n, 100))
        .transpose()?;
    let topic = req
        .topic
        .as_deref()
        .map(|t| c::text("topic", t, 1024))
        .transpose()?;
    check_slowmode(req.slowmode_secs)?;
    check_position(req.position)?;
    if old.encrypted && req.encrypted == Some(false) {
        return Err(ApiError::validation(
            "an encrypted channel cannot be made unencrypted",
        ));
    }
    if old.kind == ChannelKind::Category && req.encrypted == Some(true) {
        return Err(ApiError::validation("a category is not encrypted itself"));
    }
    if let Some(Some(p)) = req.parent_id {
        if old.kind == ChannelKind::Category || p == channel_id {
            return Err(ApiError::validation("a category has no parent"));
        }
        check_parent(&state, server_id, p).await?;
    }
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE channels SET name = COALESCE($2, name),
            topic = CASE WHEN $3 THEN $4 ELSE topic END,
            slowmode_secs = COALESCE($5, slowmode_secs), position = COALESCE($6, position),
            parent_id = CASE WHEN $7 THEN $8 ELSE parent_id END,
            encrypted = encrypted OR COALESCE($9, FALSE)
          WHERE id = $1",
    )
    .bind(channel_id.0)
    .bind(&name)
    .bind(topic.is_some())
    .bind(topic.clone().flatten())
    .bind(req.slowmode_secs)
    .bind(req.position)
    .bind(req.parent_id.is_some())
    .bind(req.parent_id.flatten().map(|p| p.0))
    .bind(req.encrypted)
    .execute(&mut *tx)
    .await
    .map_err(|e| c::db_conflict(e, "the category was deleted meanwhile"))?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::ChannelUpdate,
            target: Some(channel_id),
            changes: json!({"name": name, "topic": topic, "slowmode_secs": req.slowmode_secs,
                "position": req.position, "parent_id": req.parent_id, "encrypted": req.encrypted}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let channel = channels::get(&state.db, channel_id).await?;
    publish_update(&state, &channel).await;
    Ok(axum::Json(channel))
}

async fn publish_update(state: &AppState, channel: &Channel) {
    events::publish(
        state,
        vec![Audience::Channel {
            server_id: Some(channel.server_id),
            channel_id: channel.id,
        }],
        Event::ChannelUpdate {
            channel: events::value(channel),
        },
    )
    .await;
}

/// Delete a channel (MANAGE_CHANNELS in it). Channels of a deleted category stay, uncategorised.
#[utoipa::path(delete, path = "/channels/{channel_id}", tag = "channels", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_channel(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path(channel_id): Path<Id>,
) -> ApiResult<StatusCode> {
    let access = channel_access(&state, &auth, channel_id).await?;
    access.require(Permissions::MANAGE_CHANNELS)?;
    let server_id = access.server.server_id;
    let old = channels::get(&state.db, channel_id).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM channels WHERE id = $1")
        .bind(channel_id.0)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::ChannelDelete,
            target: Some(channel_id),
            changes: json!({"name": old.name, "kind": old.kind}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    events::publish(
        &state,
        vec![Audience::Server(server_id)],
        Event::ChannelDelete {
            server_id: Some(server_id),
            channel_id,
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the overwrite of a role or member in a channel (MANAGE_CHANNELS in it). You can only
/// allow or deny permissions you hold in the channel; only channel-scoped bits are accepted.
/// A private channel denies VIEW_CHANNEL to @everyone (target = server id) and allows it to
/// the members or roles who may enter.
#[utoipa::path(put, path = "/channels/{channel_id}/overwrites/{target_id}", tag = "channels", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel id"), ("target_id" = String, Path, description = "Role id or user id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    request_body = PutOverwrite, responses((status = 200, body = Channel), (status = 409, description = "Limit reached or conflicting state", body = crate::error::ErrorBody)))]
pub async fn put_overwrite(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((channel_id, target_id)): Path<(Id, Id)>,
    Json(req): Json<PutOverwrite>,
) -> ApiResult<axum::Json<Channel>> {
    let access = channel_access(&state, &auth, channel_id).await?;
    access.require(Permissions::MANAGE_CHANNELS)?;
    let server_id = access.server.server_id;
    let allow = Permissions::from_request("allow", req.allow)?;
    let deny = Permissions::from_request("deny", req.deny)?;
    let bits = allow.union(deny);
    if !Permissions::CHANNEL_SCOPED.contains(bits) {
        return Err(ApiError::validation(format!(
            "overwrites may only carry channel permissions, not {}",
            bits.minus(Permissions::CHANNEL_SCOPED).names().join(", ")
        )));
    }
    if allow.intersect(deny) != Permissions::NONE {
        return Err(ApiError::validation(
            "a bit cannot be both allowed and denied",
        ));
    }
    if !access.server.is_owner() && !access.permissions.contains(bits) {
        return Err(ApiError::forbidden(
            "missing_permission",
            format!(
                "you cannot allow or deny permissions you do not have: {}",
                bits.minus(access.permissions).names().join(", ")
            ),
        ));
    }
    let exists: Option<(i32,)> = match req.kind {
        OverwriteKind::Role => {
            sqlx::query_as("SELECT 1 FROM roles WHERE id = $1 AND server_id = $2")
                .bind(target_id.0)
                .bind(server_id.0)
                .fetch_optional(&state.db)
                .await?
        }
        OverwriteKind::Member => {
            sqlx::query_as("SELECT 1 FROM members WHERE user_id = $1 AND server_id = $2")
                .bind(target_id.0)
                .bind(server_id.0)
                .fetch_optional(&state.db)
                .await?
        }
    };
    if exists.is_none() {
        return Err(ApiError::not_found(match req.kind {
            OverwriteKind::Role => "unknown role",
            OverwriteKind::Member => "unknown member",
        }));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT 1 FROM channels WHERE id = $1 FOR NO KEY UPDATE")
        .bind(channel_id.0)
        .execute(&mut *tx)
        .await?;
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM overwrites WHERE channel_id = $1 AND target_id <> $2")
            .bind(channel_id.0)
            .bind(target_id.0)
            .fetch_one(&mut *tx)
            .await?;
    if n >= c::MAX_OVERWRITES_PER_CHANNEL {
        return Err(ApiError::conflict(
            "too_many_overwrites",
            format!(
                "a channel may have at most {} overwrites",
                c::MAX_OVERWRITES_PER_CHANNEL
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO overwrites (channel_id, target_id, target_kind, allow, deny) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (channel_id, target_id) DO UPDATE
            SET target_kind = EXCLUDED.target_kind, allow = EXCLUDED.allow, deny = EXCLUDED.deny",
    )
    .bind(channel_id.0)
    .bind(target_id.0)
    .bind(req.kind.as_str())
    .bind(allow.to_db())
    .bind(deny.to_db())
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::OverwriteUpdate,
            target: Some(target_id),
            changes: json!({"channel_id": channel_id, "kind": req.kind, "allow": allow, "deny": deny}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let channel = channels::get(&state.db, channel_id).await?;
    publish_update(&state, &channel).await;
    overwrite_scope_changed(&state, server_id, target_id, req.kind).await?;
    Ok(axum::Json(channel))
}

async fn overwrite_scope_changed(
    state: &AppState,
    server_id: Id,
    target_id: Id,
    kind: OverwriteKind,
) -> ApiResult<()> {
    let users = match kind {
        OverwriteKind::Member => vec![target_id],
        OverwriteKind::Role => servers::member_ids(&state.db, server_id, 100_000).await?,
    };
    events::scope_changed(state, &users).await;
    Ok(())
}

/// Remove the overwrite of a role or member in a channel (MANAGE_CHANNELS in it).
#[utoipa::path(delete, path = "/channels/{channel_id}/overwrites/{target_id}", tag = "channels", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel id"), ("target_id" = String, Path, description = "Role id or user id"),
           ("X-Audit-Log-Reason" = Option<String>, Header, description = "Reason recorded in the audit log")),
    responses((status = 204, description = "Removed")))]
pub async fn delete_overwrite(
    State(state): State<AppState>,
    auth: Auth,
    reason: AuditReason,
    Path((channel_id, target_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let access = channel_access(&state, &auth, channel_id).await?;
    access.require(Permissions::MANAGE_CHANNELS)?;
    let server_id = access.server.server_id;
    let mut tx = state.db.begin().await?;
    let row: Option<(String, i64, i64)> = sqlx::query_as(
        "DELETE FROM overwrites WHERE channel_id = $1 AND target_id = $2 RETURNING target_kind, allow, deny",
    )
    .bind(channel_id.0)
    .bind(target_id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((kind, allow, deny)) = row else {
        return Err(ApiError::not_found("no overwrite for this target"));
    };
    // Removing an overwrite must not unlock more than the actor holds.
    let lifted = Permissions::from_db(allow).union(Permissions::from_db(deny));
    if !access.server.is_owner() && !access.permissions.contains(lifted) {
        return Err(ApiError::forbidden(
            "missing_permission",
            "this overwrite touches permissions you do not have",
        ));
    }
    audit::record(
        &mut *tx,
        &state,
        Entry {
            server_id,
            actor: auth.user_id,
            action: Action::OverwriteDelete,
            target: Some(target_id),
            changes: json!({"channel_id": channel_id, "kind": kind}),
            reason: &reason,
        },
    )
    .await?;
    tx.commit().await?;
    let channel = channels::get(&state.db, channel_id).await?;
    publish_update(&state, &channel).await;
    let kind = if kind == "member" {
        OverwriteKind::Member
    } else {
        OverwriteKind::Role
    };
    overwrite_scope_changed(&state, server_id, target_id, kind).await?;
    Ok(StatusCode::NO_CONTENT)
}
