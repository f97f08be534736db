//! Messaging benchmark: what the API costs on top of the database, measured in one run
//! against the same local PostgreSQL.
//!
//! Run (from the workspace root):
//!
//! ```text
//! cargo run --release -p copains-api --example messaging_bench
//! ```
//!
//! Environment: `COPAINS_BENCH_DATABASE_URL` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `BENCH_REQUESTS` (per timed phase,
//! default 2000), `BENCH_CONCURRENCY` (default 16), `BENCH_ROUNDS` (default 3),
//! `BENCH_OUT` (default `bench/results/messaging.json`).
//!
//! It creates a fresh database, migrates it, serves the real router on 127.0.0.1:0 in this
//! process and drives it over HTTP/1.1 keep-alive with `BENCH_CONCURRENCY` client tasks:
//! - `create`: `POST /api/v1/channels/{id}/messages {content}` (auth, permission resolution,
//!   mention parsing, the grouped ordered insert, bus publish);
//! - `create_spread`: the same, spread over one channel per client (inserts into one channel
//!   are ordered by its head lock; different channels are not);
//! - `insert`: a raw `INSERT INTO messages` of the same kind of row through the same pool,
//!   with the same concurrency (the floor);
//! - `history`: `GET /api/v1/channels/{id}/messages?before=<random>&limit=50` (50 messages;
//!   every body is read, one in 20 parsed and checked), timed twice: with the history cache
//!   off (`history_50_uncached`) and with it on after an untimed pass over the same pages
//!   (`history_50`);
//! - `healthz`: `GET /healthz` (the HTTP floor);
//! - context: `readyz` (one `SELECT 1`, no auth) and `GET /api/v1/users/@me` (auth + one query).
//!
//! Phases alternate over `BENCH_ROUNDS` rounds; each ratio is the median over rounds of
//! (API requests/s ÷ floor requests/s). Latencies (p50/p99, ms) are over all rounds.
//! Keys: `create_vs_insert_ratio` (one channel), `create_vs_insert_ratio_spread`,
//! `history_vs_healthz_ratio`. Targets: `create_vs_insert_ratio` ≥ 0.5, `history_vs_healthz_ratio` ≥ 0.3.
//! The database is dropped at the end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use copains_api::{ApiConfig, AppState};
use serde_json::{Value, json};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Phase {
    rps: f64,
    lat_ms: Vec<f64>,
}

/// Runs `n` operations with `conc` workers; `op(i)` must succeed.
async fn run<F, Fut>(n: usize, conc: usize, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut lat_ms = Vec::with_capacity(n);
    for t in tasks {
        lat_ms.extend(t.await.unwrap());
    }
    Phase {
        rps: n as f64 / start.elapsed().as_secs_f64(),
        lat_ms,
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    (v[i] * 1000.0).round() / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[tokio::main]
async fn main() {
    let n = env_num("BENCH_REQUESTS", 2000);
    let conc = env_num("BENCH_CONCURRENCY", 16);
    let rounds = env_num("BENCH_ROUNDS", 3).max(1);
    let pool_size = 16u32;
    let admin = std::env::var("COPAINS_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bench/results/messaging.json"
        )
        .into()
    });

    // A fresh database.
    let name = format!("copains_bench_{}", rand::random::<u32>());
    let admin_pool = copains_api::db::connect(&admin, 1).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin_pool)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{name}");
    let pool = copains_api::db::connect(&url, pool_size).await.unwrap();
    copains_api::db::migrate(&pool).await.unwrap();

    // The real router, in process.
    let signer =
        copains_wire::TokenSigner::from_pem(&copains_wire::TokenSigner::generate_pem().unwrap())
            .unwrap();
    let config = ApiConfig {
        auth_rate_burst: 1000,
        auth_rate_period: Duration::from_millis(1),
        ..ApiConfig::default()
    };
    let state = AppState::new(pool.clone(), signer, config, 1).unwrap();
    let app = copains_api::routes::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc * 2)
        .build()
        .unwrap();
    let api = format!("http://{addr}");

    // A user, a server, a text channel.
    let reg: Value = http
        .post(format!("{api}/api/v1/auth/register"))
        .json(&json!({"username": "bencher", "email": "bench@example.org", "password": "password-bencher"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reg["access_token"].as_str().unwrap().to_owned();
    let user_id: i64 = reg["user"]["id"].as_str().unwrap().parse().unwrap();
    let server: Value = http
        .post(format!("{api}/api/v1/servers"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let server_id: i64 = server["id"].as_str().unwrap().parse().unwrap();
    let ch: Value = http
        .post(format!("{api}/api/v1/servers/{server_id}/channels"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "kind": "text"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel: i64 = ch["id"].as_str().unwrap().parse().unwrap();
    let raw_channel = state.ids.next().0;
    // One channel per client for the spread variant.
    let mut spread = Vec::new();
    for k in 0..conc {
        let ch: Value = http
            .post(format!("{api}/api/v1/servers/{server_id}/channels"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("spread-{k}"), "kind": "text"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        spread.push(ch["id"].as_str().unwrap().parse::<i64>().unwrap());
    }
    let spread = Arc::new(spread);

    let create = {
        let (http, api, token) = (http.clone(), api.clone(), token.clone());
        move |i: usize| {
            let (http, api, token) = (http.clone(), api.clone(), token.clone());
            async move {
                let r = http
                    .post(format!("{api}/api/v1/channels/{channel}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("benchmark message number {i} with some words")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
            }
        }
    };
    let create_spread = {
        let (http, api, token, spread) = (http.clone(), api.clone(), token.clone(), spread.clone());
        move |i: usize| {
            let (http, api, token) = (http.clone(), api.clone(), token.clone());
            let ch = spread[i % spread.len()];
            async move {
                let r = http
                    .post(format!("{api}/api/v1/channels/{ch}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("benchmark message number {i} with some words")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let _ = r.bytes().await;
            }
        }
    };
    let insert = {
        let (pool, ids) = (pool.clone(), state.ids.clone());
        move |i: usize| {
            let (pool, ids) = (pool.clone(), ids.clone());
            async move {
                sqlx::query(
                    "INSERT INTO messages (id, channel_id, server_id, author_id, content)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ids.next().0)
                .bind(raw_channel)
                .bind(server_id)
                .bind(user_id)
                .bind(format!("benchmark message number {i} with some words"))
                .execute(&pool)
                .await
                .unwrap();
            }
        }
    };
    let healthz = {
        let (http, api) = (http.clone(), api.clone());
        move |_i: usize| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let r = http.get(format!("{api}/healthz")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        }
    };

    // Context floors: one database round trip without auth (`/readyz`), and an authenticated
    // request with one small query (`GET /api/v1/users/@me`).
    let readyz = {
        let (http, api) = (http.clone(), api.clone());
        move |_i: usize| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let r = http.get(format!("{api}/readyz")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        }
    };
    let me = {
        let (http, api, token) = (http.clone(), api.clone(), token.clone());
        move |_i: usize| {
            let (http, api, token) = (http.clone(), api.clone(), token.clone());
            async move {
                let r = http
                    .get(format!("{api}/api/v1/users/@me"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
            }
        }
    };

    // Warm-up (connections, caches), not timed.
    run(200, conc, create.clone()).await;
    run(200, conc, insert.clone()).await;
    run(200, conc, healthz.clone()).await;

    let (mut c_lat, mut i_lat, mut h_lat, mut z_lat) = (vec![], vec![], vec![], vec![]);
    let (mut c_rps, mut i_rps, mut h_rps, mut z_rps) = (vec![], vec![], vec![], vec![]);
    let (mut cv_i, mut hv_z) = (vec![], vec![]);
    let (mut s_lat, mut s_rps, mut sv_i) = (vec![], vec![], vec![]);
    let (mut r_rps, mut me_rps, mut hv_r) = (vec![], vec![], vec![]);
    let (mut hu_rps, mut hu_lat, mut huv_z, mut hit_rates) = (vec![], vec![], vec![], vec![]);
    let mut group_sizes = vec![];
    for round in 0..rounds {
        let statements0 = state.sends.statements();
        let c = run(n, conc, create.clone()).await;
        group_sizes.push(n as f64 / (state.sends.statements() - statements0).max(1) as f64);
        let i = run(n, conc, insert.clone()).await;
        let sp = run(n, conc, create_spread.clone()).await;
        // History pages at random points of what exists now.
        let ids: Arc<Vec<i64>> = Arc::new(
            sqlx::query_scalar("SELECT id FROM messages WHERE channel_id = $1 ORDER BY id")
                .bind(channel)
                .fetch_all(&pool)
                .await
                .unwrap(),
        );
        let history = {
            let (http, api, token, ids) = (http.clone(), api.clone(), token.clone(), ids.clone());
            move |k: usize| {
                let (http, api, token) = (http.clone(), api.clone(), token.clone());
                // Cursors at least 50 messages in, so every page is full.
                let span = ids.len().saturating_sub(51).max(1);
                let before = ids[51.min(ids.len() - 1) + (k * 7919) % span];
                async move {
                    let r = http
                        .get(format!(
                            "{api}/api/v1/channels/{channel}/messages?before={before}&limit=50"
                        ))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let body = r.bytes().await.unwrap();
                    // Every body is read; one in 20 is parsed and checked (50 messages), so the
                    // client's JSON parsing does not dominate what is measured.
                    if k.is_multiple_of(20) {
                        let v: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        assert_eq!(v.len(), 50);
                    }
                }
            }
        };
        // Without the history cache (every page read from PostgreSQL)…
        state.history.set_enabled(false);
        let hu = run(n, conc, history.clone()).await;
        // …and with it: an untimed pass reads every page of the phase once (members opening
        // the same channel), then the timed pass.
        state.history.set_enabled(true);
        run(n, conc, history.clone()).await;
        let (hits0, misses0) = state.history.stats();
        let h = run(n, conc, history).await;
        let (hits1, misses1) = state.history.stats();
        hit_rates
            .push((hits1 - hits0) as f64 / ((hits1 - hits0) + (misses1 - misses0)).max(1) as f64);
        hu_rps.push(hu.rps);
        hu_lat.extend(hu.lat_ms.iter().copied());
        let z = run(n, conc, healthz.clone()).await;
        let rz = run(n, conc, readyz.clone()).await;
        let mz = run(n, conc, me.clone()).await;
        hv_r.push(h.rps / rz.rps);
        r_rps.push(rz.rps);
        me_rps.push(mz.rps);
        println!(
            "round {round}: create {:.0}/s ({:.1} per insert) insert {:.0}/s create-spread {:.0}/s history {:.0}/s (uncached {:.0}/s) healthz {:.0}/s readyz {:.0}/s users/@me {:.0}/s",
            c.rps, group_sizes[round], i.rps, sp.rps, h.rps, hu.rps, z.rps, rz.rps, mz.rps
        );
        sv_i.push(sp.rps / i.rps);
        s_rps.push(sp.rps);
        s_lat.extend(sp.lat_ms);
        cv_i.push(c.rps / i.rps);
        hv_z.push(h.rps / z.rps);
        huv_z.push(hu.rps / z.rps);
        c_rps.push(c.rps);
        i_rps.push(i.rps);
        h_rps.push(h.rps);
        z_rps.push(z.rps);
        c_lat.extend(c.lat_ms);
        i_lat.extend(i.lat_ms);
        h_lat.extend(h.lat_ms);
        z_lat.extend(z.lat_ms);
    }

    let result = json!({
        "create_vs_insert_ratio": r3(median(cv_i.clone())),
        "history_vs_healthz_ratio": r3(median(hv_z.clone())),
        "create_vs_insert_ratio_spread": r3(median(sv_i.clone())),
        "history_vs_readyz_ratio": r3(median(hv_r.clone())),
        "history_uncached_vs_healthz_ratio": r3(median(huv_z.clone())),
        "history_cache_hit_rate": r3(median(hit_rates.clone())),
        "create_messages_per_insert_statement": r3(median(group_sizes.clone())),
        "targets": {"create_vs_insert_ratio": ">= 0.5", "history_vs_healthz_ratio": ">= 0.3"},
        "requests_per_second": {
            "create": r3(median(c_rps)), "insert": r3(median(i_rps)),
            "create_spread": r3(median(s_rps)),
            "readyz_one_db_round_trip": r3(median(r_rps)),
            "users_me_auth_plus_one_query": r3(median(me_rps)),
            "history_50": r3(median(h_rps)), "healthz": r3(median(z_rps)),
            "history_50_uncached": r3(median(hu_rps)),
        },
        "latency_ms": {
            "create": {"p50": pct(&mut c_lat, 0.5), "p99": pct(&mut c_lat, 0.99)},
            "insert": {"p50": pct(&mut i_lat, 0.5), "p99": pct(&mut i_lat, 0.99)},
            "create_spread": {"p50": pct(&mut s_lat, 0.5), "p99": pct(&mut s_lat, 0.99)},
            "history_50": {"p50": pct(&mut h_lat, 0.5), "p99": pct(&mut h_lat, 0.99)},
            "history_50_uncached": {"p50": pct(&mut hu_lat, 0.5), "p99": pct(&mut hu_lat, 0.99)},
            "healthz": {"p50": pct(&mut z_lat, 0.5), "p99": pct(&mut z_lat, 0.99)},
        },
        "per_round": {"history_vs_readyz": hv_r, "history_uncached_vs_healthz": huv_z, "history_cache_hit_rate": hit_rates, "create_messages_per_insert_statement": group_sizes, "create_vs_insert": cv_i, "create_spread_vs_insert": sv_i, "history_vs_healthz": hv_z},
        "notes": "create_vs_insert_ratio: every create goes to ONE channel (worst case for \
                  ordering: inserts into one channel take the per-channel head lock until their \
                  commit is durable, which is what makes `after` pagination gap-free; concurrent \
                  sends to a channel are grouped by a per-channel worker into one multi-row insert \
                  and one commit, see api/src/messaging/send_batch.rs; messages per statement: \
                  create_messages_per_insert_statement); create_vs_insert_ratio_spread: the same \
                  requests spread over one channel per client (one client per channel: nothing to \
                  group). The raw INSERT floor (one row per statement, synchronous commit) has no \
                  HTTP, no auth, no permission check, no ordering lock, no event. Send and history \
                  resolve the place and permissions through the per-node cache (1 s, invalidated by \
                  permission events), so after the first request of each second they cost no \
                  permission query. Context floors: readyz = one `SELECT 1` round trip without \
                  auth; users_me = bearer auth (cached) plus one small query; \
                  history_vs_readyz_ratio compares a history page with that single round trip. history_vs_healthz_ratio: pages served \
                  by the per-node history cache (docs/messaging.md) after an untimed pass read each \
                  page of the phase once, as when many members open the same channel (share of \
                  range reads answered from memory: history_cache_hit_rate); \
                  history_uncached_vs_healthz_ratio: the same pages with the cache off, one \
                  PostgreSQL query per page.",
        "method": format!(
            "one process: the real router on 127.0.0.1 over HTTP/1.1 keep-alive (reqwest), \
             {conc} concurrent clients, {n} requests per phase, {rounds} alternating rounds after a \
             warm-up, one PostgreSQL pool of {pool_size} shared by the API and the raw INSERTs; \
             ratios are medians over rounds; client and server share the machine's cores"
        ),
        "rerun": "cargo run --release -p copains-api --example messaging_bench",
        "measured_at": chrono::Utc::now().to_rfc3339(),
    });
    let text = serde_json::to_string_pretty(&result).unwrap();
    println!("{text}");
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, text + "\n").unwrap();
    println!("wrote {out}");

    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin_pool)
        .await;
}
