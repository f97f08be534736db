//! Per-client-IP rate limits on the auth routes (tower_governor): 429 + `Retry-After`
//! with the usual JSON error body.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use axum::response::IntoResponse;
use governor::middleware::NoOpMiddleware;
use ipnet::IpNet;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::error::ApiError;

/// Keys requests by client IP, believing `X-Forwarded-For` only from trusted proxies.
#[derive(Clone, Debug)]
pub struct ClientIpKey {
    trusted: Arc<Vec<IpNet>>,
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(crate::extract::client_ip(
            peer,
            req.headers(),
            &self.trusted,
        ))
    }
}

/// A limiter config: `burst` requests at once, one more earned every `period`.
pub type LimitConfig = GovernorConfig<ClientIpKey, NoOpMiddleware<governor::clock::QuantaInstant>>;

/// Builds a limiter config.
pub fn config(burst: u32, period: Duration, trusted: &[IpNet]) -> Arc<LimitConfig> {
    let mut b = GovernorConfigBuilder::default().key_extractor(ClientIpKey {
        trusted: Arc::new(trusted.to_vec()),
    });
    b.period(period.max(Duration::from_millis(1)))
        .burst_size(burst.max(1));
    // `finish` only fails on a zero period or burst, which the clamps above rule out.
    let cfg = b.finish().unwrap_or_else(|| {
        GovernorConfigBuilder::default()
            .key_extractor(ClientIpKey {
                trusted: Arc::new(Vec::new()),
            })
            .finish()
            .unwrap_or_else(unreachable_config)
    });
    Arc::new(cfg)
}

#[allow(clippy::panic)]
fn unreachable_config() -> LimitConfig {
    panic!("tower_governor refused its own default configuration")
}

/// The layer for one limiter, answering with the JSON error body.
pub fn layer(
    cfg: Arc<LimitConfig>,
) -> GovernorLayer<ClientIpKey, NoOpMiddleware<governor::clock::QuantaInstant>, Body> {
    GovernorLayer::new(cfg).error_handler(on_error)
}

fn on_error(e: GovernorError) -> Response<Body> {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::RateLimited(wait_time.max(1)).into_response()
        }
        GovernorError::UnableToExtractKey => {
            ApiError::bad_request("no_client_ip", "client address unknown").into_response()
        }
        GovernorError::Other { code, msg, .. } => (code, msg.unwrap_or_default()).into_response(),
    }
}

/// Forgets idle keys of `cfgs` every minute so the maps stay bounded.
pub fn spawn_janitor(cfgs: Vec<Arc<LimitConfig>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            for c in &cfgs {
                c.limiter().retain_recent();
                c.limiter().shrink_to_fit();
            }
        }
    })
}
