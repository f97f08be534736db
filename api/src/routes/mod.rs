//! The HTTP routes, one file per resource, assembled into one router with its OpenAPI document.

pub mod admin;
pub mod attachments;
pub mod auth;
pub mod channels;
pub mod devices;
pub mod dms;
pub mod friends;
pub mod invites;
pub mod key_backup;
pub mod keys;
pub mod members;
pub mod messages;
pub mod moderation;
pub mod ops;
pub mod pins;
pub mod reactions;
pub mod read_states;
pub mod roles;
pub mod search;
pub mod servers;
pub mod threads;
pub mod to_device;
pub mod users;
pub mod voice;
pub mod whiteboard;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::middleware;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::ratelimit;
use crate::state::AppState;

/// The `/api/v1` router (with its OpenAPI document served at `/api/v1/openapi.json`) plus the
/// operational endpoints (`/healthz`, `/readyz`, `/metrics`). The caller adds the web app,
/// the gateway and the outer layers (tracing, limits on connection count...).
pub fn router(state: AppState) -> Router {
    let cfg = &state.config;
    let trusted = cfg.trusted_proxies.clone();
    let (burst, period) = (cfg.auth_rate_burst, cfg.auth_rate_period);
    let login_rl = ratelimit::config(burst, period, &trusted);
    let register_rl = ratelimit::config(burst, period * 2, &trusted);
    let forgot_rl = ratelimit::config(burst, period * 2, &trusted);
    let refresh_rl = ratelimit::config(burst.saturating_mul(3), period / 3, &trusted);
    ratelimit::spawn_janitor(vec![
        login_rl.clone(),
        register_rl.clone(),
        forgot_rl.clone(),
        refresh_rl.clone(),
    ]);

    let limited = |r: OpenApiRouter<AppState>, c| r.layer(ratelimit::layer(c));
    let v1 = OpenApiRouter::new()
        .merge(limited(
            OpenApiRouter::new().routes(utoipa_axum::routes!(auth::register)),
            register_rl,
        ))
        .merge(limited(
            OpenApiRouter::new().routes(utoipa_axum::routes!(auth::login)),
            login_rl,
        ))
        .merge(limited(
            OpenApiRouter::new().routes(utoipa_axum::routes!(auth::refresh)),
            refresh_rl,
        ))
        .merge(limited(
            OpenApiRouter::new().routes(utoipa_axum::routes!(auth::forgot_password)),
            forgot_rl,
        ))
        .routes(utoipa_axum::routes!(auth::logout))
        .routes(utoipa_axum::routes!(auth::reset_password))
        .merge(users::router())
        .merge(voice::router())
        .merge(admin::router())
        .merge(servers::router())
        .merge(channels::router())
        .merge(roles::router())
        .merge(members::router())
        .merge(invites::router())
        .merge(friends::router())
        .merge(moderation::router())
        .merge(keys::router(&state))
        .merge(devices::router())
        .merge(to_device::router())
        .merge(key_backup::router())
        .merge(messages::router())
        .merge(reactions::router())
        .merge(pins::router())
        .merge(threads::router())
        .merge(dms::router())
        .merge(read_states::router())
        .merge(search::router())
        .merge(attachments::router())
        .merge(whiteboard::router());
    let (v1, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts();
    crate::openapi::finish(&mut doc);
    let doc = std::sync::Arc::new(doc);

    let api = v1
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .route("/api", axum::routing::any(no_route))
        .route("/api/{*rest}", axum::routing::any(no_route))
        .method_not_allowed_fallback(|| async {
            ApiError::bad_request(
                "method_not_allowed",
                "this method is not allowed on this route",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::policy::deny_listed_ips,
        ))
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(axum::Extension(crate::extract::BodyLimit(cfg.body_limit)))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    Router::new()
        .merge(ops::router())
        .merge(api)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Only the operational endpoints (`/healthz`, `/readyz`, `/metrics`, `/version`), for
/// processes that run no api role.
pub fn ops_router(state: AppState) -> Router {
    ops::router()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// The separate metrics listener (`COPAINS_METRICS_ADDR`): `/metrics` without a token, plus
/// `/healthz` and `/readyz`; anything else is a 404.
pub fn metrics_router(state: AppState) -> Router {
    ops::metrics_router().fallback(no_route).with_state(state)
}

/// Answer for unknown `/api` paths: a JSON 404 (never the web app's page).
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}
