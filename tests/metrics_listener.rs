//! `/metrics` on a real `copains api` process (#17 item 3): 404 on the serving port without
//! the token, 200 with it, and 200 without a token on the separate `COPAINS_METRICS_ADDR`
//! listener, which serves nothing of the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;

#[tokio::test]
async fn metrics_live_on_their_own_listener_or_behind_the_token() {
    let db = TestDb::new("metricsaddr");
    let dir = temp_dir("metricsaddr");
    let mport = free_port();
    let p = Proc::start(
        "api",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_METRICS_ADDR", format!("127.0.0.1:{mport}")),
            ("COPAINS_METRICS_TOKEN", "process-metrics-token".to_owned()),
        ],
        &dir,
    )
    .await;
    let http = reqwest::Client::new();
    let status = |url: String, token: Option<&'static str>| {
        let mut rb = http.get(url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move { rb.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("{}/metrics", p.base), None).await, 404);
    assert_eq!(
        status(format!("{}/metrics", p.base), Some("wrong-token")).await,
        404
    );
    assert_eq!(
        status(format!("{}/metrics", p.base), Some("process-metrics-token")).await,
        200
    );
    let m = format!("http://127.0.0.1:{mport}");
    let text = reqwest::get(format!("{m}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("copains_http_requests_total"), "{text}");
    assert_eq!(status(format!("{m}/readyz"), None).await, 200);
    assert_eq!(status(format!("{m}/api/v1/openapi.json"), None).await, 404);
    // /version: the schema for strangers, no build details.
    let v: serde_json::Value = reqwest::get(format!("{}/version", p.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["schema"].as_i64().unwrap() >= 1 && v.get("version").is_none(),
        "{v}"
    );
}
