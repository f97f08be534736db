//! The real `copains serve` process end to end: HTTP API and gateway in one process on the
//! in-process bus. Events reach exactly the connections allowed to see them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Server {
    child: Child,
    base: String,
    db: String,
    admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("psql")
            .arg(&self.admin)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
            ])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start() -> Server {
    let admin = std::env::var("COPAINS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!(
        "copains_test_serve_{}_{}",
        std::process::id(),
        rand_suffix()
    );
    let st = Command::new("psql")
        .arg(&admin)
        .args(["-qc", &format!("CREATE DATABASE {db}")])
        .status()
        .unwrap();
    assert!(st.success());
    let port = free_port();
    let data = std::env::temp_dir().join(&db);
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let child = Command::new(env!("CARGO_BIN_EXE_copains"))
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("COPAINS_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("COPAINS_DATA_DIR", &data)
        .env("COPAINS_WEB_DIR", data.join("no-web"))
        .env("COPAINS_LOG", "warn")
        .env_remove("COPAINS_REDIS_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        child,
        base,
        db,
        admin,
    };
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("{}/readyz", server.base)).await {
            if r.status() == 200 {
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("copains serve did not become ready");
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

async fn post(s: &Server, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut rb = reqwest::Client::new()
        .post(format!("{}{path}", s.base))
        .json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn register(s: &Server, name: &str) -> (String, String) {
    let v = post(s, "/api/v1/auth/register", None, json!({"username": name, "email": format!("{name}@example.org"), "password": format!("password-{name}")})).await;
    (
        v["user"]["id"].as_str().unwrap().to_owned(),
        v["access_token"].as_str().unwrap().to_owned(),
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    s: &Server,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("{}/gateway", s.base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame in time")
            .unwrap()
            .unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Identifies and returns the `ready` payload.
async fn identify(ws: &mut Ws, token: &str) -> Value {
    let hello = next_json(ws).await;
    assert_eq!(hello["op"], "hello");
    ws.send(Message::Text(
        json!({"op": "identify", "token": token}).to_string().into(),
    ))
    .await
    .unwrap();
    loop {
        let f = next_json(ws).await;
        if f["op"] == "ready" {
            return f["d"].clone();
        }
    }
}

/// Waits for a dispatch of type `t`, skipping others (presence...).
async fn wait_dispatch(ws: &mut Ws, t: &str) -> Value {
    loop {
        let f = next_json(ws).await;
        if f["op"] == "dispatch" && f["t"] == t {
            return f["d"].clone();
        }
    }
}

#[tokio::test]
async fn serve_delivers_channel_events_to_members_only_and_checks_origin() {
    let s = start().await;
    let (_, alice) = register(&s, "alice").await;
    let (_, bob) = register(&s, "bob").await;
    let server = post(
        &s,
        "/api/v1/servers",
        Some(&alice),
        json!({"name": "Copains"}),
    )
    .await;
    let sid = server["id"].as_str().unwrap().to_owned();

    // A foreign Origin is refused; no Origin (native client) and the listen origin are accepted.
    assert!(connect(&s, Some("https://evil.example")).await.is_err());
    let mut a = connect(&s, Some(&s.base)).await.unwrap();
    let ready = identify(&mut a, &alice).await;
    assert_eq!(ready["user"]["username"], "alice");
    assert!(
        ready["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|sv| sv["id"] == sid.as_str())
    );
    let mut b = connect(&s, None).await.unwrap();
    let ready_b = identify(&mut b, &bob).await;
    assert!(ready_b["servers"].as_array().unwrap().is_empty());

    // Alice makes a channel: she hears of it, Bob (not a member) does not.
    post(
        &s,
        &format!("/api/v1/servers/{sid}/channels"),
        Some(&alice),
        json!({"name": "general-2", "kind": "text"}),
    )
    .await;
    let ch = wait_dispatch(&mut a, "channel_create").await;
    assert_eq!(ch["channel"]["name"], "general-2");

    // Bob joins through an invite; the next channel reaches him too.
    let inv = post(
        &s,
        &format!("/api/v1/servers/{sid}/invites"),
        Some(&alice),
        json!({}),
    )
    .await;
    post(
        &s,
        &format!("/api/v1/invites/{}", inv["code"].as_str().unwrap()),
        Some(&bob),
        json!({}),
    )
    .await;
    wait_dispatch(&mut b, "server_create").await;
    // The node subscribes Bob's connection to the server's topic asynchronously after the
    // join (scope refresh); events of the first moments after a join can be missed, which is
    // why clients load a joined server over REST after `server_create`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    post(
        &s,
        &format!("/api/v1/servers/{sid}/channels"),
        Some(&alice),
        json!({"name": "after-join", "kind": "text"}),
    )
    .await;
    let ch = wait_dispatch(&mut b, "channel_create").await;
    assert_eq!(
        ch["channel"]["name"], "after-join",
        "bob's first channel event is the one after he joined"
    );

    // A bad token is closed with 4004.
    let mut c = connect(&s, None).await.unwrap();
    let _hello = next_json(&mut c).await;
    c.send(Message::Text(
        json!({"op": "identify", "token": "garbage"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 4004);
}
