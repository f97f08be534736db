//! What gateway events carry, seen on the bus: message objects are reader-neutral (no
//! per-reader `me` on reactions, whoever caused the event), and a thread announced as
//! `channel_create` says `kind: "thread"`.

use std::sync::Arc;
use std::time::Duration;

use copains_signaling::Topic;
use copains_wire::Id;
use copains_wire::events::{BusEvent, Event};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, TestUser};

fn id_of(v: &Value) -> String {
    assert!(v["id"].is_string(), "no id in {v}");
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn wid(s: &str) -> Id {
    Id(s.parse().unwrap())
}

/// A server owned by `owner` that `member` joined; returns (server id, its first text channel).
async fn server_with_member(
    ts: &TestServer,
    owner: &TestUser,
    member: &TestUser,
) -> (String, String) {
    let (s, srv) = ts
        .post(
            "/api/v1/servers",
            Some(&owner.token),
            json!({"name": "events"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{srv}");
    let server = id_of(&srv);
    let (s, inv) = ts
        .post(
            &format!("/api/v1/servers/{server}/invites"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let code = inv["code"].as_str().unwrap().to_owned();
    let (s, v) = ts
        .post(
            &format!("/api/v1/invites/{code}"),
            Some(&member.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, ch) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "chat", "kind": "text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ch}");
    (server, id_of(&ch))
}

/// The next event on the bus matching `pick` (others are skipped), within 5 s.
async fn next_matching<T>(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<BusEvent>>,
    pick: impl Fn(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = rx.recv().await.expect("bus closed");
            if let Some(t) = pick(&ev.event) {
                return t;
            }
        }
    })
    .await
    .expect("no matching event within 5 s")
}

fn updated(id: &str) -> impl Fn(&Event) -> Option<Value> + '_ {
    move |e| match e {
        Event::MessageUpdate { message } if message["id"] == id => Some(message.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn message_update_events_are_reader_neutral() {
    let ts = TestServer::start().await;
    let owner = ts.register("neutralowner").await;
    let member = ts.register("neutralmember").await;
    let (server, ch) = server_with_member(&ts, &owner, &member).await;
    ts.state
        .bus
        .subscribe(&[Topic::Server(wid(&server))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();

    let (s, m) = ts
        .post(
            &format!("/api/v1/channels/{ch}/messages"),
            Some(&member.token),
            json!({"content": "react to me"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let mid = id_of(&m);
    let created = next_matching(&mut rx, |e| match e {
        Event::MessageCreate { message } if message["id"] == mid.as_str() => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(created["reactions"], json!([]));
    let base = format!("/api/v1/channels/{ch}/messages/{mid}");
    let (s, v) = ts
        .put(
            &format!("{base}/reactions/%F0%9F%91%8D/@me"),
            &owner.token,
            None,
        )
        .await;
    assert!(s.is_success(), "{s} {v}");

    // The author (who did not react) edits: the event must not say `me: false` to the owner.
    let (s, v) = ts
        .patch(&base, &member.token, json!({"content": "edited"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The API answer is rendered for the caller, with `me`.
    assert_eq!(
        v["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": false}])
    );
    let ev = next_matching(&mut rx, updated(&mid)).await;
    assert_eq!(ev["content"], "edited");
    assert_eq!(
        ev["reactions"],
        json!([{"emoji": "👍", "count": 1}]),
        "an edit event carries counts without `me`"
    );

    // The owner (who reacted) pins: the event must not say `me: true` to the author.
    let (s, v) = ts
        .put(
            &format!("/api/v1/channels/{ch}/pins/{mid}"),
            &owner.token,
            None,
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let ev = next_matching(&mut rx, updated(&mid)).await;
    assert_eq!(ev["pinned"], true);
    assert_eq!(
        ev["reactions"],
        json!([{"emoji": "👍", "count": 1}]),
        "a pin event carries counts without `me`"
    );

    // Each reader still gets their own `me` over REST.
    let (_, mine) = ts.get(&base, &owner.token).await;
    assert_eq!(mine["reactions"][0]["me"], true, "{mine}");
    let (_, theirs) = ts.get(&base, &member.token).await;
    assert_eq!(theirs["reactions"][0]["me"], false, "{theirs}");
}

#[tokio::test]
async fn a_thread_is_announced_with_kind_thread() {
    let ts = TestServer::start().await;
    let owner = ts.register("kindowner").await;
    let member = ts.register("kindmember").await;
    let (server, ch) = server_with_member(&ts, &owner, &member).await;
    ts.state
        .bus
        .subscribe(&[Topic::Server(wid(&server))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();
    let (s, m) = ts
        .post(
            &format!("/api/v1/channels/{ch}/messages"),
            Some(&member.token),
            json!({"content": "thread starter"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let mid = id_of(&m);
    let (s, t) = ts
        .post(
            &format!("/api/v1/channels/{ch}/messages/{mid}/threads"),
            Some(&member.token),
            json!({"name": "side talk"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tid = id_of(&t);
    assert_eq!(t["kind"], "thread", "{t}");
    let announced = next_matching(&mut rx, |e| match e {
        Event::ChannelCreate { channel } if channel["id"] == tid.as_str() => Some(channel.clone()),
        _ => None,
    })
    .await;
    assert_eq!(announced["kind"], "thread", "{announced}");
    assert_eq!(announced["parent_id"], ch.as_str());
    assert_eq!(announced["starter_message_id"], mid.as_str());
    // A server channel created the usual way keeps its own kind.
    let (s, c) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "plain", "kind": "text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let cid = id_of(&c);
    let plain = next_matching(&mut rx, |e| match e {
        Event::ChannelCreate { channel } if channel["id"] == cid.as_str() => Some(channel.clone()),
        _ => None,
    })
    .await;
    assert_eq!(plain["kind"], "text");
    // Listing threads says the same.
    let (s, list) = ts
        .get(&format!("/api/v1/channels/{ch}/threads"), &owner.token)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list[0]["kind"], "thread", "{list}");
}
