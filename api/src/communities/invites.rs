//! Invites: codes, the public preview, and joining (race-free on the last use).

use chrono::{DateTime, Utc};
use copains_wire::Id;
use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::members::UserSummary;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Length of an invite code (base62, ≈ 71 bits from the OS CSPRNG).
pub const CODE_LEN: usize = 12;

/// A fresh random invite code.
pub fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether `code` could be an invite code (cheap filter before touching the database).
pub fn plausible_code(code: &str) -> bool {
    (6..=32).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An invite as its server's managers see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invite {
    /// The code, used in `POST /invites/{code}`.
    pub code: String,
    /// The server it opens.
    pub server_id: Id,
    /// Who made it (`null` if their account is gone).
    pub inviter_id: Option<Id>,
    /// Times used.
    pub uses: i32,
    /// Use limit (`null`: unlimited).
    pub max_uses: Option<i32>,
    /// Expiry (`null`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

type InviteRow = (
    String,
    i64,
    Option<i64>,
    i32,
    Option<i32>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

const COLUMNS: &str = "code, server_id, inviter_id, uses, max_uses, expires_at, created_at";

fn from_row(r: InviteRow) -> Invite {
    Invite {
        code: r.0,
        server_id: Id(r.1),
        inviter_id: r.2.map(Id),
        uses: r.3,
        max_uses: r.4,
        expires_at: r.5,
        created_at: r.6,
    }
}

/// Creates an invite to `server` by `inviter`.
pub async fn create(
    state: &AppState,
    server: Id,
    inviter: Id,
    max_uses: Option<i32>,
    max_age_secs: Option<i64>,
) -> ApiResult<Invite> {
    let (live,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM invites WHERE server_id = $1
            AND (expires_at IS NULL OR expires_at > now()) AND (max_uses IS NULL OR uses < max_uses)",
    )
    .bind(server.0)
    .fetch_one(&state.db)
    .await?;
    if live >= super::MAX_INVITES_PER_SERVER {
        return Err(ApiError::conflict(
            "too_many_invites",
            format!(
                "a server may have at most {} live invites; revoke some",
                super::MAX_INVITES_PER_SERVER
            ),
        ));
    }
    let row: InviteRow = sqlx::query_as(&format!(
        "INSERT INTO invites (code, server_id, inviter_id, max_uses, expires_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $5::BIGINT IS NULL THEN NULL ELSE now() + make_interval(secs => $5) END)
         RETURNING {COLUMNS}"
    ))
    .bind(new_code())
    .bind(server.0)
    .bind(inviter.0)
    .bind(max_uses)
    .bind(max_age_secs)
    .fetch_one(&state.db)
    .await?;
    Ok(from_row(row))
}

/// The invites of a server, newest first (at most [`super::MAX_INVITES_PER_SERVER`]).
pub async fn list(db: &PgPool, server: Id) -> ApiResult<Vec<Invite>> {
    let rows: Vec<InviteRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invites WHERE server_id = $1 ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(server.0)
    .bind(super::MAX_INVITES_PER_SERVER)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A usable invite (not expired, not used up) by code.
pub async fn get_usable(db: &PgPool, code: &str) -> ApiResult<Invite> {
    let not_found = || ApiError::not_found("unknown, expired or used-up invite");
    if !plausible_code(code) {
        return Err(not_found());
    }
    let row: Option<InviteRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invites WHERE code = $1
            AND (expires_at IS NULL OR expires_at > now()) AND (max_uses IS NULL OR uses < max_uses)"
    ))
    .bind(code)
    .fetch_optional(db)
    .await?;
    row.map(from_row).ok_or_else(not_found)
}

/// What anyone holding a code may see before joining.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvitePreview {
    /// The code.
    pub code: String,
    /// The server's id.
    pub server_id: Id,
    /// The server's name.
    pub server_name: String,
    /// The server's description.
    pub server_description: Option<String>,
    /// The server's icon.
    pub server_icon: Option<String>,
    /// Number of members.
    pub member_count: i64,
    /// Members online now (not invisible); `null` when this node cannot see presence or the
    /// server is larger than [`PREVIEW_PRESENCE_CAP`] members.
    pub online_count: Option<i64>,
    /// Who made the invite.
    pub inviter: Option<UserSummary>,
    /// Expiry (`null`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the caller is banned from this server (joining would answer 403 `banned`);
    /// `false` without an access token.
    pub banned: bool,
}

/// Largest server whose online members an invite preview counts (one presence read per
/// member id).
pub const PREVIEW_PRESENCE_CAP: i64 = 5000;

/// Members of `server` online now, when `state` can read presence and the server is small
/// enough; a presence failure leaves the count out rather than failing the preview.
async fn online_count(state: &AppState, server: Id, members: i64) -> Option<i64> {
    let presence = state.presence.as_ref()?;
    if members > PREVIEW_PRESENCE_CAP {
        return None;
    }
    let ids = super::servers::member_ids(&state.db, server, PREVIEW_PRESENCE_CAP)
        .await
        .ok()?;
    match presence.get(&ids).await {
        Ok(list) => Some(
            list.iter()
                .filter(|p| p.status != copains_wire::events::PresenceStatus::Offline)
                .count() as i64,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reading presence for an invite preview");
            None
        }
    }
}

/// The preview of a usable invite: what the server shows to anyone holding the code (name,
/// description, icon, member and online counts, the inviter's public name) — no member list.
/// The preview of invite `code`; `viewer` is the signed-in caller, if any (for `banned`).
pub async fn preview(state: &AppState, code: &str, viewer: Option<Id>) -> ApiResult<InvitePreview> {
    let db = &state.db;
    let inv = get_usable(db, code).await?;
    let s = super::servers::get(db, inv.server_id).await?;
    let inviter = match inv.inviter_id {
        Some(u) => super::members::user_summary(db, u).await.ok(),
        None => None,
    };
    Ok(InvitePreview {
        code: inv.code,
        server_id: s.id,
        server_name: s.name,
        server_description: s.description,
        server_icon: s.icon,
        online_count: online_count(state, s.id, s.member_count).await,
        member_count: s.member_count,
        inviter,
        expires_at: inv.expires_at,
        banned: match viewer {
            Some(u) => super::moderation::is_banned(db, s.id, u).await?,
            None => false,
        },
    })
}

/// Locks `user`'s row for the rest of `tx`: joins, bans and server creations of one user are
/// serialised, so a ban cannot slip between a join's ban check and its insert, and the
/// server quota holds.
pub async fn lock_user(tx: &mut sqlx::PgConnection, user: Id) -> ApiResult<bool> {
    let r = sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// How a join went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Newly a member (one use consumed).
    New(Id),
    /// Was already a member (no use consumed).
    Already(Id),
}

/// Joins `user` to the server of invite `code`. Race-free: the use is taken by one
/// conditional `UPDATE … RETURNING`, so with N uses left exactly N concurrent joins succeed.
/// A banned user is refused (403 `banned`) whatever the invite.
pub async fn join(state: &AppState, user: Id, code: &str) -> ApiResult<Joined> {
    let invalid = || ApiError::not_found("unknown, expired or used-up invite");
    if !plausible_code(code) {
        return Err(invalid());
    }
    let mut tx = state.db.begin().await?;
    let server: Option<(i64,)> = sqlx::query_as("SELECT server_id FROM invites WHERE code = $1")
        .bind(code)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((server,)) = server else {
        return Err(invalid());
    };
    lock_user(&mut tx, user).await?;
    let banned: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM bans WHERE server_id = $1 AND user_id = $2")
            .bind(server)
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
    if banned.is_some() {
        return Err(ApiError::forbidden(
            "banned",
            "you are banned from this server",
        ));
    }
    let member: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server)
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
    if member.is_some() {
        return Ok(Joined::Already(Id(server)));
    }
    super::servers::check_server_quota(&mut *tx, user).await?;
    let used: Option<(i64,)> = sqlx::query_as(
        "UPDATE invites SET uses = uses + 1
          WHERE code = $1 AND (max_uses IS NULL OR uses < max_uses)
            AND (expires_at IS NULL OR expires_at > now())
          RETURNING server_id",
    )
    .bind(code)
    .fetch_optional(&mut *tx)
    .await?;
    if used.is_none() {
        return Err(invalid());
    }
    sqlx::query("INSERT INTO members (server_id, user_id) VALUES ($1, $2)")
        .bind(server)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Joined::New(Id(server)))
}
