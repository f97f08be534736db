//! The operations surface (#17 item 3): `/metrics` behind a token or on its own listener,
//! `/version` without build details to strangers, `nosniff` on API answers, the 413's real
//! limit (and an early 413 from `Content-Length`), `Retry-After` rounded up, and the
//! gateway's directory refusing a session of another user.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use copains_api::config::ApiConfig;
use copains_signaling::directory::Directory;
use copains_wire::Id;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestServer, test_config};

const TOKEN: &str = "a-long-metrics-token";

#[tokio::test]
async fn metrics_answer_only_the_token_or_the_metrics_listener() {
    // No token configured: /metrics does not exist on the public listener.
    let plain = TestServer::start().await;
    let r = plain.http.get(plain.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "not_found");
    let r = plain
        .http
        .get(plain.url("/metrics"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let s = TestServer::with_config(ApiConfig {
        metrics_token: Some(TOKEN.into()),
        ..test_config()
    })
    .await;
    for bad in [None, Some("wrong"), Some("a-long-metrics-tokeN")] {
        let mut rb = s.http.get(s.url("/metrics"));
        if let Some(t) = bad {
            rb = rb.bearer_auth(t);
        }
        assert_eq!(
            rb.send().await.unwrap().status(),
            StatusCode::NOT_FOUND,
            "{bad:?}"
        );
    }
    let r = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("copains_http_requests_total")
    );

    // The separate listener (COPAINS_METRICS_ADDR) serves it without a token, and nothing
    // of the API.
    let app = copains_api::routes::metrics_router(plain.state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("copains_http_requests_total")
    );
    let r = reqwest::get(format!("http://{addr}/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn version_tells_strangers_the_schema_only() {
    let s = TestServer::with_config(ApiConfig {
        metrics_token: Some(TOKEN.into()),
        ..test_config()
    })
    .await;
    let admin = s.register("alice").await; // the first account is an instance admin
    let member = s.register("bob").await;
    let get = |token: Option<String>| {
        let mut rb = s.http.get(s.url("/version"));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move {
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    for who in [None, Some(member.token.clone()), Some("garbage".into())] {
        let v = get(who).await;
        assert!(v["schema"].as_i64().unwrap() >= 1, "{v}");
        assert!(v.get("version").is_none(), "no build details: {v}");
    }
    for who in [admin.token.clone(), TOKEN.to_owned()] {
        let v = get(Some(who)).await;
        assert!(v["schema"].as_i64().unwrap() >= 1, "{v}");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    }
}

#[tokio::test]
async fn api_answers_carry_nosniff() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    for (path, token) in [
        ("/api/v1/users/@me", Some(a.token.as_str())),
        ("/api/v1/users/@me", None),
        ("/api/v1/no-such-route", None),
        ("/api/v1/openapi.json", None),
    ] {
        let mut rb = s.http.get(s.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn too_large_bodies_state_the_real_limit_and_a_declared_length_is_refused_early() {
    let s = TestServer::with_config(ApiConfig {
        body_limit: 4096,
        ..test_config()
    })
    .await;
    let body = json!({"login": "a".repeat(5000), "password": "x"});
    let (st, v) = s.post("/api/v1/auth/login", None, body).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["message"], "request body too large (limit 4096 bytes)");

    // A declared Content-Length beyond the limit gets its 413 before any body is sent: the
    // request below never sends one, so a server waiting for it would never answer.
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
        .await
        .expect("no early answer to an oversized Content-Length")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("limit 4096 bytes"), "{head}");
}

#[tokio::test]
async fn retry_after_is_rounded_up() {
    // Refresh earns one request back every period/3: 18 s / 3 = a refill every 6 s, burst 3.
    let s = TestServer::with_config(ApiConfig {
        auth_rate_burst: 1,
        auth_rate_period: Duration::from_secs(18),
        ..test_config()
    })
    .await;
    let started = Instant::now();
    let mut last = None;
    for _ in 0..4 {
        let r = s
            .http
            .post(s.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": "garbage"}))
            .send()
            .await
            .unwrap();
        last = Some(r);
    }
    let elapsed = started.elapsed();
    let r = last.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The wait is 6 s minus the time the four requests took; rounded up that is 6 (rounded
    // down it was 5) unless the requests themselves took a second or more.
    if elapsed < Duration::from_secs(1) {
        assert_eq!(retry, 6);
    } else {
        assert!((1..=6).contains(&retry), "{retry}");
    }
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        format!("too many requests, retry in {retry} s")
    );
}

#[tokio::test]
async fn the_gateway_directory_refuses_a_session_of_another_user() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let (alice_id, bob_id): (i64, i64) = (alice.id.parse().unwrap(), bob.id.parse().unwrap());
    let sid: i64 = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 LIMIT 1")
        .bind(alice_id)
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    let dir = copains_api::directory::PgDirectory::new(s.state.db.clone());
    assert!(dir.is_session_active(Id(alice_id), Id(sid)).await.unwrap());
    assert!(
        !dir.is_session_active(Id(bob_id), Id(sid)).await.unwrap(),
        "bob's token naming alice's session"
    );
}
