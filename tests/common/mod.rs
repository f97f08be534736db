//! Helpers for tests that run the real `copains` binary: processes on free ports, a fresh
//! database per test, HTTP and gateway clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod voice;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Admin URL of the PostgreSQL hosting per-test databases.
pub fn admin_url() -> String {
    std::env::var("COPAINS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new(tag: &str) -> Self {
        let name = format!("copains_test_{tag}_{}_{}", std::process::id(), nanos());
        let admin = admin_url();
        let st = Command::new("psql")
            .arg(&admin)
            .args(["-qc", &format!("CREATE DATABASE {name}")])
            .status()
            .unwrap();
        assert!(st.success(), "creating the test database");
        TestDb {
            url: format!("{}/{name}", admin.rsplit_once('/').unwrap().0),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(admin_url())
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

pub fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `copains` process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

impl Proc {
    /// Starts `copains <role>` on a free port with `env`, and waits for `/readyz`.
    pub async fn start(role: &str, env: &[(&str, String)], data: &Path) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_copains"));
        cmd.arg(role)
            .env("COPAINS_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("COPAINS_DATA_DIR", data)
            .env("COPAINS_WEB_DIR", data.join("no-web"))
            .env("COPAINS_LOG", "warn")
            .env("COPAINS_AUTH_RATE_BURST", "1000")
            .env_remove("COPAINS_REDIS_URL")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let p = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(format!("{}/readyz", p.base)).await
                && r.status() == 200
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("copains {role} did not become ready");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary folder for a test's processes: `$TMPDIR/copains-tests/<pid>/<tag>-<n>`. The
/// processes may outlive the test function that made it, so it is not removed when the test
/// ends; instead each call removes the folders of earlier test runs whose process is gone.
pub fn temp_dir(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join("copains-tests");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let gone = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                });
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let d = root
        .join(std::process::id().to_string())
        .join(format!("{tag}-{}", nanos()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut rb = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let v = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

pub async fn get(base: &str, path: &str, token: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// Registers `name`; returns (user id, access token).
pub async fn register(base: &str, name: &str) -> (String, String) {
    let v = post(base, "/api/v1/auth/register", None, json!({"username": name, "email": format!("{name}@example.org"), "password": format!("password-{name}")})).await;
    (
        v["user"]["id"].as_str().unwrap().to_owned(),
        v["access_token"].as_str().unwrap().to_owned(),
    )
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(
    base: &str,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("{}/gateway", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

pub async fn next_json(ws: &mut Ws) -> Value {
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

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Identifies and returns the `ready` payload.
pub async fn identify(ws: &mut Ws, token: &str) -> Value {
    let hello = next_json(ws).await;
    assert_eq!(hello["op"], "hello");
    send(ws, json!({"op": "identify", "token": token})).await;
    loop {
        let f = next_json(ws).await;
        if f["op"] == "ready" {
            return f["d"].clone();
        }
    }
}

/// Waits for a dispatch of type `t` whose payload satisfies `pred`, skipping others.
pub async fn wait_for(ws: &mut Ws, t: &str, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let f = next_json(ws).await;
        if f["op"] == "dispatch" && f["t"] == t && pred(&f["d"]) {
            return f["d"].clone();
        }
    }
}

pub async fn wait_dispatch(ws: &mut Ws, t: &str) -> Value {
    wait_for(ws, t, |_| true).await
}

/// A throwaway `redis-server` on a port, killed on drop (tests may stop and restart it).
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
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
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis { child, port }
    }
    /// Kills it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
