//! Operational endpoints: liveness, readiness (database reachable), Prometheus metrics, version.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

use crate::state::AppState;

/// `/healthz`, `/readyz`, `/metrics`, `/version`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
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

/// What `/version` answers.
#[derive(Serialize)]
struct Version {
    version: &'static str,
    schema: i64,
}

async fn version(State(state): State<AppState>) -> impl IntoResponse {
    let schema: i64 =
        sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.db)
            .await
            .unwrap_or(0);
    axum::Json(Version {
        version: env!("CARGO_PKG_VERSION"),
        schema,
    })
}
