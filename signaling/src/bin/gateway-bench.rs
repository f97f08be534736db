//! Gateway benchmark: idle-connection memory and fan-out latency against a floor.
//!
//! `gateway-bench [--conns 10000] [--messages 30] [--out bench/results/gateway.json]`
//!
//! The load generator (this process) spawns the server as a child process (this binary with
//! `--serve gateway|floor`) so that the server's RSS is measured alone, from /proc:
//!
//! 1. gateway: `--conns` clients connect and identify (one user each, every one a member of
//!    one large server; the first 1,000 also see a smaller channel). RSS per idle connection =
//!    (RSS after − RSS before the connections) / connections.
//! 2. fan-out: `POST /publish` makes the server publish one `message_create` on its bus
//!    (what the api does after its insert); the latency is from sending that request to the
//!    last client receiving the message, for 1,000 and for all members; p50 / p99 over
//!    `--messages` messages sent one after the other.
//! 3. floor: the same clients against a bare axum/tokio WebSocket server that writes one
//!    pre-serialized frame to every socket (a tokio broadcast channel), same measurement.
//!
//! `fanout_vs_floor_ratio` = delivered events/s of the gateway ÷ of the floor, at the largest
//! fan-out. Raise the fd limit first (`ulimit -n 30000`): each side holds one fd per client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message as AxMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::routing::{get, post};
use copains_signaling::bus::{EventBus, InProcessBus};
use copains_signaling::directory::{MemoryDirectory, Visibility, VisibleChannel};
use copains_signaling::presence::MemoryPresence;
use copains_signaling::server::{Gateway, GatewayConfig, GatewayState};
use copains_wire::events::{Audience, BusEvent, Event};
use copains_wire::token::ISSUER;
use copains_wire::{AccessClaims, Id, TokenSigner};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SERVER: Id = Id(1);
const BIG_CHANNEL: Id = Id(2);
const SMALL_CHANNEL: Id = Id(3);
const SMALL_GROUP: usize = 1000;
const MAX_MESSAGES: usize = 1024;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(kind) = arg("--serve") {
        rt.block_on(serve(kind));
    } else {
        rt.block_on(drive());
    }
}

// ------------------------------------------------------------------ server side

#[derive(Deserialize)]
struct PublishQuery {
    n: u64,
    group: String,
}

fn payload(n: u64) -> serde_json::Value {
    serde_json::json!({
        "id": (1_000_000 + n).to_string(),
        "channel_id": "2",
        "author": {"id": "42", "username": "bench"},
        "content": "hello everyone, this is a benchmark message of a typical length",
        "n": n
    })
}

async fn serve(kind: String) {
    let conns: usize = arg("--conns")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let pem = std::fs::read_to_string(arg("--key").expect("--key")).unwrap();
    let signer = TokenSigner::from_pem(&pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = if kind == "gateway" {
        let dir = Arc::new(MemoryDirectory::new());
        for u in 1..=conns as i64 {
            let mut channels = vec![VisibleChannel {
                id: BIG_CHANNEL,
                server_id: SERVER,
            }];
            if u as usize <= SMALL_GROUP {
                channels.push(VisibleChannel {
                    id: SMALL_CHANNEL,
                    server_id: SERVER,
                });
            }
            dir.set_visibility(
                Id(u),
                Visibility {
                    servers: vec![SERVER],
                    large_servers: vec![SERVER],
                    channels,
                    ..Default::default()
                },
            );
        }
        let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
        let mut config = GatewayConfig {
            max_connections_per_user: 4,
            ..Default::default()
        };
        config.session.heartbeat_interval = Duration::from_secs(600);
        config.session.identify_timeout = Duration::from_secs(60);
        let gw = Gateway::start(GatewayState {
            verifier: signer.verifier().unwrap(),
            bus: bus.clone(),
            directory: dir,
            presence: Arc::new(MemoryPresence::new()),
            config,
        });
        let publish = post(move |Query(q): Query<PublishQuery>| {
            let bus = bus.clone();
            async move {
                let channel = if q.group == "small" {
                    SMALL_CHANNEL
                } else {
                    BIG_CHANNEL
                };
                let ev = BusEvent::to(
                    Audience::Channel {
                        server_id: Some(SERVER),
                        channel_id: channel,
                    },
                    Event::MessageCreate {
                        message: payload(q.n),
                    },
                );
                bus.publish(&ev).await.unwrap();
                "ok"
            }
        });
        let router = gw.router().route("/publish", publish);
        std::mem::forget(gw); // lives until the process is killed
        router
    } else {
        let floor = Arc::new(Floor {
            all: broadcast::channel(64).0,
            small: broadcast::channel(64).0,
            count: AtomicUsize::new(0),
        });
        Router::new()
            .route("/gateway", get(floor_upgrade))
            .route(
                "/publish",
                post(|State(f): State<Arc<Floor>>, Query(q): Query<PublishQuery>| async move {
                    // Serialized once, written to every socket.
                    let frame = serde_json::json!({"op": "dispatch", "s": 1, "t": "message_create", "d": {"message": payload(q.n)}});
                    let frame = Utf8Bytes::from(frame.to_string());
                    let tx = if q.group == "small" { &f.small } else { &f.all };
                    let _ = tx.send(frame);
                    "ok"
                }),
            )
            .with_state(floor)
    };
    println!("PORT {port}");
    std::io::stdout().flush().unwrap();
    axum::serve(listener, app).await.unwrap();
}

struct Floor {
    all: broadcast::Sender<Utf8Bytes>,
    small: broadcast::Sender<Utf8Bytes>,
    count: AtomicUsize,
}

async fn floor_upgrade(
    State(f): State<Arc<Floor>>,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(16 * 1024)
        .on_upgrade(move |s| floor_conn(f, s))
}

async fn floor_conn(f: Arc<Floor>, mut ws: WebSocket) {
    let idx = f.count.fetch_add(1, Ordering::Relaxed);
    let mut all = f.all.subscribe();
    let mut small = if idx < SMALL_GROUP {
        Some(f.small.subscribe())
    } else {
        None
    };
    let _ = ws
        .send(AxMessage::Text(Utf8Bytes::from_static(
            r#"{"op":"hello","heartbeat_interval_ms":600000}"#,
        )))
        .await;
    // identify → ready, like the gateway
    let _ = ws.recv().await;
    let _ = ws
        .send(AxMessage::Text(Utf8Bytes::from_static(
            r#"{"op":"ready","session_id":"x","d":{}}"#,
        )))
        .await;
    loop {
        let frame = tokio::select! {
            r = all.recv() => r,
            r = async { match &mut small { Some(s) => s.recv().await, None => std::future::pending().await } } => r,
            m = ws.recv() => match m { Some(Ok(_)) => continue, _ => return },
        };
        let Ok(frame) = frame else { continue };
        if ws.send(AxMessage::Text(frame)).await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------ load generator

struct Counters {
    delivered: Vec<AtomicUsize>,
    last_ns: Vec<AtomicU64>,
    target: AtomicUsize,
    done: Notify,
    epoch: Instant,
}

fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

fn parse_n(text: &str) -> Option<usize> {
    let i = text.find("\"n\":")? + 4;
    let digits: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn client(
    port: u16,
    token: String,
    c: Arc<Counters>,
    ready: Arc<AtomicUsize>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = loop {
        match tokio_tungstenite::connect_async_with_config(
            format!("ws://127.0.0.1:{port}/gateway"),
            Some(config),
            false,
        )
        .await
        {
            Ok(x) => break x,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let _ = ws.next().await; // hello
    ws.send(Message::text(format!(
        r#"{{"op":"identify","token":"{token}"}}"#
    )))
    .await
    .unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => break,
            Some(Ok(_)) => continue,
            other => panic!("no ready: {other:?}"),
        }
    }
    ready.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else { continue };
        if !t.contains("message_create") {
            continue;
        }
        let Some(n) = parse_n(&t) else { continue };
        if n >= MAX_MESSAGES {
            continue;
        }
        let now = c.epoch.elapsed().as_nanos() as u64;
        c.last_ns[n].fetch_max(now, Ordering::Relaxed);
        if c.delivered[n].fetch_add(1, Ordering::Relaxed) + 1 == c.target.load(Ordering::Relaxed) {
            c.done.notify_one();
        }
    }
}

async fn post_publish(port: u16, n: usize, group: &str) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "POST /publish?n={n}&group={group} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

#[derive(serde::Serialize, Clone, Copy)]
struct Fanout {
    members: usize,
    messages: usize,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    delivered_events_per_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn fanout(
    port: u16,
    c: &Arc<Counters>,
    group: &str,
    members: usize,
    messages: usize,
    first: usize,
) -> Fanout {
    let mut lat = Vec::with_capacity(messages);
    for k in 0..messages {
        let n = first + k;
        c.target.store(members, Ordering::Relaxed);
        let t0 = c.epoch.elapsed().as_nanos() as u64;
        post_publish(port, n, group).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while c.delivered[n].load(Ordering::Relaxed) < members {
            if tokio::time::timeout_at(deadline, c.done.notified())
                .await
                .is_err()
            {
                panic!(
                    "message {n}: only {} of {members} delivered in 30 s",
                    c.delivered[n].load(Ordering::Relaxed)
                );
            }
        }
        let last = c.last_ns[n].load(Ordering::Relaxed);
        lat.push((last.saturating_sub(t0)) as f64 / 1e6);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    lat.sort_by(|a, b| a.total_cmp(b));
    Fanout {
        members,
        messages,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        mean_ms: mean,
        delivered_events_per_s: members as f64 / (mean / 1000.0),
    }
}

struct Run {
    rss_before: u64,
    rss_after: u64,
    connect_s: f64,
    small: Fanout,
    big: Fanout,
}

async fn run(
    kind: &str,
    conns: usize,
    messages: usize,
    key_path: &str,
    signer: &TokenSigner,
) -> Run {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--serve",
            kind,
            "--conns",
            &conns.to_string(),
            "--key",
            key_path,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_bytes(pid);

    let c = Arc::new(Counters {
        delivered: (0..MAX_MESSAGES).map(|_| AtomicUsize::new(0)).collect(),
        last_ns: (0..MAX_MESSAGES).map(|_| AtomicU64::new(0)).collect(),
        target: AtomicUsize::new(usize::MAX),
        done: Notify::new(),
        epoch: Instant::now(),
    });
    let ready = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(256));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns);
    for u in 1..=conns as i64 {
        let token = signer
            .sign(&AccessClaims {
                sub: Id(u),
                sid: Id(u),
                iat: now,
                exp: now + 3600,
                iss: ISSUER.into(),
            })
            .unwrap();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(client(
            port,
            token,
            c.clone(),
            ready.clone(),
            permit,
        )));
    }
    while ready.load(Ordering::Relaxed) < conns {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_bytes(pid);
    eprintln!(
        "{kind}: {conns} connections identified in {connect_s:.1} s; RSS {} → {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );

    // Warm-up message, not measured.
    let _ = fanout(port, &c, "all", conns, 1, 0).await;
    let small = fanout(port, &c, "small", SMALL_GROUP.min(conns), messages, 1).await;
    let big = fanout(port, &c, "all", conns, messages, 1 + messages).await;
    eprintln!(
        "{kind}: fan-out {} p50 {:.2} ms p99 {:.2} ms; {} p50 {:.2} ms p99 {:.2} ms",
        small.members, small.p50_ms, small.p99_ms, big.members, big.p50_ms, big.p99_ms
    );
    for t in &tasks {
        t.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
    Run {
        rss_before,
        rss_after,
        connect_s,
        small,
        big,
    }
}

async fn drive() {
    let conns: usize = arg("--conns")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let messages: usize = arg("--messages").and_then(|s| s.parse().ok()).unwrap_or(30);
    let out = arg("--out").unwrap_or_else(|| "bench/results/gateway.json".into());
    assert!(1 + 2 * messages < MAX_MESSAGES);
    let pem = TokenSigner::generate_pem().unwrap();
    let key_path = std::env::temp_dir().join(format!("gateway-bench-{}.pem", std::process::id()));
    std::fs::write(&key_path, &pem).unwrap();
    let signer = TokenSigner::from_pem(&pem).unwrap();
    let key = key_path.to_string_lossy().into_owned();

    let gw = run("gateway", conns, messages, &key, &signer).await;
    let floor = run("floor", conns, messages, &key, &signer).await;
    let _ = std::fs::remove_file(&key_path);

    let per_conn = |r: &Run| r.rss_after.saturating_sub(r.rss_before) / conns as u64;
    let result = serde_json::json!({
        "connections": conns,
        "rss_per_idle_conn_bytes": per_conn(&gw),
        "rss_before_bytes": gw.rss_before,
        "rss_after_bytes": gw.rss_after,
        "connect_and_identify_s": gw.connect_s,
        "floor_rss_per_idle_conn_bytes": per_conn(&floor),
        "fanout": {
            "gateway": [gw.small, gw.big],
            "floor": [floor.small, floor.big],
        },
        "fanout_vs_floor_ratio": gw.big.delivered_events_per_s / floor.big.delivered_events_per_s,
        "fanout_vs_floor_ratio_1000": gw.small.delivered_events_per_s / floor.small.delivered_events_per_s,
        "notes": "latency = from sending POST /publish (the api's publish after its insert) to the last client receiving the message; server and load generator share the machine's 2 cores; idle connections do not heartbeat during the run (interval set to 600 s); every member of one large server (member presence only to subscribers)",
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
}
