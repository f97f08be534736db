//! End-to-end tests of the gateway over real sockets on 127.0.0.1, with tokio-tungstenite
//! clients, and a real Redis when one is reachable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use copains_signaling::bus::{EventBus, InProcessBus, RedisBus};
use copains_signaling::directory::{MemoryDirectory, Visibility, VisibleChannel};
use copains_signaling::presence::{MemoryPresence, PresenceStore, RedisPresence};
use copains_signaling::server::{Gateway, GatewayConfig, GatewayState};
use copains_wire::events::{Audience, BusEvent, Event};
use copains_wire::token::ISSUER;
use copains_wire::{AccessClaims, Id, TokenSigner};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SERVER: Id = Id(100);
const PUBLIC: Id = Id(101);
const SECRET: Id = Id(102);

struct Node {
    addr: SocketAddr,
    gw: Gateway,
    _server: tokio::task::JoinHandle<()>,
}

async fn start_node(
    bus: Arc<dyn EventBus>,
    dir: Arc<MemoryDirectory>,
    presence: Arc<dyn PresenceStore>,
    signer: &TokenSigner,
    config: GatewayConfig,
) -> Node {
    let state = GatewayState {
        verifier: signer.verifier().unwrap(),
        bus,
        directory: dir,
        presence,
        config,
    };
    let gw = Gateway::start(state);
    let app = gw.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Node {
        addr,
        gw,
        _server: server,
    }
}

fn signer() -> TokenSigner {
    TokenSigner::from_pem(&TokenSigner::generate_pem().unwrap()).unwrap()
}

fn token(signer: &TokenSigner, user: Id, sid: Id, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    signer
        .sign(&AccessClaims {
            sub: user,
            sid,
            iat: now,
            exp: now + exp_in,
            iss: ISSUER.into(),
        })
        .unwrap()
}

/// Users 1 (sees both channels) and 2 (sees only the public one), in one server.
fn directory() -> Arc<MemoryDirectory> {
    let d = Arc::new(MemoryDirectory::new());
    d.set_visibility(
        Id(1),
        Visibility {
            servers: vec![SERVER],
            channels: vec![
                VisibleChannel {
                    id: PUBLIC,
                    server_id: SERVER,
                },
                VisibleChannel {
                    id: SECRET,
                    server_id: SERVER,
                },
            ],
            friends: vec![Id(2)],
            ..Default::default()
        },
    );
    d.set_visibility(
        Id(2),
        Visibility {
            servers: vec![SERVER],
            channels: vec![VisibleChannel {
                id: PUBLIC,
                server_id: SERVER,
            }],
            friends: vec![Id(1)],
            ..Default::default()
        },
    );
    d
}

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/gateway"))
        .await
        .unwrap();
    ws
}

enum Got {
    Frame(Value),
    Closed(Option<u16>),
}

async fn next(ws: &mut Ws, wait: Duration) -> Option<Got> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let m = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(m) => m,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                return Some(Got::Frame(serde_json::from_str(&t).unwrap()));
            }
            Some(Ok(Message::Close(f))) => return Some(Got::Closed(f.map(|f| u16::from(f.code)))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                eprintln!("client read error: {e}");
                return Some(Got::Closed(None));
            }
            None => return Some(Got::Closed(None)),
        }
    }
}

async fn frame(ws: &mut Ws) -> Value {
    match next(ws, Duration::from_secs(5)).await {
        Some(Got::Frame(v)) => v,
        Some(Got::Closed(c)) => panic!("closed with {c:?}"),
        None => panic!("no frame within 5 s"),
    }
}

async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match next(ws, Duration::from_secs(5)).await {
            Some(Got::Frame(_)) => continue,
            Some(Got::Closed(c)) => return c,
            None => panic!("not closed within 5 s"),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Connects, identifies and returns the socket and the ready frame.
async fn identify(addr: SocketAddr, tok: &str) -> (Ws, Value) {
    let mut ws = connect(addr).await;
    let hello = frame(&mut ws).await;
    assert_eq!(hello["op"], "hello");
    send(&mut ws, json!({"op": "identify", "token": tok})).await;
    let ready = frame(&mut ws).await;
    assert_eq!(ready["op"], "ready", "{ready}");
    (ws, ready)
}

/// The next dispatch of type `t` (skipping others, e.g. presence).
async fn dispatch_of(ws: &mut Ws, t: &str) -> Value {
    loop {
        let f = frame(ws).await;
        if f["op"] == "dispatch" && f["t"] == t {
            return f;
        }
    }
}

fn message(channel: Id, n: u64) -> BusEvent {
    BusEvent::to(
        Audience::Channel {
            server_id: Some(SERVER),
            channel_id: channel,
        },
        Event::MessageCreate {
            message: json!({"id": n.to_string(), "channel_id": channel, "n": n}),
        },
    )
}

fn memory_node_parts() -> (Arc<dyn EventBus>, Arc<dyn PresenceStore>) {
    (
        Arc::new(InProcessBus::new()),
        Arc::new(MemoryPresence::new()),
    )
}

#[tokio::test]
async fn bad_expired_and_revoked_tokens_are_closed_with_4004() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let dir = directory();
    let node = start_node(bus, dir.clone(), pres, &s, GatewayConfig::default()).await;

    for tok in [
        "garbage".to_owned(),
        token(&signer(), Id(1), Id(5), 600),
        token(&s, Id(1), Id(5), -120),
    ] {
        let mut ws = connect(node.addr).await;
        assert_eq!(frame(&mut ws).await["op"], "hello");
        send(&mut ws, json!({"op": "identify", "token": tok})).await;
        assert_eq!(close_code(&mut ws).await, Some(4004));
    }
    dir.revoke_session(Id(6));
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    send(
        &mut ws,
        json!({"op": "identify", "token": token(&s, Id(1), Id(6), 600)}),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, Some(4004));
    // A validly signed token whose session belongs to another user: 4004 (the owner's own
    // token for that session still identifies).
    dir.set_session_owner(Id(8), Id(2));
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    send(
        &mut ws,
        json!({"op": "identify", "token": token(&s, Id(1), Id(8), 600)}),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, Some(4004));
    let (_owner_ws, _ready) = identify(node.addr, &token(&s, Id(2), Id(8), 600)).await;

    // Ops before identify: 4003; unknown op: 4001; not JSON: 4002; identify twice: 4005.
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    send(&mut ws, json!({"op": "typing_start", "channel_id": "101"})).await;
    assert_eq!(close_code(&mut ws).await, Some(4003));
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    send(&mut ws, json!({"op": "fly"})).await;
    assert_eq!(close_code(&mut ws).await, Some(4001));
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    ws.send(Message::text("{nope")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4002));
    let (mut ws, _) = identify(node.addr, &token(&s, Id(1), Id(7), 600)).await;
    send(
        &mut ws,
        json!({"op": "identify", "token": token(&s, Id(1), Id(7), 600)}),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, Some(4005));
}

#[tokio::test]
async fn a_flood_of_websocket_pings_is_closed_with_4008() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus, directory(), pres, &s, GatewayConfig::default()).await;
    // A few pings are fine (each answered with a pong)...
    let (mut calm, _) = identify(node.addr, &token(&s, Id(1), Id(20), 600)).await;
    for _ in 0..5 {
        calm.send(Message::Ping(vec![1].into())).await.unwrap();
    }
    // ...a flood beyond the op rate limit (burst 60) is not.
    let (mut ws, _) = identify(node.addr, &token(&s, Id(2), Id(21), 600)).await;
    for _ in 0..300 {
        if ws.send(Message::Ping(vec![1].into())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(4008));
    send(&mut calm, json!({"op": "heartbeat", "seq": 0})).await;
    while frame(&mut calm).await["op"] != "heartbeat_ack" {}
}

#[tokio::test]
async fn revoking_the_login_session_closes_its_connections_with_4012() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus.clone(), directory(), pres, &s, GatewayConfig::default()).await;
    let (mut ws, _) = identify(node.addr, &token(&s, Id(1), Id(8), 600)).await;
    let (mut other, _) = identify(node.addr, &token(&s, Id(1), Id(9), 600)).await;
    bus.publish(&BusEvent::to(
        Audience::User(Id(1)),
        Event::SessionRevoked {
            user_id: Id(1),
            session_id: Id(8),
        },
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4012));
    // The other login session of the same user is untouched.
    bus.publish(&message(PUBLIC, 1)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut other, "message_create").await["d"]["message"]["n"],
        1
    );
}

#[tokio::test]
async fn member_without_view_channel_receives_nothing_of_it() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus.clone(), directory(), pres, &s, GatewayConfig::default()).await;
    let (mut a, _) = identify(node.addr, &token(&s, Id(1), Id(11), 600)).await;
    let (mut b, _) = identify(node.addr, &token(&s, Id(2), Id(12), 600)).await;
    bus.publish(&message(SECRET, 1)).await.unwrap();
    bus.publish(&BusEvent::to(
        Audience::Channel {
            server_id: Some(SERVER),
            channel_id: SECRET,
        },
        Event::TypingStart {
            channel_id: SECRET,
            server_id: Some(SERVER),
            user_id: Id(1),
            timestamp_ms: u64::MAX / 4,
            expires_at_ms: u64::MAX / 2,
        },
    ))
    .await
    .unwrap();
    bus.publish(&message(PUBLIC, 2)).await.unwrap();
    // b: everything it gets until the sentinel is not about the secret channel.
    loop {
        let f = frame(&mut b).await;
        assert_ne!(
            f["d"]["message"]["channel_id"],
            SECRET.to_string(),
            "leaked: {f}"
        );
        assert_ne!(f["d"]["channel_id"], SECRET.to_string(), "leaked: {f}");
        if f["t"] == "message_create" {
            assert_eq!(f["d"]["message"]["n"], 2);
            break;
        }
    }
    // a sees both, in order.
    assert_eq!(
        dispatch_of(&mut a, "message_create").await["d"]["message"]["n"],
        1
    );
    assert_eq!(
        dispatch_of(&mut a, "message_create").await["d"]["message"]["n"],
        2
    );

    // Typing from b in the public channel reaches a (not b itself), within the scope rules.
    send(&mut b, json!({"op": "typing_start", "channel_id": PUBLIC})).await;
    let t = dispatch_of(&mut a, "typing_start").await;
    assert_eq!(t["d"]["user_id"], "2");
    assert_eq!(
        t["d"]["expires_at_ms"].as_u64().unwrap() - t["d"]["timestamp_ms"].as_u64().unwrap(),
        10_000
    );
    // Typing from b into the secret channel is dropped silently.
    send(&mut b, json!({"op": "typing_start", "channel_id": SECRET})).await;
    bus.publish(&message(PUBLIC, 3)).await.unwrap();
    loop {
        let f = frame(&mut a).await;
        assert_ne!(
            f["t"], "typing_start",
            "typing into an invisible channel was relayed: {f}"
        );
        if f["t"] == "message_create" {
            break;
        }
    }
}

#[tokio::test]
async fn scope_change_is_applied_before_later_events() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let dir = directory();
    let node = start_node(bus.clone(), dir.clone(), pres, &s, GatewayConfig::default()).await;
    let (mut b, _) = identify(node.addr, &token(&s, Id(2), Id(13), 600)).await;
    // b is granted the secret channel.
    dir.set_visibility(
        Id(2),
        Visibility {
            servers: vec![SERVER],
            channels: vec![
                VisibleChannel {
                    id: PUBLIC,
                    server_id: SERVER,
                },
                VisibleChannel {
                    id: SECRET,
                    server_id: SERVER,
                },
            ],
            ..Default::default()
        },
    );
    bus.publish(&BusEvent::to(
        Audience::User(Id(2)),
        Event::ScopeChanged { user_id: Id(2) },
    ))
    .await
    .unwrap();
    bus.publish(&message(SECRET, 7)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut b, "message_create").await["d"]["message"]["n"],
        7
    );
    // …and loses the whole server.
    dir.set_visibility(Id(2), Visibility::default());
    bus.publish(&BusEvent::to(
        Audience::User(Id(2)),
        Event::ScopeChanged { user_id: Id(2) },
    ))
    .await
    .unwrap();
    bus.publish(&message(SECRET, 8)).await.unwrap();
    bus.publish(&BusEvent::to(
        Audience::User(Id(2)),
        Event::ReadStateUpdate {
            channel_id: PUBLIC,
            last_read_id: Id(1),
        },
    ))
    .await
    .unwrap();
    loop {
        let f = frame(&mut b).await;
        assert_ne!(
            f["t"], "message_create",
            "delivered after losing the channel: {f}"
        );
        if f["t"] == "read_state_update" {
            break;
        }
    }
}

#[tokio::test]
async fn resume_after_a_dropped_connection_replays_every_missed_event_once() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus.clone(), directory(), pres, &s, GatewayConfig::default()).await;
    let tok = token(&s, Id(1), Id(21), 600);
    let (mut ws, ready) = identify(node.addr, &tok).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    bus.publish(&message(PUBLIC, 1)).await.unwrap();
    let f = dispatch_of(&mut ws, "message_create").await;
    let last_seq = f["s"].as_u64().unwrap();
    // Drop the TCP connection without a close frame.
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while node
        .gw
        .hub()
        .find(&session_id)
        .is_none_or(|h| h.lock().detached_at().is_none())
    {
        assert!(Instant::now() < deadline, "server never noticed the drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 2..=50 {
        bus.publish(&message(PUBLIC, n)).await.unwrap();
    }
    let mut ws = connect(node.addr).await;
    assert_eq!(frame(&mut ws).await["op"], "hello");
    send(
        &mut ws,
        json!({"op": "resume", "token": tok, "session_id": session_id, "seq": last_seq}),
    )
    .await;
    let mut seqs = Vec::new();
    let mut ns = Vec::new();
    loop {
        let f = frame(&mut ws).await;
        if f["op"] == "resumed" {
            break;
        }
        assert_eq!(f["op"], "dispatch", "{f}");
        seqs.push(f["s"].as_u64().unwrap());
        if f["t"] == "message_create" {
            ns.push(f["d"]["message"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(
        ns,
        (2..=50).collect::<Vec<_>>(),
        "missed or duplicated messages"
    );
    let expected: Vec<u64> = (last_seq + 1..=last_seq + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "sequence numbers not contiguous");
    // Live delivery continues with the next sequence number.
    bus.publish(&message(PUBLIC, 51)).await.unwrap();
    let f = dispatch_of(&mut ws, "message_create").await;
    assert_eq!(f["d"]["message"]["n"], 51);
    assert!(f["s"].as_u64().unwrap() > *seqs.last().unwrap());

    // A resume of an unknown session, or with someone else's token, gets invalid_session.
    let mut other = connect(node.addr).await;
    frame(&mut other).await;
    let stranger = token(&s, Id(2), Id(22), 600);
    send(
        &mut other,
        json!({"op": "resume", "token": stranger, "session_id": session_id, "seq": 0}),
    )
    .await;
    assert_eq!(
        frame(&mut other).await,
        json!({"op": "invalid_session", "resumable": false})
    );
    // …and may identify afterwards on the same connection.
    send(&mut other, json!({"op": "identify", "token": stranger})).await;
    assert_eq!(frame(&mut other).await["op"], "ready");
}

#[tokio::test]
async fn slow_consumer_is_cut_off_while_others_keep_receiving() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let mut config = GatewayConfig::default();
    config.session.outbound_max_frames = 64;
    config.session.replay_max_events = 100;
    let node = start_node(bus.clone(), directory(), pres, &s, config).await;
    let (slow, slow_ready) = identify(node.addr, &token(&s, Id(1), Id(31), 600)).await;
    let slow_session = slow_ready["session_id"].as_str().unwrap().to_owned();
    let (mut fast, _) = identify(node.addr, &token(&s, Id(2), Id(32), 600)).await;
    let filler = "x".repeat(8 * 1024);
    let total = 6000u64; // ~48 MiB: more than the loopback socket buffers can hold
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 1..=total {
                let ev = BusEvent::to(
                    Audience::Channel {
                        server_id: Some(SERVER),
                        channel_id: PUBLIC,
                    },
                    Event::MessageCreate {
                        message: json!({"n": n, "filler": filler}),
                    },
                );
                bus.publish(&ev).await.unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut expect = 1;
    while expect <= total {
        let f = dispatch_of(&mut fast, "message_create").await;
        assert_eq!(
            f["d"]["message"]["n"], expect,
            "the fast client lost or reordered an event"
        );
        expect += 1;
    }
    publisher.await.unwrap();
    // The slow one was detached with a resumable close (4011) on the server side.
    let h = node
        .gw
        .hub()
        .find(&slow_session)
        .expect("slow session kept for resume");
    let (detached, resumable) = {
        let st = h.lock();
        (st.detached_at().is_some(), st.is_resumable())
    };
    assert!(detached, "the slow consumer was not cut off");
    assert!(resumable, "a slow consumer must be able to resume");
    drop(slow);
}

#[tokio::test]
async fn oversized_frame_gets_1009() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus, directory(), pres, &s, GatewayConfig::default()).await;
    let (mut ws, _) = identify(node.addr, &token(&s, Id(1), Id(41), 600)).await;
    let big = json!({"op": "heartbeat", "seq": 0, "pad": "y".repeat(17 * 1024)});
    send(&mut ws, big).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    // Before identify too.
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    ws.send(Message::text("z".repeat(20 * 1024))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    // Far beyond the limit the connection is cut (1009 if the client reads it in time).
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    let _ = ws.send(Message::text("z".repeat(1024 * 1024))).await;
    assert!(matches!(close_code(&mut ws).await, Some(1009) | None));
}

#[tokio::test]
async fn origin_allow_list_connection_cap_and_graceful_shutdown() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let config = GatewayConfig {
        allowed_origins: Some(vec!["https://chat.example.org".into()]),
        max_connections_per_user: 2,
        max_connections: 4,
        ..Default::default()
    };
    let node = start_node(bus, directory(), pres, &s, config).await;
    let mut req = format!("ws://{}/gateway", node.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = format!("ws://{}/gateway", node.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://chat.example.org".parse().unwrap());
    let (mut ok, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(frame(&mut ok).await["op"], "hello");

    let tok = token(&s, Id(1), Id(51), 600);
    let (mut c1, _) = identify(node.addr, &tok).await;
    let (mut c2, _) = identify(node.addr, &tok).await;
    let mut c3 = connect(node.addr).await;
    frame(&mut c3).await;
    send(&mut c3, json!({"op": "identify", "token": tok})).await;
    assert_eq!(close_code(&mut c3).await, Some(4010));
    // `ok`, c1 and c2 are live (c3 may still be closing): a 5th connection is refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.gw.live_connections() > 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _c4 = connect(node.addr).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/gateway", node.addr))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");

    node.gw.shutdown(Duration::from_secs(3)).await;
    for ws in [&mut c1, &mut c2] {
        let mut saw_reconnect = false;
        let code = loop {
            match next(ws, Duration::from_secs(5)).await {
                Some(Got::Frame(f)) => saw_reconnect |= f["op"] == "reconnect",
                Some(Got::Closed(c)) => break c,
                None => panic!("not closed"),
            }
        };
        assert!(saw_reconnect);
        assert_eq!(code, Some(1001));
    }
    assert_eq!(node.gw.live_connections(), 0);
}

#[tokio::test]
async fn heartbeat_is_acked_and_missing_heartbeats_time_out() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let mut config = GatewayConfig::default();
    config.session.heartbeat_interval = Duration::from_millis(300);
    let node = start_node(bus, directory(), pres, &s, config).await;
    let (mut ws, _) = identify(node.addr, &token(&s, Id(1), Id(61), 600)).await;
    send(&mut ws, json!({"op": "heartbeat", "seq": 0})).await;
    loop {
        if frame(&mut ws).await["op"] == "heartbeat_ack" {
            break;
        }
    }
    let started = Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(4009));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

// ---------------------------------------------------------------- Redis

fn redis_reachable(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// The Redis of the multi-node tests: `COPAINS_TEST_REDIS_URL` when set (scripts/test.sh sets
/// it, starting a throwaway Redis when none runs — so under the script these tests always run),
/// else 127.0.0.1:6379 if something answers there; otherwise the test is skipped, saying so.
fn test_redis(what: &str) -> Option<String> {
    match std::env::var("COPAINS_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if redis_reachable(6379) => Some("redis://127.0.0.1:6379".to_owned()),
        Err(_) => {
            println!(
                "NOTICE: no Redis (COPAINS_TEST_REDIS_URL unset, nothing on 127.0.0.1:6379), skipping {what}"
            );
            None
        }
    }
}

fn prefix() -> String {
    format!("copains-test-{:016x}", rand::random::<u64>())
}

async fn redis_node(url: &str, prefix: &str, dir: Arc<MemoryDirectory>, s: &TokenSigner) -> Node {
    let bus: Arc<dyn EventBus> = Arc::new(RedisBus::connect(url, prefix).await.unwrap());
    let pres: Arc<dyn PresenceStore> = Arc::new(
        RedisPresence::connect(url, prefix, Duration::from_secs(120))
            .await
            .unwrap(),
    );
    start_node(bus, dir, pres, s, GatewayConfig::default()).await
}

#[tokio::test]
async fn two_gateway_nodes_on_redis_deliver_each_others_events() {
    let Some(url) = test_redis("the multi-node test") else {
        return;
    };
    let url = url.as_str();
    let p = prefix();
    let s = signer();
    let dir = directory();
    let n1 = redis_node(url, &p, dir.clone(), &s).await;
    let n2 = redis_node(url, &p, dir.clone(), &s).await;
    let api = RedisBus::connect(url, &p).await.unwrap();

    let (mut a, _) = identify(n1.addr, &token(&s, Id(1), Id(71), 600)).await;
    let (mut b, b_ready) = identify(n2.addr, &token(&s, Id(2), Id(72), 600)).await;
    // b's ready carries its friend a's presence (set by node 1, read by node 2 from Redis).
    let pres = b_ready["d"]["presences"].as_array().unwrap();
    assert!(
        pres.iter()
            .any(|p| p["user_id"] == "1" && p["status"] == "online"),
        "{pres:?}"
    );

    // The api publishes; both nodes deliver.
    api.publish(&message(PUBLIC, 1)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut a, "message_create").await["d"]["message"]["n"],
        1
    );
    assert_eq!(
        dispatch_of(&mut b, "message_create").await["d"]["message"]["n"],
        1
    );
    // Typing on node 2 reaches node 1.
    send(&mut b, json!({"op": "typing_start", "channel_id": PUBLIC})).await;
    assert_eq!(
        dispatch_of(&mut a, "typing_start").await["d"]["user_id"],
        "2"
    );
    // Presence set on node 1 reaches node 2.
    send(
        &mut a,
        json!({"op": "presence_update", "status": "dnd", "custom_status": "focus"}),
    )
    .await;
    loop {
        let f = dispatch_of(&mut b, "presence_update").await;
        if f["d"]["user_id"] == "1" && f["d"]["status"] == "dnd" {
            assert_eq!(f["d"]["custom_status"], "focus");
            break;
        }
    }
    // A gateway-published event (a's typing) on node 1 reaches b on node 2, and a secret
    // message reaches only a.
    api.publish(&message(SECRET, 2)).await.unwrap();
    api.publish(&message(PUBLIC, 3)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut a, "message_create").await["d"]["message"]["n"],
        2
    );
    assert_eq!(
        dispatch_of(&mut b, "message_create").await["d"]["message"]["n"],
        3
    );
    // a leaves: b sees a go offline.
    a.close(None).await.unwrap();
    loop {
        let f = dispatch_of(&mut b, "presence_update").await;
        if f["d"]["user_id"] == "1" && f["d"]["status"] == "offline" {
            break;
        }
    }
}

struct RedisChild(std::process::Child);
impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(port: u16) -> Option<RedisChild> {
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let child = RedisChild(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !redis_reachable(port) {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn delivery_recovers_by_itself_after_a_redis_restart() {
    let port = free_port();
    let Some(redis) = start_redis(port) else {
        println!("NOTICE: cannot start redis-server, skipping the Redis restart test");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let p = prefix();
    let s = signer();
    let node = redis_node(&url, &p, directory(), &s).await;
    let api = RedisBus::connect(&url, &p).await.unwrap();
    // The link stays up across keep-alive pings (no reconnection loop).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(api.connections_made(), 1);
    let (mut a, _) = identify(node.addr, &token(&s, Id(1), Id(81), 600)).await;
    api.publish(&message(PUBLIC, 1)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut a, "message_create").await["d"]["message"]["n"],
        1
    );

    drop(redis);
    assert!(
        api.publish(&message(PUBLIC, 2)).await.is_err(),
        "publish errors must be surfaced"
    );
    let _redis = start_redis(port).expect("redis restarts");
    let restarted = Instant::now();
    // Publish until delivered again; it must recover by itself within 5 s.
    let mut n = 100;
    'outer: loop {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "delivery did not recover within 5 s"
        );
        n += 1;
        let _ = api.publish(&message(PUBLIC, n)).await;
        while let Some(got) = next(&mut a, Duration::from_millis(100)).await {
            match got {
                Got::Frame(f) if f["t"] == "message_create" => break 'outer,
                Got::Frame(_) => {}
                Got::Closed(c) => panic!("client closed: {c:?}"),
            }
        }
    }
    println!(
        "delivery recovered {:?} after the Redis restart",
        restarted.elapsed()
    );
}

#[tokio::test]
async fn to_device_goes_to_that_device_only_and_acks_reach_the_directory() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let dir = directory();
    let node = start_node(bus.clone(), dir.clone(), pres, &s, GatewayConfig::default()).await;
    let tok = token(&s, Id(1), Id(91), 600);
    let mut d1 = connect(node.addr).await;
    frame(&mut d1).await;
    send(
        &mut d1,
        json!({"op": "identify", "token": tok, "device_id": "DEV1"}),
    )
    .await;
    assert_eq!(frame(&mut d1).await["op"], "ready");
    let mut d2 = connect(node.addr).await;
    frame(&mut d2).await;
    send(
        &mut d2,
        json!({"op": "identify", "token": tok, "device_id": "DEV2"}),
    )
    .await;
    assert_eq!(frame(&mut d2).await["op"], "ready");
    let to_device = |dev: &str, id: i64| {
        BusEvent::to(
            Audience::User(Id(1)),
            Event::ToDevice {
                device_id: dev.into(),
                id,
                sender_user_id: Id(2),
                sender_device_id: "X".into(),
                message: json!({"ciphertext": "opaque"}),
            },
        )
    };
    bus.publish(&to_device("DEV1", 5)).await.unwrap();
    bus.publish(&to_device("DEV2", 6)).await.unwrap();
    let f = dispatch_of(&mut d1, "to_device").await;
    assert_eq!(f["d"]["id"], 5);
    let f = dispatch_of(&mut d2, "to_device").await;
    assert_eq!(f["d"]["id"], 6, "DEV2 received another device's message");
    send(&mut d1, json!({"op": "to_device_ack", "up_to": 5})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.acks().is_empty() {
        assert!(Instant::now() < deadline, "ack never reached the directory");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dir.acks(), vec![(Id(1), "DEV1".to_owned(), 5)]);
}

#[tokio::test]
async fn voice_state_is_broadcast_and_signals_are_relayed_to_and_from_the_sfu() {
    use copains_signaling::bus::Topic;
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus.clone(), directory(), pres, &s, GatewayConfig::default()).await;
    let (mut a, a_ready) = identify(node.addr, &token(&s, Id(1), Id(95), 600)).await;
    let a_session = a_ready["session_id"].as_str().unwrap().to_owned();
    let (mut b, _) = identify(node.addr, &token(&s, Id(2), Id(96), 600)).await;
    // The SFU serving the (public) voice channel listens on its voice topic.
    let mut sfu = bus.incoming();
    bus.subscribe(&[Topic::Voice(PUBLIC)]).await.unwrap();

    // A signal before joining the channel is ignored.
    send(&mut a, json!({"op": "voice_signal", "channel_id": PUBLIC, "kind": "offer", "data": {"sdp": "early"}})).await;
    send(&mut a, json!({"op": "voice_state_update", "server_id": SERVER, "channel_id": PUBLIC, "self_mute": true})).await;
    let v = dispatch_of(&mut b, "voice_state_update").await;
    assert_eq!(
        (v["d"]["user_id"].as_str(), v["d"]["self_mute"].as_bool()),
        (Some("1"), Some(true))
    );
    send(&mut a, json!({"op": "voice_signal", "channel_id": PUBLIC, "kind": "offer", "data": {"sdp": "v=0"}})).await;
    let got = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), sfu.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::VoiceSignal { .. } = ev.event {
            break ev;
        }
    };
    let Event::VoiceSignal {
        user_id,
        session_id,
        data,
        ..
    } = &got.event
    else {
        unreachable!()
    };
    assert_eq!(
        (*user_id, session_id.as_str(), data["sdp"].as_str()),
        (Id(1), a_session.as_str(), Some("v=0"))
    );
    // The SFU answers that session only.
    bus.publish(&BusEvent::to(
        Audience::Session {
            user_id: Id(1),
            session_id: a_session.clone(),
        },
        Event::VoiceSignal {
            channel_id: PUBLIC,
            user_id: Id(1),
            session_id: a_session.clone(),
            kind: copains_wire::events::SignalKind::Answer,
            data: json!({"sdp": "answer"}),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        dispatch_of(&mut a, "voice_signal").await["d"]["data"]["sdp"],
        "answer"
    );
    bus.publish(&message(PUBLIC, 1)).await.unwrap();
    loop {
        let f = frame(&mut b).await;
        assert_ne!(f["t"], "voice_signal", "another user's SDP leaked: {f}");
        if f["t"] == "message_create" {
            break;
        }
    }
}

#[tokio::test]
async fn slow_consumer_resumes_and_gets_everything_even_before_its_old_connection_is_gone() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let mut config = GatewayConfig::default();
    config.session.outbound_max_frames = 16;
    config.session.replay_max_events = 1000;
    let node = start_node(bus.clone(), directory(), pres, &s, config).await;
    let tok = token(&s, Id(2), Id(97), 600);
    let (slow, ready) = identify(node.addr, &tok).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    let filler = "x".repeat(100 * 1024);
    let total = 600u64; // ~60 MiB, far more than the socket buffers
    for n in 1..=total {
        let ev = BusEvent::to(
            Audience::Channel {
                server_id: Some(SERVER),
                channel_id: PUBLIC,
            },
            Event::MessageCreate {
                message: json!({"n": n, "filler": filler}),
            },
        );
        bus.publish(&ev).await.unwrap();
        if n % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let h = node.gw.hub().find(&session_id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.lock().detached_at().is_none() {
        assert!(Instant::now() < deadline, "slow consumer never cut off");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Resume at once (the old connection may still be shutting down) from s = 0.
    let mut ws = connect(node.addr).await;
    frame(&mut ws).await;
    send(
        &mut ws,
        json!({"op": "resume", "token": tok, "session_id": session_id, "seq": 0}),
    )
    .await;
    let mut ns = Vec::new();
    loop {
        let f = frame(&mut ws).await;
        if f["op"] == "resumed" {
            break;
        }
        if f["t"] == "message_create" {
            ns.push(f["d"]["message"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(ns, (1..=total).collect::<Vec<_>>());
    drop(slow);
    // After the old connection's cleanup has surely run, the session still belongs to us.
    tokio::time::sleep(Duration::from_secs(4)).await;
    bus.publish(&message(PUBLIC, 9999)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut ws, "message_create").await["d"]["message"]["n"],
        9999
    );
    assert!(h.lock().detached_at().is_none());
}

#[tokio::test]
async fn closed_sessions_release_their_topics() {
    let s = signer();
    let (bus, pres) = memory_node_parts();
    let node = start_node(bus.clone(), directory(), pres, &s, GatewayConfig::default()).await;
    let (mut a, _) = identify(node.addr, &token(&s, Id(1), Id(98), 600)).await;
    let (mut b, _) = identify(node.addr, &token(&s, Id(2), Id(99), 600)).await;
    send(
        &mut a,
        json!({"op": "subscribe_members", "server_id": SERVER}),
    )
    .await;
    assert_eq!(node.gw.hub().session_count(), 2);
    assert!(node.gw.hub().topic_count() >= 3); // user:1, user:2, server:100
    a.close(None).await.unwrap();
    b.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.gw.hub().session_count() > 0 || node.gw.hub().topic_count() > 0 {
        assert!(Instant::now() < deadline, "sessions or topics leaked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.gw.live_connections(), 0);
}

#[tokio::test]
async fn when_a_node_goes_away_its_clients_continue_on_the_other_node() {
    let Some(url) = test_redis("the node failover test") else {
        return;
    };
    let url = url.as_str();
    let p = prefix();
    let s = signer();
    let dir = directory();
    let n1 = redis_node(url, &p, dir.clone(), &s).await;
    let n2 = redis_node(url, &p, dir.clone(), &s).await;
    let api = RedisBus::connect(url, &p).await.unwrap();
    let tok = token(&s, Id(1), Id(101), 600);
    let (mut a, ready) = identify(n1.addr, &tok).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    api.publish(&message(PUBLIC, 1)).await.unwrap();
    let last = dispatch_of(&mut a, "message_create").await["s"]
        .as_u64()
        .unwrap();
    // Node 1 shuts down: reconnect, then close 1001.
    n1.gw.shutdown(Duration::from_secs(3)).await;
    let mut saw_reconnect = false;
    let code = loop {
        match next(&mut a, Duration::from_secs(5)).await {
            Some(Got::Frame(f)) => saw_reconnect |= f["op"] == "reconnect",
            Some(Got::Closed(c)) => break c,
            None => panic!("node 1 did not close"),
        }
    };
    assert!(saw_reconnect);
    assert_eq!(code, Some(1001));
    // On node 2 the session is unknown: invalid_session, then identify works.
    let mut b = connect(n2.addr).await;
    frame(&mut b).await;
    send(
        &mut b,
        json!({"op": "resume", "token": tok, "session_id": session_id, "seq": last}),
    )
    .await;
    assert_eq!(
        frame(&mut b).await,
        json!({"op": "invalid_session", "resumable": false})
    );
    send(&mut b, json!({"op": "identify", "token": tok})).await;
    assert_eq!(frame(&mut b).await["op"], "ready");
    api.publish(&message(PUBLIC, 2)).await.unwrap();
    assert_eq!(
        dispatch_of(&mut b, "message_create").await["d"]["message"]["n"],
        2
    );
}

#[tokio::test]
async fn redis_presence_aggregates_across_nodes_and_expires_without_heartbeats() {
    use copains_signaling::presence::{ConnPresence, unix_ms};
    use copains_wire::events::PresenceStatus;
    let Some(url) = test_redis("the Redis presence test") else {
        return;
    };
    let url = url.as_str();
    let p = prefix();
    let node1 = RedisPresence::connect(url, &p, Duration::from_secs(5))
        .await
        .unwrap();
    let node2 = RedisPresence::connect(url, &p, Duration::from_secs(5))
        .await
        .unwrap();
    let u = Id(7);
    let now = unix_ms();
    let entry = |status, exp_in: u64| ConnPresence {
        status,
        custom_status: None,
        set_at_ms: now,
        expires_at_ms: now + exp_in,
    };
    let (before, after) = node1
        .set(u, 1, entry(PresenceStatus::Idle, 300))
        .await
        .unwrap();
    assert_eq!(
        (before.status, after.status),
        (PresenceStatus::Offline, PresenceStatus::Idle)
    );
    let (_, after) = node2
        .set(u, 2, entry(PresenceStatus::Online, 60_000))
        .await
        .unwrap();
    assert_eq!(after.status, PresenceStatus::Online);
    let (_, after) = node2.remove(u, 2).await.unwrap();
    assert_eq!(
        after.status,
        PresenceStatus::Idle,
        "online while any connection is"
    );
    // Node 1 dies: its entry is not refreshed and disappears by itself.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        node2.get(&[u]).await.unwrap()[0].status,
        PresenceStatus::Offline
    );
    // A heartbeat refresh keeps an entry alive.
    node1
        .set(u, 3, entry(PresenceStatus::Dnd, 300))
        .await
        .unwrap();
    node1.refresh(u, 3, unix_ms() + 60_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        node2.get(&[u]).await.unwrap()[0].status,
        PresenceStatus::Dnd
    );
}
