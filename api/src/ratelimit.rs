//! Per-client-IP rate limits on the auth routes (governor's GCRA): 429 + `Retry-After`
//! (whole seconds, rounded up: a refill every 6 s says 6) with the usual JSON error body.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use futures_util::future::{Either, Ready, ready};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::ApiError;

/// One limiter: requests keyed by client IP (`X-Forwarded-For` believed only from trusted
/// proxies), `burst` at once, one more earned every `period`.
#[derive(Debug)]
pub struct LimitConfig {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    trusted: Vec<IpNet>,
}

impl LimitConfig {
    /// `Some(seconds to wait, rounded up, at least 1)` when `ip` must slow down.
    pub fn check(&self, ip: IpAddr) -> Option<u64> {
        match self.limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Some(ceil_secs(wait))
            }
        }
    }

    /// The underlying limiter (for its janitor).
    pub fn limiter(&self) -> &DefaultKeyedRateLimiter<IpAddr> {
        &self.limiter
    }
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After` of 0 would invite a retry storm).
pub fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// Builds a limiter config.
pub fn config(burst: u32, period: Duration, trusted: &[IpNet]) -> Arc<LimitConfig> {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    Arc::new(LimitConfig {
        limiter: RateLimiter::keyed(quota),
        trusted: trusted.to_vec(),
    })
}

/// The layer for one limiter, answering with the JSON error body.
pub fn layer(cfg: Arc<LimitConfig>) -> RateLimitLayer {
    RateLimitLayer { cfg }
}

/// A tower layer applying one [`LimitConfig`].
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    cfg: Arc<LimitConfig>,
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    cfg: Arc<LimitConfig>,
}

impl<S, B> tower::Service<Request<B>> for RateLimit<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let ip = crate::extract::client_ip(peer, req.headers(), &self.cfg.trusted);
        match self.cfg.check(ip) {
            None => Either::Right(self.inner.call(req)),
            Some(wait) => Either::Left(ready(Ok(ApiError::RateLimited(wait).into_response()))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_rounded_up() {
        assert_eq!(ceil_secs(Duration::from_millis(5_001)), 6);
        assert_eq!(ceil_secs(Duration::from_secs(6)), 6);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        // A refill every 6 s: the second request, right after the first, waits ~6 s → 6.
        let cfg = config(1, Duration::from_secs(6), &[]);
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(cfg.check(ip), None);
        assert_eq!(cfg.check(ip), Some(6));
        assert_eq!(cfg.check(IpAddr::from([192, 0, 2, 2])), None);
    }
}
