//! Prometheus counters for `/metrics`, kept with atomics (no registry needed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Request counters by status class and a latency sum.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    by_class: [AtomicU64; 5],
    duration_micros: AtomicU64,
    in_flight: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            by_class: Default::default(),
            duration_micros: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of these counters plus the pool's gauges.
    pub fn render(&self, pool_size: u32, pool_idle: usize) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP copains_http_requests_total HTTP requests answered, by status class.\n",
        );
        out.push_str("# TYPE copains_http_requests_total counter\n");
        for (i, c) in self.by_class.iter().enumerate() {
            out.push_str(&format!(
                "copains_http_requests_total{{class=\"{}xx\"}} {}\n",
                i + 1,
                c.load(Ordering::Relaxed)
            ));
        }
        let total: u64 = self
            .by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        out.push_str(
            "# HELP copains_http_request_duration_seconds Time spent answering requests.\n",
        );
        out.push_str("# TYPE copains_http_request_duration_seconds summary\n");
        out.push_str(&format!(
            "copains_http_request_duration_seconds_sum {}\ncopains_http_request_duration_seconds_count {}\n",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6,
            total
        ));
        out.push_str("# HELP copains_http_requests_in_flight Requests being answered now.\n# TYPE copains_http_requests_in_flight gauge\n");
        out.push_str(&format!(
            "copains_http_requests_in_flight {}\n",
            self.in_flight.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP copains_db_pool_connections Database connections open, and idle.\n# TYPE copains_db_pool_connections gauge\n");
        out.push_str(&format!(
            "copains_db_pool_connections{{state=\"open\"}} {pool_size}\n"
        ));
        out.push_str(&format!(
            "copains_db_pool_connections{{state=\"idle\"}} {pool_idle}\n"
        ));
        out.push_str("# HELP copains_uptime_seconds Seconds since this process started.\n# TYPE copains_uptime_seconds gauge\n");
        out.push_str(&format!(
            "copains_uptime_seconds {}\n",
            self.started.elapsed().as_secs()
        ));
        out.push_str(&format!(
            "# HELP copains_build_info Build information.\n# TYPE copains_build_info gauge\ncopains_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ));
        out
    }
}

/// Middleware counting every answer.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let m = &state.metrics;
    m.in_flight.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let resp = next.run(req).await;
    m.in_flight.fetch_sub(1, Ordering::Relaxed);
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    m.by_class[class].fetch_add(1, Ordering::Relaxed);
    m.duration_micros
        .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    resp
}
