//! The real `copains serve` process end to end: HTTP API and gateway in one process on the
//! in-process bus. Events reach exactly the connections allowed to see them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn serve_delivers_channel_events_to_members_only_and_checks_origin() {
    let db = TestDb::new("serve");
    let dir = temp_dir("serve");
    let proc = Proc::start("serve", &[("DATABASE_URL", db.url.clone())], &dir).await;
    let s = proc.base.as_str();
    let (alice_id, alice) = register(s, "alice").await;
    let (bob_id, bob) = register(s, "bob").await;
    let server = post(
        s,
        "/api/v1/servers",
        Some(&alice),
        json!({"name": "Copains"}),
    )
    .await;
    let sid = server["id"].as_str().unwrap().to_owned();

    // A foreign Origin is refused; no Origin (native client) and the listen origin are accepted.
    assert!(connect(s, Some("https://evil.example")).await.is_err());
    let mut a = connect(s, Some(s)).await.unwrap();
    let ready = identify(&mut a, &alice).await;
    assert_eq!(ready["user"]["username"], "alice");
    assert!(
        ready["read_states"].is_array(),
        "ready carries my read states"
    );
    assert!(ready["dm_channels"].is_array(), "ready carries my DMs");
    assert!(
        ready["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|sv| sv["id"] == sid.as_str())
    );
    let mut b = connect(s, None).await.unwrap();
    let ready_b = identify(&mut b, &bob).await;
    assert!(ready_b["servers"].as_array().unwrap().is_empty());

    // Alice makes a channel: she hears of it, Bob (not a member) does not.
    post(
        s,
        &format!("/api/v1/servers/{sid}/channels"),
        Some(&alice),
        json!({"name": "general-2", "kind": "text"}),
    )
    .await;
    let ch = wait_dispatch(&mut a, "channel_create").await;
    assert_eq!(ch["channel"]["name"], "general-2");

    // Bob joins through an invite; the next channel reaches him too.
    let inv = post(
        s,
        &format!("/api/v1/servers/{sid}/invites"),
        Some(&alice),
        json!({}),
    )
    .await;
    post(
        s,
        &format!("/api/v1/invites/{}", inv["code"].as_str().unwrap()),
        Some(&bob),
        json!({}),
    )
    .await;
    wait_dispatch(&mut b, "server_create").await;
    // Both were online before the join and nobody changed status: the join's scope refresh
    // tells Bob that Alice is online, and Alice (the server's members) that Bob is.
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        wait_for(&mut b, "presence_update", |d| {
            d["user_id"] == alice_id.as_str()
        }),
    )
    .await
    .expect("bob learns alice's presence after joining");
    assert_eq!(seen["status"], "online");
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        wait_for(&mut a, "presence_update", |d| {
            d["user_id"] == bob_id.as_str()
        }),
    )
    .await
    .expect("alice learns the presence of bob, who just joined");
    assert_eq!(seen["status"], "online");
    // The node subscribes Bob's connection to the server's topic asynchronously after the
    // join (scope refresh); events of the first moments after a join can be missed, which is
    // why clients load a joined server over REST after `server_create`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    post(
        s,
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

    // A fresh connection of Alice learns in `ready` that Bob, a co-member, is online.
    let mut a2 = connect(s, None).await.unwrap();
    let ready2 = identify(&mut a2, &alice).await;
    let bob_presence = ready2["presences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user_id"] == bob_id.as_str())
        .cloned();
    assert_eq!(
        bob_presence.as_ref().map(|p| p["status"].clone()),
        Some(json!("online")),
        "co-member presence in ready: {}",
        ready2["presences"]
    );

    // A bad token is closed with 4004.
    let mut c = connect(s, None).await.unwrap();
    let _hello = next_json(&mut c).await;
    send(&mut c, json!({"op": "identify", "token": "garbage"})).await;
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
