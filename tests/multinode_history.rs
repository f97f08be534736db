//! Two `copains api` processes sharing PostgreSQL and Redis: each keeps a history cache, and a
//! change made through one node reaches the other's cache through Redis well before the cache's
//! time bound (10 s with several nodes) — an edit, a delete, a reaction and a new message all
//! show in the other node's next pages. While Redis is down a node's cache is off (pages come
//! from PostgreSQL, so they stay right); once Redis is back it is on again, and coherent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The bearer token that opens `/metrics` on the nodes' serving port.
const METRICS_TOKEN: &str = "multinode-history-metrics";

/// A counter or gauge of `/metrics` (first sample whose name and labels start with `name`).
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

const HITS: &str = "copains_history_cache_reads_total{result=\"hit\"}";
const ENABLED: &str = "copains_history_cache_enabled";

/// Waits up to 5 s (half the cache's time bound) for `cond`.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(method: reqwest::Method, base: &str, path: &str, token: &str, body: Option<Value>) {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

#[tokio::test]
async fn two_api_nodes_keep_their_history_caches_coherent_through_redis() {
    let mut redis = Redis::start(free_port());
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let db = TestDb::new("mnhistory");
    let dir = temp_dir("mnhistory");
    let env = |node: &str| {
        vec![
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_REDIS_URL", redis_url.clone()),
            ("COPAINS_NODE_ID", node.to_owned()),
            ("COPAINS_METRICS_TOKEN", METRICS_TOKEN.to_owned()),
        ]
    };
    let a = Proc::start("api", &env("1"), &dir).await; // creates the shared signing key first
    let b = Proc::start("api", &env("2"), &dir).await;
    let (a, b) = (a.base.clone(), b.base.clone());
    eventually("node B's history cache to be linked", || async {
        metric(&b, ENABLED).await == 1.0
    })
    .await;

    let (_, alice) = register(&a, "alice").await;
    let server = post(&a, "/api/v1/servers", Some(&alice), json!({"name": "Two"})).await;
    let sid = server["id"].as_str().unwrap();
    let ch = post(
        &a,
        &format!("/api/v1/servers/{sid}/channels"),
        Some(&alice),
        json!({"name": "general-chat", "kind": "text"}),
    )
    .await;
    let ch = ch["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..30 {
        let m = post(
            &a,
            &format!("/api/v1/channels/{ch}/messages"),
            Some(&alice),
            json!({"content": format!("message {i}")}),
        )
        .await;
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    // Pages before the last message: a span that ends below the head, which a node keeps for
    // the whole time bound (10 s) unless told of a change — unlike the newest page, whose
    // open span it trusts for at most 2 s.
    let page_path = format!("/api/v1/channels/{ch}/messages?before={}&limit=50", ids[29]);
    let page = |base: String| {
        let (path, token) = (page_path.clone(), alice.clone());
        async move { get(&base, &path, &token).await }
    };
    let find = |page: &Value, id: &str| -> Option<Value> {
        page.as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
    };

    // B answers the second read from memory.
    let first = page(b.clone()).await;
    let hits = metric(&b, HITS).await;
    assert_eq!(page(b.clone()).await, first);
    assert!(
        metric(&b, HITS).await > hits,
        "node B did not use its cache"
    );
    assert_eq!(first.as_array().unwrap().len(), 29);

    // Each change made through A shows on B's next pages.
    let edited = ids[10].clone();
    send(
        reqwest::Method::PATCH,
        &a,
        &format!("/api/v1/channels/{ch}/messages/{edited}"),
        &alice,
        Some(json!({"content": "edited on A"})),
    )
    .await;
    eventually("the edit on B", || async {
        find(&page(b.clone()).await, &edited).unwrap()["content"] == "edited on A"
    })
    .await;
    let deleted = ids[20].clone();
    send(
        reqwest::Method::DELETE,
        &a,
        &format!("/api/v1/channels/{ch}/messages/{deleted}"),
        &alice,
        None,
    )
    .await;
    eventually("the delete on B", || async {
        find(&page(b.clone()).await, &deleted).is_none()
    })
    .await;
    let liked = ids[5].clone();
    send(
        reqwest::Method::PUT,
        &a,
        &format!("/api/v1/channels/{ch}/messages/{liked}/reactions/👍/@me"),
        &alice,
        None,
    )
    .await;
    eventually("the reaction on B", || async {
        let m = find(&page(b.clone()).await, &liked).unwrap();
        m["reactions"][0]["count"] == 1 && m["reactions"][0]["me"] == true
    })
    .await;
    let newest = post(
        &a,
        &format!("/api/v1/channels/{ch}/messages"),
        Some(&alice),
        json!({"content": "the newest"}),
    )
    .await;
    let newest = newest["id"].as_str().unwrap().to_owned();
    let newest_page = format!("/api/v1/channels/{ch}/messages?limit=50");
    eventually("the new message on B", || async {
        find(&get(&b, &newest_page, &alice).await, &newest).is_some()
    })
    .await;

    // Redis goes away: B's cache turns off, and B still answers what the database holds.
    redis.stop();
    eventually("node B's cache to turn off", || async {
        metric(&b, ENABLED).await == 0.0
    })
    .await;
    send(
        reqwest::Method::PATCH,
        &a,
        &format!("/api/v1/channels/{ch}/messages/{edited}"),
        &alice,
        Some(json!({"content": "edited while Redis was down"})),
    )
    .await;
    assert_eq!(
        find(&page(b.clone()).await, &edited).unwrap()["content"],
        "edited while Redis was down"
    );

    // Redis comes back on the same port: B's cache is on again, and coherent.
    let redis = Redis::start(redis.port);
    eventually("node B's cache to turn on again", || async {
        metric(&b, ENABLED).await == 1.0
    })
    .await;
    // A's publisher reconnects by itself; until it has, an edit might not be announced, so
    // retry the edit until B shows it (each attempt is a fresh change).
    page(b.clone()).await;
    page(b.clone()).await;
    let mut n = 0;
    eventually("an edit after the restart on B", || {
        n += 1;
        let (a, b, ch, edited, alice) = (
            a.clone(),
            b.clone(),
            ch.clone(),
            edited.clone(),
            alice.clone(),
        );
        let path = page_path.clone();
        let text = format!("edited after the restart {n}");
        async move {
            send(
                reqwest::Method::PATCH,
                &a,
                &format!("/api/v1/channels/{ch}/messages/{edited}"),
                &alice,
                Some(json!({"content": text})),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let p = get(&b, &path, &alice).await;
            p.as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == edited.as_str() && m["content"] == text)
        }
    })
    .await;
    drop(redis);
}
