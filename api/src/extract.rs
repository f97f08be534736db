//! Extractors whose rejections become [`ApiError`]s: a JSON body, path ids,
//! the bearer-authenticated caller, and the client IP.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use copains_wire::{Id, TokenError};
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body; syntax errors → 400, wrong fields → 422, wrong content type → 415, too big → 413.
/// Every string in it (and every object key) must pass [`crate::validate::json_text_fields`]: no NUL
/// or other control characters, line breaks and tabs only in multi-line fields (422 naming the
/// field).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// The request body limit the router enforces, made known to the extractors so a 413 can
/// state it (an extension set by [`crate::routes::router`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// axum's limit when no `DefaultBodyLimit` is configured.
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(AXUM_DEFAULT_BODY_LIMIT, |l| l.0);
        // Refuse a declared length beyond the limit before reading a byte of the body.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            Err(e) => return Err(ApiError::bad_request("bad_body", e.body_text())),
        };
        crate::validate::json_text_fields(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r, limit)),
        }
    }
}

/// `application/json` or `application/*+json`, parameters allowed (axum's rule).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

fn json_rejection(r: JsonRejection, limit: usize) -> ApiError {
    match r {
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!("malformed JSON: {}", inner(&e.body_text())),
        ),
        JsonRejection::JsonDataError(e) => ApiError::validation(inner(&e.body_text())),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::BytesRejection(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge(limit)
        }
        other => ApiError::bad_request("bad_body", other.body_text()),
    }
}

/// axum's messages start with a generic prefix; keep the useful tail.
fn inner(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, t)| t)
        .unwrap_or(text)
        .chars()
        .take(300)
        .collect()
}

/// Path parameters; a bad id → 404 (an id that cannot exist names nothing), and so is a text
/// parameter with a control character.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => {
                // Text parameters (an invite code, a device id...) with a control character
                // name nothing either: 404, before any handler or query sees them (an id
                // with one already failed to parse).
                if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await
                    && raw
                        .iter()
                        .any(|(name, value)| crate::validate::single_line(name, value).is_err())
                {
                    return Err(ApiError::not_found("no such object"));
                }
                Ok(Path(v))
            }
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::not_found("no such object"))
            }
            Err(e) => Err(ApiError::bad_request("bad_path", e.body_text())),
        }
    }
}

/// A query string; bad values → 400, a control character in a parameter → 422 naming it.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(axum::extract::Query(pairs)) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        {
            for (name, value) in &pairs {
                crate::validate::single_line(name, name)?;
                crate::validate::single_line(name, value)?;
            }
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad_request("bad_query", inner(&e.body_text())))
            }
            Err(e) => Err(ApiError::bad_request("bad_query", e.body_text())),
        }
    }
}

/// The authenticated caller: a valid access token whose session is still live and
/// whose account is not suspended.
#[derive(Debug, Clone, Copy)]
pub struct Auth {
    /// The user.
    pub user_id: Id,
    /// The session the token belongs to.
    pub session_id: Id,
    /// Whether the user is an instance admin.
    pub is_admin: bool,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(a) = parts.extensions.get::<Auth>() {
            return Ok(*a);
        }
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "an access token is required (Authorization: Bearer …)",
            )
        })?;
        let claims = state
            .auth_cache
            .verify(&state.verifier, token)
            .map_err(|e| match e {
                TokenError::Expired => ApiError::unauthorized(
                    "token_expired",
                    "the access token has expired; refresh it",
                ),
                _ => ApiError::unauthorized("invalid_token", "the access token is invalid"),
            })?;
        let is_admin = match state.auth_cache.live_session(claims.sid) {
            Some(admin) => admin,
            None => {
                let row: Option<(bool, bool)> = sqlx::query_as(
                    "SELECT u.is_admin, u.suspended_at IS NOT NULL
                       FROM sessions s JOIN users u ON u.id = s.user_id
                      WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > now()",
                )
                .bind(claims.sid.0)
                .bind(claims.sub.0)
                .fetch_optional(&state.db)
                .await?;
                let (is_admin, suspended) = row.ok_or_else(|| {
                    ApiError::unauthorized(
                        "session_revoked",
                        "this session has ended; log in again",
                    )
                })?;
                if suspended {
                    return Err(ApiError::forbidden(
                        "account_suspended",
                        "this account is suspended",
                    ));
                }
                state.auth_cache.remember_session(claims.sid, is_admin);
                is_admin
            }
        };
        let auth = Auth {
            user_id: claims.sub,
            session_id: claims.sid,
            is_admin,
        };
        parts.extensions.insert(auth);
        Ok(auth)
    }
}

/// An authenticated instance admin.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth(pub Auth);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        if !auth.is_admin {
            return Err(ApiError::forbidden(
                "not_admin",
                "only instance admins may do this",
            ));
        }
        Ok(AdminAuth(auth))
    }
}

/// The `Authorization: Bearer` token, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The client's IP: the TCP peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` hop that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if !is_trusted(&ip) => return ip,
            Ok(_) => continue,
            Err(_) => return peer,
        }
    }
    peer
}

/// The client IP of this request (see [`client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(peer_ip(parts, &state.config.trusted_proxies)))
    }
}

/// The client IP from request parts (peer from `ConnectInfo`, loopback when absent, as in tests).
pub fn peer_ip(parts: &Parts, trusted: &[IpNet]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    client_ip(peer, &parts.headers, trusted)
}

/// The `User-Agent`, cut to 256 characters.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.1.1".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(client_ip(proxy, &h, &[]), proxy);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
    }
}
