//! Scale-out acceptance (issue 5): one `copains api` process, two `copains gateway`
//! processes and a Redis they share. Clients on different nodes see each other's messages,
//! typing and presence; killing a gateway moves its clients to the other without losing an
//! acknowledged message; restarting Redis heals delivery by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn say(api: &str, token: &str, channel: &str, text: &str) -> Value {
    post(
        api,
        &format!("/api/v1/channels/{channel}/messages"),
        Some(token),
        json!({"content": text, "nonce": text.replace(' ', "-")}),
    )
    .await
}

fn content_is(text: &'static str) -> impl Fn(&Value) -> bool {
    move |d: &Value| d["message"]["content"] == text || d["content"] == text
}

#[tokio::test]
async fn two_gateways_one_api_and_redis_deliver_survive_a_node_loss_and_a_redis_restart() {
    let mut redis = Redis::start(free_port());
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let db = TestDb::new("multinode");
    let dir = temp_dir("multinode");
    let env = |node: &str| {
        vec![
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_REDIS_URL", redis_url.clone()),
            ("COPAINS_NODE_ID", node.to_owned()),
        ]
    };
    let api = Proc::start("api", &env("1"), &dir).await; // creates the shared signing key first
    let mut g1 = Proc::start("gateway", &env("2"), &dir).await;
    let g2 = Proc::start("gateway", &env("3"), &dir).await;
    let api = api.base.clone();

    let (_, alice) = register(&api, "alice").await;
    let (bob_id, bob) = register(&api, "bob").await;
    let server = post(
        &api,
        "/api/v1/servers",
        Some(&alice),
        json!({"name": "Scale"}),
    )
    .await;
    let sid = server["id"].as_str().unwrap().to_owned();
    let inv = post(
        &api,
        &format!("/api/v1/servers/{sid}/invites"),
        Some(&alice),
        json!({}),
    )
    .await;
    post(
        &api,
        &format!("/api/v1/invites/{}", inv["code"].as_str().unwrap()),
        Some(&bob),
        json!({}),
    )
    .await;

    let mut a = connect(&g1.base, None).await.unwrap();
    let ready = identify(&mut a, &alice).await;
    let channel = ready["servers"][0]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "text")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut b = connect(&g2.base, None).await.unwrap();
    identify(&mut b, &bob).await;

    // Messages cross nodes both ways.
    say(&api, &bob, &channel, "hello from bob").await;
    wait_for(&mut a, "message_create", content_is("hello from bob")).await;
    say(&api, &alice, &channel, "hello from alice").await;
    wait_for(&mut b, "message_create", content_is("hello from alice")).await;

    // Typing and presence cross nodes (published by the gateway holding the connection).
    send(&mut b, json!({"op": "typing_start", "channel_id": channel})).await;
    wait_for(&mut a, "typing_start", |d| d["user_id"] == bob_id.as_str()).await;
    send(&mut b, json!({"op": "presence_update", "status": "dnd"})).await;
    wait_for(&mut a, "presence_update", |d| {
        d["user_id"] == bob_id.as_str() && d["status"] == "dnd"
    })
    .await;

    // Kill Alice's node. Messages acknowledged meanwhile are all there when she moves over.
    g1.kill();
    drop(a);
    let mut acked = Vec::new();
    for i in 0..5 {
        let m = say(&api, &bob, &channel, &format!("while away {i}")).await;
        acked.push(m["id"].as_str().unwrap().to_owned());
    }
    let mut a = connect(&g2.base, None).await.unwrap();
    identify(&mut a, &alice).await;
    let history = get(
        &api,
        &format!("/api/v1/channels/{channel}/messages?limit=50"),
        &alice,
    )
    .await;
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for id in &acked {
        assert!(
            ids.contains(&id.as_str()),
            "message {id} acknowledged by the api is missing after failover"
        );
    }
    say(&api, &bob, &channel, "after failover").await;
    wait_for(&mut a, "message_create", content_is("after failover")).await;

    // Restart Redis: delivery comes back by itself.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _redis2 = Redis::start(redis.port);
    let back = Instant::now();
    let mut n = 0;
    let healed = loop {
        let text = format!("after redis restart {n}");
        // Publishing may fail while the api's connection is being re-established; the
        // message is stored anyway (201), only its live delivery can be lost.
        say(&api, &bob, &channel, &text).await;
        let got = tokio::time::timeout(Duration::from_millis(400), async {
            loop {
                let f = next_json(&mut a).await;
                if f["op"] == "dispatch" && f["t"] == "message_create" {
                    return f;
                }
            }
        })
        .await;
        if got.is_ok() {
            break back.elapsed();
        }
        n += 1;
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "delivery did not recover within 5 s of Redis coming back"
        );
    };
    eprintln!("delivery recovered {healed:?} after Redis came back");
}
