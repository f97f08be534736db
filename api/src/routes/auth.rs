//! `/auth`: register, login, refresh, logout, forgot and reset password.
//!
//! Browsers send `X-Copains-Client: web`: their refresh token then travels only in an
//! HttpOnly, Secure, SameSite=Strict cookie scoped to `/api/v1/auth` and the JSON carries
//! `refresh_token: null`. Native clients get it in the JSON body.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{self, ClientInfo, NewAccount, Tokens, User};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, ClientIp, Json, user_agent};
use crate::state::AppState;

/// Name of the refresh cookie.
pub const REFRESH_COOKIE: &str = "copains_refresh";
/// Header by which the web app asks for cookie transport of the refresh token.
pub const CLIENT_HEADER: &str = "x-copains-client";

/// `POST /auth/register` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 2–32 characters of letters, digits, `_ . -`.
    #[schema(
        min_length = 2,
        max_length = 32,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,30}[A-Za-z0-9_-]$"
    )]
    pub username: String,
    /// Email address.
    #[schema(max_length = 254)]
    pub email: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Registration invite code, when the instance is invite-only.
    pub invite: Option<String>,
}

/// `POST /auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Username or email.
    pub login: String,
    /// Password.
    pub password: String,
}

/// `POST /auth/refresh` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token (omit it when it travels in the cookie).
    pub refresh_token: Option<String>,
}

/// A login answer: the account and its tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    /// The account.
    pub user: User,
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Refresh token (null for web clients: it is in the HttpOnly cookie).
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The session id.
    pub session_id: String,
}

/// A refresh answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// The new refresh token (null for web clients).
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// `POST /auth/password/forgot` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotRequest {
    /// The account's email.
    pub email: String,
}

/// `POST /auth/password/reset` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    /// The token from the reset link.
    #[schema(min_length = 43, max_length = 43)]
    pub token: String,
    /// The new password (8–128 characters).
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

/// A neutral confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// What happens next.
    pub message: String,
}

fn wants_cookie(headers: &HeaderMap) -> bool {
    headers
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("web"))
}

fn refresh_cookie(state: &AppState, token: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={token}; Path=/api/v1/auth; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == REFRESH_COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn with_tokens<T: Serialize>(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    tokens: &Tokens,
    body: impl FnOnce(Option<String>) -> T,
) -> Response {
    let web = wants_cookie(headers);
    let mut resp = (
        status,
        axum::Json(body((!web).then(|| tokens.refresh_token.clone()))),
    )
        .into_response();
    if web
        && let Some(c) = refresh_cookie(
            state,
            &tokens.refresh_token,
            state.config.session_ttl.as_secs(),
        )
    {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

fn client(ip: ClientIp, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: ip.0,
        user_agent: user_agent(headers),
    }
}

/// Create an account and log in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, description = "Account created", body = AuthResponse),
              (status = 403, description = "Registration closed, invite required, or email domain refused", body = crate::error::ErrorBody),
              (status = 409, description = "Username or email taken", body = crate::error::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let new = NewAccount {
        username: req.username,
        email: req.email,
        password: req.password,
        invite: req.invite,
    };
    let (user, tokens) = accounts::register(&state, new, &client(ip, &headers)).await?;
    Ok(with_tokens(
        &state,
        &headers,
        StatusCode::CREATED,
        &tokens,
        |rt| AuthResponse {
            user,
            access_token: tokens.access_token.clone(),
            refresh_token: rt,
            expires_in: tokens.expires_in,
            session_id: tokens.session_id.to_string(),
        },
    ))
}

/// Log in with a username or email and a password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Logged in", body = AuthResponse),
              (status = 401, description = "Wrong credentials (same answer whether or not the account exists)", body = crate::error::ErrorBody),
              (status = 403, description = "Account suspended", body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let (user, tokens) =
        accounts::login(&state, &req.login, &req.password, &client(ip, &headers)).await?;
    Ok(with_tokens(
        &state,
        &headers,
        StatusCode::OK,
        &tokens,
        |rt| AuthResponse {
            user,
            access_token: tokens.access_token.clone(),
            refresh_token: rt,
            expires_in: tokens.expires_in,
            session_id: tokens.session_id.to_string(),
        },
    ))
}

/// Exchange a refresh token for a new pair. Reusing an exchanged token ends the session.
/// A web client (`X-Copains-Client: web`) that sends no token at all (no cookie: nobody is
/// signed in in this browser) gets 204 instead of 401, so a signed-out page load logs no
/// failed request.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "New tokens", body = TokenResponse),
              (status = 204, description = "Web client without a refresh cookie: no session to restore"),
              (status = 401, description = "Invalid, reused, or revoked refresh token", body = crate::error::ErrorBody),
              (status = 403, description = "Account suspended", body = crate::error::ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Response> {
    let Some(token) = req.refresh_token.or_else(|| cookie_token(&headers)) else {
        if wants_cookie(&headers) {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        return Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "no refresh token was sent",
        ));
    };
    let tokens = accounts::refresh(&state, &token, &client(ip, &headers)).await?;
    Ok(with_tokens(
        &state,
        &headers,
        StatusCode::OK,
        &tokens,
        |rt| TokenResponse {
            access_token: tokens.access_token.clone(),
            refresh_token: rt,
            expires_in: tokens.expires_in,
        },
    ))
}

/// End the current session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Logged out")))]
pub async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    accounts::revoke_session(&state.db, auth.user_id, auth.session_id, "logout").await?;
    accounts::announce_revoked(&state, auth.user_id, &[auth.session_id]).await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = refresh_cookie(&state, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Ask for a password-reset link. The answer is the same whether or not the account exists.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotRequest,
    responses((status = 202, description = "If the account exists, a link is on its way", body = Accepted)))]
pub async fn forgot_password(
    State(state): State<AppState>,
    Json(req): Json<ForgotRequest>,
) -> ApiResult<(StatusCode, axum::Json<Accepted>)> {
    if req.email.len() <= 254 {
        // The work (lookup, token, mail) runs in the background so the answer takes the same time.
        let st = state.clone();
        tokio::spawn(async move {
            if let Err(e) = accounts::forgot_password(&st, &req.email).await {
                tracing::warn!(error = %e, "forgot-password handling failed");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Accepted {
            message: "If an account uses this address, a reset link has been sent to it.".into(),
        }),
    ))
}

/// Set a new password with a reset token (single use, one hour). Every session ends.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetRequest,
    responses((status = 204, description = "Password changed")))]
pub async fn reset_password(
    State(state): State<AppState>,
    Json(req): Json<ResetRequest>,
) -> ApiResult<StatusCode> {
    accounts::reset_password(&state, &req.token, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
