//! Operational endpoints: liveness, readiness (database reachable), Prometheus metrics, version.
//!
//! On the public listener `/metrics` answers only a bearer equal to `COPAINS_METRICS_TOKEN`
//! (404 otherwise, as if it did not exist); the separate metrics listener
//! (`COPAINS_METRICS_ADDR`, see [`metrics_router`]) answers it to anyone who can reach it.
//! `/version` tells everyone the schema version, and the binary's version only to an
//! instance admin or the metrics token.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{Auth, bearer};
use crate::state::AppState;

/// `/healthz`, `/readyz`, `/metrics` (token-gated), `/version`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(gated_metrics))
        .route("/version", get(version))
}

/// The metrics listener's routes: `/metrics` without a token, plus `/healthz` and `/readyz`.
pub fn metrics_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Whether `headers` carry the configured metrics token (compared in constant time).
fn has_metrics_token(state: &AppState, headers: &HeaderMap) -> bool {
    let (Some(want), Some(got)) = (state.config.metrics_token.as_deref(), bearer(headers)) else {
        return false;
    };
    let (a, b) = (want.as_bytes(), got.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn gated_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if has_metrics_token(&state, &headers) {
        metrics(State(state)).await.into_response()
    } else {
        ApiError::not_found("no such route").into_response()
    }
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: the database answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.db).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render(state.db.size(), state.db.num_idle());
    let (hits, misses) = state.history.stats();
    body.push_str(&format!(
        "# HELP copains_history_cache_reads_total History ranges read, from memory (hit) or from the database (miss).\n\
         # TYPE copains_history_cache_reads_total counter\n\
         copains_history_cache_reads_total{{result=\"hit\"}} {hits}\n\
         copains_history_cache_reads_total{{result=\"miss\"}} {misses}\n\
         # HELP copains_history_cache_enabled Whether history pages may come from memory now.\n\
         # TYPE copains_history_cache_enabled gauge\n\
         copains_history_cache_enabled {}\n",
        u8::from(state.history.enabled())
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// What `/version` answers: the schema version to everyone (clients and upgrade checks), the
/// binary's version only to an instance admin or the metrics token.
#[derive(Serialize)]
struct Version {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    schema: i64,
}

async fn version(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Result<Auth, ApiError>,
) -> impl IntoResponse {
    let trusted = has_metrics_token(&state, &headers) || auth.is_ok_and(|a| a.is_admin);
    let schema: i64 =
        sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.db)
            .await
            .unwrap_or(0);
    axum::Json(Version {
        version: trusted.then_some(env!("CARGO_PKG_VERSION")),
        schema,
    })
}
