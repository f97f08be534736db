//! DMs and group DMs: tables `dm_channels` + `dm_recipients` (not rows of `channels`, which
//! always belong to a server). Always end-to-end encrypted.
//!
//! - A 1:1 DM is keyed by its ordered user pair (unique), so get-or-create is race-free:
//!   `INSERT … ON CONFLICT DO NOTHING`, then read the winner.
//! - A group DM has an owner who adds and removes members (at most
//!   [`super::MAX_GROUP_DM_MEMBERS`], the owner included); any member may leave.
//! - Blocks: if either user blocked the other, opening a DM, sending in it, or adding the other
//!   to a group DM answers 403 `blocked` (the blocker is told plainly; documented choice).
//! - Privacy: each user's `dm_policy` says who may start a DM with them — `server_members`
//!   (the default: friends and anyone sharing a server), `friends` or `nobody`. It is checked
//!   when a 1:1 DM or a group DM is created and when the owner adds someone to a group DM
//!   (403 `dm_shared_server_only`, `dm_friends_only` or `dm_closed`); an existing 1:1 DM is
//!   returned as it is (only a block closes it).

use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::MAX_GROUP_DM_MEMBERS;
use crate::communities::events::value;
use crate::communities::friends;
use crate::communities::members::UserSummary;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A DM or group DM as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DmChannel {
    /// Channel id (used with `/channels/{id}/messages`).
    pub id: Id,
    /// `dm` or `group_dm`.
    pub kind: String,
    /// Group DMs: who adds and removes members.
    pub owner_id: Option<Id>,
    /// Group DMs: optional name.
    pub name: Option<String>,
    /// Every member, the caller included.
    pub recipients: Vec<UserSummary>,
    /// Always `true`: messages are encrypted envelopes.
    pub encrypted: bool,
    /// The newest message id, if any.
    pub last_message_id: Option<Id>,
}

/// `POST /users/@me/channels` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDm {
    /// One user id: the 1:1 DM with them (created if needed). Two to nine: a new group DM
    /// owned by the caller.
    #[schema(value_type = Vec<String>)]
    pub recipients: Vec<Id>,
    /// Group DMs: optional name (1–100 characters).
    pub name: Option<String>,
}

/// The members of a DM place (empty when it is not one).
pub async fn recipient_ids(db: &PgPool, channel: Id) -> ApiResult<Vec<Id>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM dm_recipients WHERE channel_id = $1 ORDER BY user_id",
    )
    .bind(channel.0)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(Id).collect())
}

fn blocked() -> ApiError {
    ApiError::forbidden(
        "blocked",
        "you cannot message this user (one of you blocked the other)",
    )
}

/// In a 1:1 DM, 403 `blocked` when either member blocked the other.
pub async fn check_not_blocked(db: &PgPool, channel: Id, me: Id) -> ApiResult<()> {
    for other in recipient_ids(db, channel).await? {
        if other != me && friends::is_blocked(db, me, other).await? {
            return Err(blocked());
        }
    }
    Ok(())
}

/// Who may start a DM with a user (`users.dm_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DmPolicy {
    /// Friends and anyone who shares a server with them (the default).
    ServerMembers,
    /// Friends only.
    Friends,
    /// Nobody may start a new DM or add them to a group DM.
    Nobody,
}

impl DmPolicy {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DmPolicy::ServerMembers => "server_members",
            DmPolicy::Friends => "friends",
            DmPolicy::Nobody => "nobody",
        }
    }

    /// Parses the database spelling (unknown values read as the strictest, `nobody`).
    pub fn from_db(s: &str) -> Self {
        match s {
            "server_members" => DmPolicy::ServerMembers,
            "friends" => DmPolicy::Friends,
            _ => DmPolicy::Nobody,
        }
    }
}

/// The user's DM policy; `None` when the user does not exist.
async fn policy_of(db: &PgPool, user: Id) -> ApiResult<Option<DmPolicy>> {
    let found: Option<String> = sqlx::query_scalar("SELECT dm_policy FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_optional(db)
        .await?;
    Ok(found.as_deref().map(DmPolicy::from_db))
}

async fn user_exists(db: &PgPool, user: Id) -> ApiResult<bool> {
    Ok(policy_of(db, user).await?.is_some())
}

/// Checks that `me` may start a DM with `other` (or add them to a group DM): 404 for an
/// unknown user, 403 `blocked` for a block either way, else `other`'s [`DmPolicy`].
pub async fn check_may_dm(db: &PgPool, me: Id, other: Id) -> ApiResult<()> {
    let policy = policy_of(db, other)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown user"))?;
    if friends::is_blocked(db, me, other).await? {
        return Err(blocked());
    }
    if policy == DmPolicy::Nobody {
        return Err(ApiError::forbidden(
            "dm_closed",
            "this user does not accept direct messages",
        ));
    }
    let (friend, shared): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM relationships
                         WHERE user_id = $1 AND other_id = $2 AND kind = 'friend'),
                EXISTS (SELECT 1 FROM members a JOIN members b ON b.server_id = a.server_id
                         WHERE a.user_id = $1 AND b.user_id = $2)",
    )
    .bind(me.0)
    .bind(other.0)
    .fetch_one(db)
    .await?;
    match policy {
        _ if friend => Ok(()),
        DmPolicy::Friends => Err(ApiError::forbidden(
            "dm_friends_only",
            "this user accepts direct messages from friends only",
        )),
        DmPolicy::ServerMembers if shared => Ok(()),
        _ => Err(ApiError::forbidden(
            "dm_shared_server_only",
            "you can message this user once you share a server or are friends",
        )),
    }
}

/// Sets who may start a DM with `me`.
pub async fn set_policy(db: &PgPool, me: Id, policy: DmPolicy) -> ApiResult<()> {
    sqlx::query("UPDATE users SET dm_policy = $2 WHERE id = $1")
        .bind(me.0)
        .bind(policy.as_str())
        .execute(db)
        .await?;
    Ok(())
}

type DmRow = (i64, String, Option<i64>, Option<String>, Option<i64>);

/// Loads a DM channel (no membership check).
pub async fn load(db: &PgPool, id: Id) -> ApiResult<DmChannel> {
    let row: Option<DmRow> = sqlx::query_as(
        "SELECT d.id, d.kind, d.owner_id, d.name, h.last_message_id
           FROM dm_channels d LEFT JOIN channel_heads h ON h.channel_id = d.id WHERE d.id = $1",
    )
    .bind(id.0)
    .fetch_optional(db)
    .await?;
    let (id, kind, owner, name, last) =
        row.ok_or_else(|| ApiError::not_found("unknown channel"))?;
    let users: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name FROM dm_recipients r JOIN users u ON u.id = r.user_id
          WHERE r.channel_id = $1 ORDER BY r.added_at, u.id",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(DmChannel {
        id: Id(id),
        kind,
        owner_id: owner.map(Id),
        name,
        recipients: users
            .into_iter()
            .map(|(id, username, display_name)| UserSummary {
                id: Id(id),
                username,
                display_name,
            })
            .collect(),
        encrypted: true,
        last_message_id: last.map(Id),
    })
}

/// My DMs and group DMs, most recently active first (at most 200); two queries.
pub async fn list(db: &PgPool, me: Id) -> ApiResult<Vec<DmChannel>> {
    let rows: Vec<DmRow> = sqlx::query_as(
        "SELECT d.id, d.kind, d.owner_id, d.name, h.last_message_id
           FROM dm_recipients r JOIN dm_channels d ON d.id = r.channel_id
           LEFT JOIN channel_heads h ON h.channel_id = d.id
          WHERE r.user_id = $1 ORDER BY COALESCE(h.last_message_id, d.id) DESC LIMIT 200",
    )
    .bind(me.0)
    .fetch_all(db)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let users: Vec<(i64, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT r.channel_id, u.id, u.username, u.display_name
           FROM dm_recipients r JOIN users u ON u.id = r.user_id
          WHERE r.channel_id = ANY($1) ORDER BY r.channel_id, r.added_at, u.id",
    )
    .bind(&ids)
    .fetch_all(db)
    .await?;
    let mut by_channel: std::collections::HashMap<i64, Vec<UserSummary>> = Default::default();
    for (ch, id, username, display_name) in users {
        by_channel.entry(ch).or_default().push(UserSummary {
            id: Id(id),
            username,
            display_name,
        });
    }
    Ok(rows
        .into_iter()
        .map(|(id, kind, owner, name, last)| DmChannel {
            id: Id(id),
            kind,
            owner_id: owner.map(Id),
            name,
            recipients: by_channel.remove(&id).unwrap_or_default(),
            encrypted: true,
            last_message_id: last.map(Id),
        })
        .collect())
}

async fn announce(state: &AppState, ch: &DmChannel, event: Event, extra: &[Id]) {
    let mut users: Vec<Id> = ch.recipients.iter().map(|u| u.id).collect();
    users.extend_from_slice(extra);
    state
        .publish(BusEvent::to(Audience::Users(users), event))
        .await;
}

/// Tells the gateway that `users`' visible channels changed (a DM appeared or went away).
async fn scope_changed(state: &AppState, users: &[Id]) {
    for u in users {
        state
            .publish(BusEvent::to(
                Audience::User(*u),
                Event::ScopeChanged { user_id: *u },
            ))
            .await;
    }
}

/// Gets or creates a DM (one recipient) or creates a group DM (2–9 recipients).
/// Returns the channel and whether it was created.
pub async fn open(state: &AppState, me: Id, req: NewDm) -> ApiResult<(DmChannel, bool)> {
    let mut others: Vec<Id> = req.recipients.into_iter().filter(|u| *u != me).collect();
    others.sort_unstable_by_key(|u| u.0);
    others.dedup();
    if others.is_empty() {
        return Err(ApiError::validation(
            "recipients must name at least one other user",
        ));
    }
    if others.len() + 1 > MAX_GROUP_DM_MEMBERS {
        return Err(ApiError::validation(format!(
            "a group DM has at most {MAX_GROUP_DM_MEMBERS} members"
        )));
    }
    let name = match &req.name {
        Some(n) if others.len() > 1 => Some(crate::communities::name("name", n, 100)?),
        Some(_) => return Err(ApiError::validation("only group DMs have a name")),
        None => None,
    };
    if let [other] = others[..] {
        let (low, high) = if me.0 < other.0 {
            (me, other)
        } else {
            (other, me)
        };
        if !user_exists(&state.db, other).await? {
            return Err(ApiError::not_found("unknown user"));
        }
        if friends::is_blocked(&state.db, me, other).await? {
            return Err(blocked());
        }
        // An existing DM is returned as it is; only creating one asks the other's policy.
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM dm_channels WHERE user_low = $1 AND user_high = $2")
                .bind(low.0)
                .bind(high.0)
                .fetch_optional(&state.db)
                .await?;
        if let Some(id) = existing {
            return Ok((load(&state.db, Id(id)).await?, false));
        }
        check_may_dm(&state.db, me, other).await?;
        let mut tx = state.db.begin().await?;
        let new_id = state.ids.next();
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO dm_channels (id, kind, user_low, user_high) VALUES ($1, 'dm', $2, $3)
             ON CONFLICT (user_low, user_high) DO NOTHING RETURNING id",
        )
        .bind(new_id.0)
        .bind(low.0)
        .bind(high.0)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match created {
            Some(id) => {
                sqlx::query(
                    "INSERT INTO dm_recipients (channel_id, user_id) VALUES ($1, $2), ($1, $3)",
                )
                .bind(id)
                .bind(me.0)
                .bind(other.0)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                sqlx::query_scalar(
                    "SELECT id FROM dm_channels WHERE user_low = $1 AND user_high = $2",
                )
                .bind(low.0)
                .bind(high.0)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        let ch = load(&state.db, Id(id)).await?;
        if created.is_some() {
            scope_changed(state, &[me, other]).await;
            announce(
                state,
                &ch,
                Event::ChannelCreate {
                    channel: value(&ch),
                },
                &[],
            )
            .await;
        }
        return Ok((ch, created.is_some()));
    }
    for o in &others {
        check_may_dm(&state.db, me, *o).await?;
    }
    let id = state.ids.next();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO dm_channels (id, kind, owner_id, name) VALUES ($1, 'group_dm', $2, $3)",
    )
    .bind(id.0)
    .bind(me.0)
    .bind(&name)
    .execute(&mut *tx)
    .await?;
    let mut all: Vec<i64> = others.iter().map(|o| o.0).collect();
    all.insert(0, me.0);
    sqlx::query(
        "INSERT INTO dm_recipients (channel_id, user_id) SELECT $1, u FROM unnest($2::BIGINT[]) u",
    )
    .bind(id.0)
    .bind(&all)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let ch = load(&state.db, id).await?;
    let everyone: Vec<Id> = all.iter().map(|u| Id(*u)).collect();
    scope_changed(state, &everyone).await;
    announce(
        state,
        &ch,
        Event::ChannelCreate {
            channel: value(&ch),
        },
        &[],
    )
    .await;
    Ok((ch, true))
}

/// The group DM `id` as seen by member `me` (404 if not a member or not a group DM).
async fn group(db: &PgPool, me: Id, id: Id) -> ApiResult<DmChannel> {
    let ch = load(db, id).await?;
    if ch.kind != "group_dm" || !ch.recipients.iter().any(|u| u.id == me) {
        return Err(ApiError::not_found("unknown channel"));
    }
    Ok(ch)
}

/// The owner adds `user` to group DM `id` (at most 10 members; only someone [`check_may_dm`]
/// lets the owner message).
pub async fn add(state: &AppState, me: Id, id: Id, user: Id) -> ApiResult<DmChannel> {
    let ch = group(&state.db, me, id).await?;
    if ch.owner_id != Some(me) {
        return Err(ApiError::forbidden(
            "not_owner",
            "only the group DM's owner adds members",
        ));
    }
    if ch.recipients.iter().any(|u| u.id == user) {
        return Ok(ch);
    }
    check_may_dm(&state.db, me, user).await?;
    let mut tx = state.db.begin().await?;
    // Lock the channel so two concurrent adds cannot exceed the cap.
    sqlx::query("SELECT id FROM dm_channels WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dm_recipients WHERE channel_id = $1")
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
    if n as usize >= MAX_GROUP_DM_MEMBERS {
        return Err(ApiError::validation(format!(
            "a group DM has at most {MAX_GROUP_DM_MEMBERS} members"
        )));
    }
    sqlx::query(
        "INSERT INTO dm_recipients (channel_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(id.0)
    .bind(user.0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    scope_changed(state, &[user]).await;
    let ch = load(&state.db, id).await?;
    announce(
        state,
        &ch,
        Event::ChannelUpdate {
            channel: value(&ch),
        },
        &[],
    )
    .await;
    Ok(ch)
}

/// The owner removes `user` from group DM `id`, or a member leaves (`user` = `me`). When the
/// owner leaves, the longest-standing remaining member becomes owner; an empty group is deleted.
pub async fn remove(state: &AppState, me: Id, id: Id, user: Id) -> ApiResult<()> {
    let ch = group(&state.db, me, id).await?;
    if user != me && ch.owner_id != Some(me) {
        return Err(ApiError::forbidden(
            "not_owner",
            "only the group DM's owner removes members",
        ));
    }
    if !ch.recipients.iter().any(|u| u.id == user) {
        return Err(ApiError::not_found("not a member of this group DM"));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM dm_recipients WHERE channel_id = $1 AND user_id = $2")
        .bind(id.0)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE dm_channels SET owner_id = (SELECT user_id FROM dm_recipients WHERE channel_id = $1
                                              ORDER BY added_at, user_id LIMIT 1)
          WHERE id = $1 AND (owner_id = $2 OR owner_id IS NULL)",
    )
    .bind(id.0)
    .bind(user.0)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM dm_channels d WHERE d.id = $1
            AND NOT EXISTS (SELECT 1 FROM dm_recipients WHERE channel_id = $1)",
    )
    .bind(id.0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    scope_changed(state, &[user]).await;
    state
        .publish(BusEvent::to(
            Audience::User(user),
            Event::ChannelDelete {
                server_id: None,
                channel_id: id,
            },
        ))
        .await;
    if let Ok(ch) = load(&state.db, id).await {
        announce(
            state,
            &ch,
            Event::ChannelUpdate {
                channel: value(&ch),
            },
            &[],
        )
        .await;
    }
    Ok(())
}
