//! The HTTP listener and its connection-level defences (#17 item 1): a request's headers must
//! arrive within a deadline (counted from when the connection starts waiting for them, so an
//! idle keep-alive connection is closed after the same time), each chunk of a request body
//! within another, one client IP holds at most so many connections at once (trusted proxies
//! exempt), and the open-file limit is raised to the hard limit at start.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time to receive a request's headers, from when the connection waits for them.
    pub header_timeout: Duration,
    /// Longest wait for the next chunk of a request body.
    pub body_timeout: Duration,
    /// Most connections one client IP holds at once (0: no cap).
    pub max_per_ip: usize,
    /// Peers exempt from the per-IP cap (reverse proxies carry many clients).
    pub exempt: Vec<IpNet>,
}

/// Open connections per client IP.
#[derive(Debug, Default, Clone)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted on drop.
struct Slot {
    map: PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Raises the soft open-file limit to the hard limit and logs both (the default 1,024 lets
/// a thousand idle sockets lock everyone out).
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let wanted = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    match setrlimit(Resource::Nofile, wanted) {
        Ok(()) => {
            let now = getrlimit(Resource::Nofile);
            tracing::info!(
                soft = ?now.current,
                hard = ?now.maximum,
                was = ?before.current,
                "open-file limit (RLIMIT_NOFILE) raised to the hard limit"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            soft = ?before.current,
            hard = ?before.maximum,
            "could not raise the open-file limit"
        ),
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown` completes, then lets open
/// connections finish (at most `drain` more).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    // HTTP/1.1 only, as `axum::serve` with axum's default features (browsers speak HTTP/2 to
    // Caddy, which speaks HTTP/1.1 to us).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let per_ip = PerIp::default();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let exempt = limits.exempt.iter().any(|n| n.contains(&peer.ip()));
        let slot = if exempt {
            None
        } else {
            match per_ip.acquire(peer.ip(), limits.max_per_ip) {
                Some(s) => Some(s),
                None => {
                    tracing::debug!(%peer, "per-IP connection cap reached; closing");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = stopping => None,
            };
            let r = match done {
                Some(r) => r,
                None => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, all_done).await.is_err() {
        tracing::info!("connections still open after the drain time; stopping anyway");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_released() {
        let p = PerIp::default();
        let ip = IpAddr::from([192, 0, 2, 1]);
        let a = p.acquire(ip, 2).unwrap();
        let _b = p.acquire(ip, 2).unwrap();
        assert!(p.acquire(ip, 2).is_none());
        assert!(p.acquire(IpAddr::from([192, 0, 2, 2]), 2).is_some());
        drop(a);
        assert!(p.acquire(ip, 2).is_some());
    }
}
