//! The built web app at `/`, with the SPA fallback to `index.html`, and the security
//! headers every page gets.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Html;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Content-Security-Policy of the web app: same-origin everything, wasm allowed, no inline script.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; \
object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'";

/// Serves `dir` (falling back to its `index.html`), or a plain page saying the web app is not built.
pub fn router(dir: &Path) -> Router {
    let index = dir.join("index.html");
    let r = if index.exists() {
        Router::new().fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
    } else {
        tracing::warn!(dir = %dir.display(), "web app not built: serving a placeholder at /");
        Router::new().fallback(|| async {
            Html(
                "<!doctype html><title>Copains</title><h1>Copains</h1>\
                 <p>The API is running, but the web app has not been built here. \
                 Run <code>scripts/run.sh</code>, which builds it, or set COPAINS_WEB_DIR.</p>",
            )
        })
    };
    r.layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
        ),
    ))
}
