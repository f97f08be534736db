//! The account and session rules, shared by the HTTP routes and the admin CLI.
//!
//! A *session* is one login on one client. It owns a family of refresh tokens: each
//! refresh exchanges the presented token for a new one; presenting a token that was
//! already exchanged (a stolen copy, or a replay) revokes the whole session.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use copains_wire::{AccessClaims, Id};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use utoipa::ToSchema;

use copains_wire::events::{Audience, BusEvent, Event};

use crate::error::{ApiError, ApiResult};
use crate::messaging::dms::DmPolicy;
use crate::policy::{self, RegistrationMode};
use crate::secret;
use crate::state::AppState;
use crate::validate;

/// The caller's own account, as `GET /users/@me` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    /// The user id.
    #[schema(value_type = String)]
    pub id: Id,
    /// Unique handle (case-insensitive).
    pub username: String,
    /// Email address (private: only shown to its owner and admins).
    pub email: String,
    /// Name shown instead of the username, if set.
    pub display_name: Option<String>,
    /// Short profile text.
    pub bio: Option<String>,
    /// Instance administrator.
    pub is_admin: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// Who may start a DM with me.
    pub dm_policy: DmPolicy,
}

/// What anyone signed in may see of another user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicUser {
    /// The user id.
    #[schema(value_type = String)]
    pub id: Id,
    /// Unique handle.
    pub username: String,
    /// Display name, if set.
    pub display_name: Option<String>,
    /// Short profile text.
    pub bio: Option<String>,
}

/// Columns selected for [`User`].
pub const USER_COLUMNS: &str =
    "id, username, email, display_name, bio, is_admin, created_at, dm_policy";

/// Where a request came from, recorded on the session.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Client IP (after the trusted-proxy rule).
    pub ip: IpAddr,
    /// User-Agent, truncated.
    pub user_agent: Option<String>,
}

/// A fresh access + refresh token pair.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The session these tokens belong to.
    pub session_id: Id,
    /// JWT, 15 minutes.
    pub access_token: String,
    /// Opaque refresh token (256 bits).
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Input of [`register`].
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Wanted username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Password (8–128 characters).
    pub password: String,
    /// Registration invite code (needed when registration is invite-only).
    pub invite: Option<String>,
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// Signs an access token for a session.
pub fn access_token(state: &AppState, user_id: Id, session_id: Id) -> ApiResult<String> {
    let now = now_secs();
    let claims = AccessClaims {
        sub: user_id,
        sid: session_id,
        iat: now,
        exp: now + state.config.access_ttl.as_secs() as i64,
        iss: copains_wire::token::ISSUER.into(),
    };
    state
        .signer
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Opens a new session for `user_id` inside `tx` and returns its tokens.
pub async fn open_session(
    state: &AppState,
    tx: &mut Transaction<'_, Postgres>,
    user_id: Id,
    client: &ClientInfo,
) -> ApiResult<Tokens> {
    let session_id = state.ids.next();
    let expires = Utc::now()
        + chrono::Duration::from_std(state.config.session_ttl)
            .unwrap_or(chrono::Duration::days(30));
    sqlx::query("INSERT INTO sessions (id, user_id, expires_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5)")
        .bind(session_id.0)
        .bind(user_id.0)
        .bind(expires)
        .bind(&client.user_agent)
        .bind(client.ip.to_string())
        .execute(&mut **tx)
        .await?;
    let refresh_token = secret::new_token();
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
        .bind(secret::hash(&refresh_token))
        .bind(session_id.0)
        .execute(&mut **tx)
        .await?;
    Ok(Tokens {
        session_id,
        access_token: access_token(state, user_id, session_id)?,
        refresh_token,
        expires_in: state.config.access_ttl.as_secs(),
    })
}

async fn user_by_id(db: impl sqlx::PgExecutor<'_>, id: Id) -> ApiResult<Option<User>> {
    let row =
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(db)
            .await?;
    Ok(row.map(Into::into))
}

/// Row shape of [`User`] (ids are BIGINT in the database).
#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    email: String,
    display_name: Option<String>,
    bio: Option<String>,
    is_admin: bool,
    created_at: DateTime<Utc>,
    dm_policy: String,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: Id(r.id),
            username: r.username,
            email: r.email,
            display_name: r.display_name,
            bio: r.bio,
            is_admin: r.is_admin,
            created_at: r.created_at,
            dm_policy: DmPolicy::from_db(&r.dm_policy),
        }
    }
}

/// The account with this id.
pub async fn get_user(db: &PgPool, id: Id) -> ApiResult<User> {
    user_by_id(db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown user"))
}

/// The public profile of a user.
pub async fn get_public_user(db: &PgPool, id: Id) -> ApiResult<PublicUser> {
    let row: Option<(i64, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, username, display_name, bio FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(db)
            .await?;
    row.map(|(id, username, display_name, bio)| PublicUser {
        id: Id(id),
        username,
        display_name,
        bio,
    })
    .ok_or_else(|| ApiError::not_found("unknown user"))
}

/// Maps a unique violation on users to 409.
fn conflict_or(e: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(d) = &e {
        match d.constraint() {
            Some("users_username_lower") => {
                return ApiError::conflict("username_taken", "this username is taken");
            }
            Some("users_email_lower") => {
                return ApiError::conflict(
                    "email_taken",
                    "an account already uses this email address",
                );
            }
            _ => {}
        }
    }
    e.into()
}

/// Creates an account (checking the access policy) and logs it in.
pub async fn register(
    state: &AppState,
    new: NewAccount,
    client: &ClientInfo,
) -> ApiResult<(User, Tokens)> {
    validate::username(&new.username)?;
    let domain = validate::email(&new.email)?;
    validate::password(&new.password)?;
    let mode = policy::registration_mode(&state.db).await?;
    if mode == RegistrationMode::Closed {
        return Err(ApiError::forbidden(
            "registration_closed",
            "registration is closed on this instance",
        ));
    }
    policy::check_email_domain(&state.db, &domain).await?;
    let hash = state.hasher.hash(new.password.clone()).await?;

    let mut tx = state.db.begin().await?;
    if mode == RegistrationMode::InviteOnly {
        let code = new.invite.as_deref().unwrap_or("");
        let used = sqlx::query(
            "UPDATE registration_invites SET uses = uses + 1
              WHERE code = $1 AND (max_uses IS NULL OR uses < max_uses)
                AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(code)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Err(ApiError::forbidden(
                "invite_required",
                "registration on this instance needs a valid invite code",
            ));
        }
    }
    let user = create_user_tx(state, &mut tx, &new.username, &new.email, &hash, None).await?;
    let tokens = open_session(state, &mut tx, user.id, client).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "account registered");
    Ok((user, tokens))
}

/// Inserts a user row. `admin = None` makes the first account of the instance its admin.
async fn create_user_tx(
    state: &AppState,
    tx: &mut Transaction<'_, Postgres>,
    username: &str,
    email: &str,
    hash: &str,
    admin: Option<bool>,
) -> ApiResult<User> {
    let id = state.ids.next();
    // Serialize first-user detection so two racing registrations cannot both become admin.
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    let is_admin = match admin {
        Some(a) => a,
        None => {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
                .fetch_one(&mut **tx)
                .await?;
            n == 0
        }
    };
    let row = sqlx::query_as::<_, UserRow>(&format!(
        "INSERT INTO users (id, username, email, password_hash, is_admin) VALUES ($1, $2, $3, $4, $5)
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id.0)
    .bind(username)
    .bind(email)
    .bind(hash)
    .bind(is_admin)
    .fetch_one(&mut **tx)
    .await
    .map_err(conflict_or)?;
    Ok(row.into())
}

/// Creates an account without the registration policy (the admin CLI).
pub async fn create_user_unchecked(
    state: &AppState,
    username: &str,
    email: &str,
    password: &str,
    admin: bool,
) -> ApiResult<User> {
    validate::username(username)?;
    validate::email(email)?;
    validate::password(password)?;
    let hash = state.hasher.hash(password.to_owned()).await?;
    let mut tx = state.db.begin().await?;
    let user = create_user_tx(state, &mut tx, username, email, &hash, Some(admin)).await?;
    tx.commit().await?;
    Ok(user)
}

/// Checks a username-or-email and password; opens a session.
pub async fn login(
    state: &AppState,
    login: &str,
    password: &str,
    client: &ClientInfo,
) -> ApiResult<(User, Tokens)> {
    let bad = || ApiError::unauthorized("invalid_credentials", "wrong username, email or password");
    if login.len() > 254 || password.chars().count() > 128 {
        // Still spend the time a real check costs.
        let _ = state
            .hasher
            .verify(password.chars().take(128).collect(), None)
            .await?;
        return Err(bad());
    }
    let row: Option<(i64, String, bool)> = sqlx::query_as(
        "SELECT id, password_hash, suspended_at IS NOT NULL FROM users
          WHERE lower(username) = lower($1) OR lower(email) = lower($1) LIMIT 1",
    )
    .bind(login)
    .fetch_optional(&state.db)
    .await?;
    let ok = state
        .hasher
        .verify(password.to_owned(), row.as_ref().map(|r| r.1.clone()))
        .await?;
    let Some((id, _, suspended)) = row.filter(|_| ok) else {
        return Err(bad());
    };
    if suspended {
        return Err(ApiError::forbidden(
            "account_suspended",
            "this account is suspended",
        ));
    }
    let mut tx = state.db.begin().await?;
    let tokens = open_session(state, &mut tx, Id(id), client).await?;
    let user = user_by_id(&mut *tx, Id(id)).await?.ok_or_else(bad)?;
    tx.commit().await?;
    Ok((user, tokens))
}

/// A refresh token's session: id, user, rotated_at, revoked_at, expires_at, user suspended.
type RefreshRow = (
    i64,
    i64,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    bool,
);

/// A session row: id, created, last used, expires, user agent, ip.
type SessionRow = (
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
);

/// Exchanges a refresh token for a new pair. A token already exchanged revokes its session.
pub async fn refresh(state: &AppState, token: &str, client: &ClientInfo) -> ApiResult<Tokens> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_refresh_token",
            "the refresh token is not valid; log in again",
        )
    };
    if !secret::looks_like_token(token) {
        return Err(invalid());
    }
    let hash = secret::hash(token);
    let mut tx = state.db.begin().await?;
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT s.id, s.user_id, rt.rotated_at, s.revoked_at, s.expires_at, u.suspended_at IS NOT NULL
           FROM refresh_tokens rt
           JOIN sessions s ON s.id = rt.session_id
           JOIN users u ON u.id = s.user_id
          WHERE rt.token_hash = $1
          FOR UPDATE OF rt, s",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((sid, uid, rotated_at, revoked_at, expires_at, suspended)) = row else {
        return Err(invalid());
    };
    if revoked_at.is_some() || expires_at <= Utc::now() {
        return Err(ApiError::unauthorized(
            "session_revoked",
            "this session has ended; log in again",
        ));
    }
    if rotated_at.is_some() {
        // Reuse of an exchanged token: someone holds a copy. End the whole family.
        sqlx::query("UPDATE sessions SET revoked_at = now(), revoked_reason = 'refresh_token_reuse' WHERE id = $1")
            .bind(sid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::warn!(
            session_id = sid,
            user_id = uid,
            "refresh token reuse detected: session revoked"
        );
        announce_revoked(state, Id(uid), &[Id(sid)]).await;
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; the session has been ended for safety",
        ));
    }
    if suspended {
        return Err(ApiError::forbidden(
            "account_suspended",
            "this account is suspended",
        ));
    }
    // Conditional, so that of racing exchanges of one token exactly one wins even if the
    // row lock above were ever weakened.
    let won = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1 AND rotated_at IS NULL",
    )
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !won {
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used",
        ));
    }
    let new_token = secret::new_token();
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
        .bind(secret::hash(&new_token))
        .bind(sid)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sessions SET last_used_at = now(), ip = $2, user_agent = COALESCE($3, user_agent) WHERE id = $1")
        .bind(sid)
        .bind(client.ip.to_string())
        .bind(&client.user_agent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Tokens {
        session_id: Id(sid),
        access_token: access_token(state, Id(uid), Id(sid))?,
        refresh_token: new_token,
        expires_in: state.config.access_ttl.as_secs(),
    })
}

/// Revokes one session of `user_id`. Answers 404 if it is not theirs or already ended.
pub async fn revoke_session(
    db: &PgPool,
    user_id: Id,
    session_id: Id,
    reason: &str,
) -> ApiResult<()> {
    let r = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
          WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id.0)
    .bind(user_id.0)
    .bind(reason)
    .execute(db)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("unknown session"));
    }
    Ok(())
}

/// Revokes every live session of `user_id` except `keep`.
pub async fn revoke_other_sessions(
    db: impl sqlx::PgExecutor<'_>,
    user_id: Id,
    keep: Option<Id>,
    reason: &str,
) -> ApiResult<Vec<Id>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
          WHERE user_id = $1 AND revoked_at IS NULL AND ($2::BIGINT IS NULL OR id <> $2)
          RETURNING id",
    )
    .bind(user_id.0)
    .bind(keep.map(|k| k.0))
    .bind(reason)
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(Id).collect())
}

/// Tells every gateway node that these sessions ended (their connections close with 4012).
pub async fn announce_revoked(state: &AppState, user_id: Id, sessions: &[Id]) {
    for sid in sessions {
        state.auth_cache.forget_session(*sid);
        state
            .publish(BusEvent::new(
                vec![Audience::User(user_id)],
                Event::SessionRevoked {
                    user_id,
                    session_id: *sid,
                },
            ))
            .await;
    }
}

/// One live session, as the sessions list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// Session id.
    #[schema(value_type = String)]
    pub id: Id,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// Last refresh.
    pub last_used_at: DateTime<Utc>,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
    /// Client software, as reported.
    pub user_agent: Option<String>,
    /// Last client IP.
    pub ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// The live sessions of `user_id`, newest first.
pub async fn list_sessions(db: &PgPool, user_id: Id, current: Id) -> ApiResult<Vec<SessionInfo>> {
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT id, created_at, last_used_at, expires_at, user_agent, ip FROM sessions
              WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
              ORDER BY id DESC LIMIT 200",
    )
    .bind(user_id.0)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, created_at, last_used_at, expires_at, user_agent, ip)| SessionInfo {
                id: Id(id),
                created_at,
                last_used_at,
                expires_at,
                user_agent,
                ip,
                current: id == current.0,
            },
        )
        .collect())
}

/// Sets a new password (after checking the current one) and ends every other session.
pub async fn change_password(
    state: &AppState,
    auth_user: Id,
    keep: Id,
    current: &str,
    new: &str,
) -> ApiResult<()> {
    validate::password(new)?;
    let (phc,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
        .bind(auth_user.0)
        .fetch_one(&state.db)
        .await?;
    if current.chars().count() > 128 || !state.hasher.verify(current.to_owned(), Some(phc)).await? {
        return Err(ApiError::forbidden(
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let hash = state.hasher.hash(new.to_owned()).await?;
    let mut tx = state.db.begin().await?;
    set_password_tx(&mut tx, auth_user, &hash).await?;
    let ended = revoke_other_sessions(&mut *tx, auth_user, Some(keep), "password_changed").await?;
    tx.commit().await?;
    announce_revoked(state, auth_user, &ended).await;
    Ok(())
}

async fn set_password_tx(
    tx: &mut Transaction<'_, Postgres>,
    user: Id,
    hash: &str,
) -> ApiResult<()> {
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
        .bind(user.0)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    // Outstanding reset links die with the old password.
    sqlx::query(
        "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Makes a single-use reset token for `user` (valid for the configured time) and returns the link.
pub async fn issue_reset_link(state: &AppState, user: Id) -> ApiResult<String> {
    let token = secret::new_token();
    let expires = Utc::now()
        + chrono::Duration::from_std(state.config.reset_ttl).unwrap_or(chrono::Duration::hours(1));
    sqlx::query(
        "INSERT INTO password_resets (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(secret::hash(&token))
    .bind(user.0)
    .bind(expires)
    .execute(&state.db)
    .await?;
    Ok(format!(
        "{}/reset-password?token={token}",
        state.config.public_url.trim_end_matches('/')
    ))
}

/// Handles "forgot password" for `email`: if an account has it, a link is mailed (or logged as
/// unavailable without SMTP). The caller answers the same thing either way.
pub async fn forgot_password(state: &AppState, email: &str) -> ApiResult<()> {
    let row: Option<(i64, String, String)> =
        sqlx::query_as("SELECT id, username, email FROM users WHERE lower(email) = lower($1) AND suspended_at IS NULL")
            .bind(email)
            .fetch_optional(&state.db)
            .await?;
    let Some((id, username, address)) = row else {
        return Ok(());
    };
    let link = issue_reset_link(state, Id(id)).await?;
    match &state.mailer {
        Some(m) => m.send_reset(&address, &username, &link).await?,
        None => tracing::info!(
            user_id = id,
            "password reset asked but no SMTP is configured; an admin can run `copains admin reset-link {username}`"
        ),
    }
    Ok(())
}

/// Sets a new password from a reset token; the token is single-use and every session ends.
pub async fn reset_password(state: &AppState, token: &str, new: &str) -> ApiResult<()> {
    validate::password(new)?;
    let invalid = || {
        ApiError::bad_request(
            "invalid_reset_token",
            "this reset link is invalid, used or expired",
        )
    };
    if !secret::looks_like_token(token) {
        return Err(invalid());
    }
    let hash = state.hasher.hash(new.to_owned()).await?;
    let mut tx = state.db.begin().await?;
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE password_resets SET used_at = now()
          WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
          RETURNING user_id",
    )
    .bind(secret::hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user,)) = row else {
        return Err(invalid());
    };
    set_password_tx(&mut tx, Id(user), &hash).await?;
    let ended = revoke_other_sessions(&mut *tx, Id(user), None, "password_reset").await?;
    tx.commit().await?;
    announce_revoked(state, Id(user), &ended).await;
    Ok(())
}

/// Finds a user by username or email (the admin CLI).
pub async fn find_user(db: &PgPool, login: &str) -> ApiResult<User> {
    let row = sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($1) LIMIT 1"
    ))
    .bind(login)
    .fetch_optional(db)
    .await?;
    row.map(Into::into)
        .ok_or_else(|| ApiError::not_found("unknown user"))
}

/// Suspends (or, with `reason = None`, reinstates) an account instance-wide; suspension ends its sessions.
pub async fn set_suspended(state: &AppState, user: Id, reason: Option<&str>) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let r = sqlx::query(
        "UPDATE users SET suspended_at = CASE WHEN $2 THEN now() ELSE NULL END, suspended_reason = $3 WHERE id = $1",
    )
    .bind(user.0)
    .bind(reason.is_some())
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("unknown user"));
    }
    let ended = if reason.is_some() {
        revoke_other_sessions(&mut *tx, user, None, "suspended").await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    announce_revoked(state, user, &ended).await;
    Ok(())
}

/// Deletes an account after checking its password.
pub async fn delete_account(state: &AppState, user: Id, password: &str) -> ApiResult<()> {
    let (phc,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_one(&state.db)
        .await?;
    if password.chars().count() > 128
        || !state.hasher.verify(password.to_owned(), Some(phc)).await?
    {
        return Err(ApiError::forbidden(
            "wrong_password",
            "the password is wrong",
        ));
    }
    let ended = revoke_other_sessions(&state.db, user, None, "account_deleted").await?;
    // Their messages lose their author and their reactions go: cached history too.
    let _cache = state
        .history
        .guard(crate::messaging::history_cache::Change::All);
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.0)
        .execute(&state.db)
        .await?;
    announce_revoked(state, user, &ended).await;
    tracing::info!(user_id = %user, "account deleted");
    Ok(())
}
