//! Several SFU nodes (issue 7, multi-node): `copains api`, `copains gateway` and two
//! `copains sfu` processes on one Redis. A voice channel is pinned to one node; when that node
//! dies, its clients' next offer is claimed by the other node and media flows again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::voice::*;
use common::*;
use copains_sfu::client::{NativeClient, Publish};
use serde_json::json;

fn redis_get(port: u16, key: &str) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "GET", key])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!v.is_empty()).then_some(v)
}

/// Replaces the member's client with a fresh one and offers again until it connects.
async fn rejoin(m: &mut Member, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (client, offer) = NativeClient::new(
            std::net::Ipv4Addr::LOCALHOST.into(),
            Publish::Audio,
            Instant::now(),
        )
        .unwrap();
        m.client = client;
        let ch = m.channel.clone();
        send(&mut m.ws, json!({"op": "voice_signal", "channel_id": ch, "kind": "offer", "data": {"sdp": offer}})).await;
        let tried = Instant::now();
        while tried.elapsed() < Duration::from_secs(2) {
            m.pump(Duration::from_millis(20)).await;
            if m.client.is_connected() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no SFU node took the room over");
    }
}

#[tokio::test]
async fn a_voice_channel_moves_to_another_sfu_node_when_its_node_dies() {
    let redis = Redis::start(free_port());
    let redis_port = redis.port;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let db = TestDb::new("sfunodes");
    let dir = temp_dir("sfunodes");
    let env = |node: &str, ports: &str| {
        vec![
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_REDIS_URL", redis_url.clone()),
            ("COPAINS_NODE_ID", node.to_owned()),
            ("COPAINS_SFU_PORTS", ports.to_owned()),
        ]
    };
    let p = 40000 + (nanos() % 1500) as u16;
    let api = Proc::start("api", &env("1", "1-2"), &dir).await;
    let gw = Proc::start("gateway", &env("2", "1-2"), &dir).await;
    let mut sfu_a = Some(Proc::start("sfu", &env("4", &format!("{p}-{}", p + 20)), &dir).await);
    let mut sfu_b =
        Some(Proc::start("sfu", &env("5", &format!("{}-{}", p + 30, p + 50)), &dir).await);
    let api = api.base.clone();

    let (_, alice) = register(&api, "alice").await;
    let (_, bob) = register(&api, "bob").await;
    let server = post(
        &api,
        "/api/v1/servers",
        Some(&alice),
        json!({"name": "Nodes"}),
    )
    .await;
    let sid = server["id"].as_str().unwrap().to_owned();
    let vc = post(
        &api,
        &format!("/api/v1/servers/{sid}/channels"),
        Some(&alice),
        json!({"name": "Lounge", "kind": "voice"}),
    )
    .await;
    let vc = vc["id"].as_str().unwrap().to_owned();
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
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut a = join_voice(&gw.base, &alice, &sid, &vc).await;
    let mut b = join_voice(&gw.base, &bob, &sid, &vc).await;
    let (ah, bh) = exchange(&mut a, &mut b, "first").await;
    assert!(
        ah >= 28 && bh >= 28,
        "before failover: alice heard {ah}/30, bob {bh}/30"
    );

    // The room is pinned to exactly one node; kill that node.
    let owner = redis_get(redis_port, &format!("copains:voice:room:{vc}"))
        .expect("the room is claimed in Redis");
    let first = if owner.starts_with("4-") {
        sfu_a.take()
    } else {
        sfu_b.take()
    };
    assert!(
        owner.starts_with("4-") || owner.starts_with("5-"),
        "owner {owner}"
    );
    drop(first);

    // The claim expires; both clients offer again and land on the surviving node.
    rejoin(&mut a, Duration::from_secs(30)).await;
    rejoin(&mut b, Duration::from_secs(30)).await;
    let new_owner = redis_get(redis_port, &format!("copains:voice:room:{vc}")).unwrap();
    assert_ne!(new_owner, owner, "the room moved to the other node");
    let (ah, bh) = exchange(&mut a, &mut b, "second").await;
    assert!(
        ah >= 28 && bh >= 28,
        "after failover: alice heard {ah}/30, bob {bh}/30"
    );
    drop(sfu_a);
    drop(sfu_b);
    drop(redis);
}
