//! Whiteboard acceptance tests against a live server and PostgreSQL: strokes round-trip in
//! order with paging and nonce retries, events reach the bus, bounds answer 4xx JSON, the
//! message permission model (and IDOR: other servers' and invisible channels answer 404),
//! encrypted places carry only envelopes, a full board answers 409 until cleared, and a
//! deleted channel takes its board with it. Every request helper asserts no 5xx.

use std::sync::Arc;

use copains_api::communities::permissions::Permissions as P;
use copains_signaling::Topic;
use copains_wire::Id;
use copains_wire::events::Event;
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

/// A server with an owner, a plain member, an outsider (member of nothing) and a text channel.
struct World {
    owner: TestUser,
    member: TestUser,
    outsider: TestUser,
    server: String,
    text: String,
}

async fn world(ts: &TestServer, prefix: &str) -> World {
    let owner = ts.register(&format!("{prefix}owner")).await;
    let member = ts.register(&format!("{prefix}member")).await;
    let outsider = ts.register(&format!("{prefix}outsider")).await;
    let (s, v) = ts
        .post("/api/v1/servers", Some(&owner.token), json!({"name": "wb"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let server = id_of(&v);
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/invites"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let code = v["code"].as_str().unwrap().to_owned();
    let (s, v) = ts
        .post(
            &format!("/api/v1/invites/{code}"),
            Some(&member.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let text = channel(ts, &owner, &server, json!({"name": "draw", "kind": "text"})).await;
    World {
        owner,
        member,
        outsider,
        server,
        text,
    }
}

async fn channel(ts: &TestServer, owner: &TestUser, server: &str, body: Value) -> String {
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    id_of(&v)
}

async fn deny(ts: &TestServer, owner: &TestUser, ch: &str, target: &str, kind: &str, deny: P) {
    let (s, v) = ts
        .put(
            &format!("/api/v1/channels/{ch}/overwrites/{target}"),
            &owner.token,
            Some(json!({"kind": kind, "allow": 0, "deny": deny.0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn draw(ts: &TestServer, who: &TestUser, ch: &str, body: Value) -> (StatusCode, Value) {
    ts.post(
        &format!("/api/v1/channels/{ch}/whiteboard/strokes"),
        Some(&who.token),
        body,
    )
    .await
}

async fn board(ts: &TestServer, who: &TestUser, ch: &str, query: &str) -> (StatusCode, Value) {
    ts.get(
        &format!("/api/v1/channels/{ch}/whiteboard{query}"),
        &who.token,
    )
    .await
}

async fn clear(ts: &TestServer, who: &TestUser, ch: &str) -> (StatusCode, Value) {
    ts.delete(&format!("/api/v1/channels/{ch}/whiteboard"), &who.token)
        .await
}

fn pen(points: Value) -> Value {
    json!({"tool": "pen", "color": "#FF0000", "size": 6, "points": points})
}

fn envelope(ct: &str) -> Value {
    json!({"algorithm": "m.megolm.v1.aes-sha2", "sender_device_id": "DEVA",
           "session_id": "sess-1", "ciphertext": ct})
}

fn drain(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<copains_wire::events::BusEvent>>,
) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push(ev.event.clone());
    }
    out
}

fn assert_error(s: StatusCode, v: &Value, want: StatusCode) {
    assert_eq!(s, want, "{v}");
    assert!(
        v["code"].is_string() && v["message"].is_string(),
        "not a {{code, message}} body: {v}"
    );
}

#[tokio::test]
async fn whiteboard_strokes_roundtrip_page_retry_events_and_clear() {
    let ts = TestServer::start().await;
    let w = world(&ts, "wbrt").await;
    ts.state
        .bus
        .subscribe(&[Topic::Server(wid(&w.server))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();

    // An empty board.
    let (s, v) = board(&ts, &w.member, &w.text, "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["strokes"], json!([]));
    assert_eq!(v["has_more"], false);
    assert_eq!(
        (v["width"].as_i64(), v["height"].as_i64()),
        (Some(3200), Some(1800))
    );

    // The member draws: three strokes, one an eraser, one a single dot.
    let (s, a) = draw(
        &ts,
        &w.member,
        &w.text,
        pen(json!([10, 20, 30, 40, 3200, 1800])),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["color"], "#ff0000");
    assert_eq!(a["author_id"], w.member.id.as_str());
    assert_eq!(a["channel_id"], w.text.as_str());
    assert!(a["encrypted"].is_null());
    let (s, b) = draw(
        &ts,
        &w.owner,
        &w.text,
        json!({"tool": "eraser", "color": "#000000", "size": 64, "points": [15, 25, 35, 45], "nonce": "e-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["tool"], "eraser");
    // A retry with the same nonce is the same stroke (200), not a second one.
    let (s, b2) = draw(
        &ts,
        &w.owner,
        &w.text,
        json!({"tool": "eraser", "color": "#000000", "size": 64, "points": [15, 25, 35, 45], "nonce": "e-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b2}");
    assert_eq!(b2["id"], b["id"]);
    // The same nonce from someone else is their own stroke.
    let (s, c) = draw(
        &ts,
        &w.member,
        &w.text,
        json!({"tool": "pen", "color": "#00ff00", "size": 1, "points": [0, 0], "nonce": "e-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");

    // Everyone who sees the channel reads them back in order; pages with `after`.
    let (s, v) = board(&ts, &w.owner, &w.text, "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids: Vec<&str> = v["strokes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id_of(&a), id_of(&b), id_of(&c)]);
    assert_eq!(
        v["strokes"][0]["points"],
        json!([10, 20, 30, 40, 3200, 1800])
    );
    assert_eq!(v["strokes"][1]["size"], 64);
    let (_, p1) = board(&ts, &w.member, &w.text, "?limit=2").await;
    assert_eq!(p1["strokes"].as_array().unwrap().len(), 2);
    assert_eq!(p1["has_more"], true);
    let (_, p2) = board(
        &ts,
        &w.member,
        &w.text,
        &format!("?limit=2&after={}", id_of(&b)),
    )
    .await;
    assert_eq!(p2["strokes"].as_array().unwrap().len(), 1);
    assert_eq!(p2["strokes"][0]["id"], c["id"]);
    assert_eq!(p2["has_more"], false);

    // Bad input: 4xx JSON {code, message}, nothing stored.
    for body in [
        json!({}),
        json!({"tool": "pen", "color": "#ff0000", "size": 6}),
        json!({"tool": "brush", "color": "#ff0000", "size": 6, "points": [1, 1]}),
        pen(json!([])),
        pen(json!([1, 2, 3])),
        pen(json!([-1, 0])),
        pen(json!([0, 1801])),
        pen(json!([3201, 0])),
        pen(json!([1.5, 2])),
        pen(json!([9_999_999_999_i64, 0])),
        pen(json!(vec![5; 2002])),
        json!({"tool": "pen", "color": "red", "size": 6, "points": [1, 1]}),
        json!({"tool": "pen", "color": "#ff0000", "size": 0, "points": [1, 1]}),
        json!({"tool": "pen", "color": "#ff0000", "size": 201, "points": [1, 1]}),
        json!({"tool": "pen", "color": "#ff0000", "size": 6, "points": [1, 1], "bogus": true}),
        json!({"tool": "pen", "color": "#ff0000", "size": 6, "points": [1, 1], "nonce": ""}),
        json!({"encrypted": envelope("aGk=")}),
    ] {
        let (s, v) = draw(&ts, &w.member, &w.text, body.clone()).await;
        assert!(s.is_client_error(), "{body} → {s} {v}");
        assert_error(s, &v, s);
    }
    assert!(
        draw(&ts, &w.member, &w.text, pen(json!(vec![5; 2000])))
            .await
            .0
            == StatusCode::CREATED
    );
    for q in ["?limit=0", "?limit=501", "?after=abc"] {
        let (s, v) = board(&ts, &w.member, &w.text, q).await;
        assert!(s.is_client_error(), "{q}: {s} {v}");
        assert_error(s, &v, s);
    }
    let (_, v) = board(&ts, &w.member, &w.text, "").await;
    assert_eq!(v["strokes"].as_array().unwrap().len(), 4);

    // Clearing needs MANAGE_MESSAGES: the member may not, the owner may.
    let (s, v) = clear(&ts, &w.member, &w.text).await;
    assert_error(s, &v, StatusCode::FORBIDDEN);
    let (s, v) = clear(&ts, &w.owner, &w.text).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, v) = board(&ts, &w.member, &w.text, "").await;
    assert_eq!(v["strokes"], json!([]));
    // Drawing resumes on the cleared board; ids keep increasing.
    let (s, d) = draw(&ts, &w.member, &w.text, pen(json!([1, 1]))).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert!(wid(&id_of(&d)).0 > wid(&id_of(&c)).0);

    // Every stroke and the clear were published to the channel's audience.
    let evs = drain(&mut rx);
    let strokes: Vec<&Value> = evs
        .iter()
        .filter_map(|e| match e {
            Event::WhiteboardStroke { stroke } => Some(stroke),
            _ => None,
        })
        .collect();
    assert_eq!(strokes.len(), 5, "{evs:?}");
    assert_eq!(strokes[0]["id"], a["id"]);
    assert_eq!(strokes[0]["points"], a["points"]);
    let clears: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::WhiteboardClear {
                channel_id,
                up_to,
                user_id,
            } => Some((*channel_id, *up_to, *user_id)),
            _ => None,
        })
        .collect();
    assert_eq!(clears.len(), 1, "{evs:?}");
    assert_eq!(clears[0].0, wid(&w.text));
    assert!(clears[0].1.0 >= wid(&id_of(&c)).0 && clears[0].1.0 < wid(&id_of(&d)).0);
    assert_eq!(clears[0].2, wid(&w.owner.id));
}

#[tokio::test]
async fn whiteboard_follows_the_message_permissions_and_hides_other_places() {
    let ts = TestServer::start().await;
    let w = world(&ts, "wbperm").await;
    let (s, v) = draw(&ts, &w.owner, &w.text, pen(json!([1, 1]))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Someone outside the server sees nothing: 404 for reading, drawing and clearing.
    let (s, v) = board(&ts, &w.outsider, &w.text, "").await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = draw(&ts, &w.outsider, &w.text, pen(json!([1, 1]))).await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = clear(&ts, &w.outsider, &w.text).await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    // Unknown ids too.
    let (s, v) = board(&ts, &w.member, "123456789", "").await;
    assert_error(s, &v, StatusCode::NOT_FOUND);

    // Another server's channel, even its owner's, stays invisible to the member.
    let (s, v) = ts
        .post(
            "/api/v1/servers",
            Some(&w.outsider.token),
            json!({"name": "other"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let foreign = channel(
        &ts,
        &w.outsider,
        &id_of(&v),
        json!({"name": "x", "kind": "text"}),
    )
    .await;
    let (s, v) = draw(&ts, &w.member, &foreign, pen(json!([1, 1]))).await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = clear(&ts, &w.owner, &foreign).await;
    assert_error(s, &v, StatusCode::NOT_FOUND);

    // A private channel: hidden from the member (404), so is its board.
    let private = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "staff", "kind": "text"}),
    )
    .await;
    deny(&ts, &w.owner, &private, &w.server, "role", P::VIEW_CHANNEL).await;
    let (s, v) = board(&ts, &w.member, &private, "").await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = draw(&ts, &w.member, &private, pen(json!([1, 1]))).await;
    assert_error(s, &v, StatusCode::NOT_FOUND);

    // Without READ_HISTORY the board cannot be read (403), drawing still works.
    let ro = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "ro", "kind": "text"}),
    )
    .await;
    deny(&ts, &w.owner, &ro, &w.member.id, "member", P::READ_HISTORY).await;
    let (s, v) = board(&ts, &w.member, &ro, "").await;
    assert_error(s, &v, StatusCode::FORBIDDEN);
    assert_eq!(v["code"], "missing_permission");
    let (s, v) = draw(&ts, &w.member, &ro, pen(json!([1, 1]))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Without SEND_MESSAGES nobody draws (403), reading still works.
    deny(
        &ts,
        &w.owner,
        &w.text,
        &w.member.id,
        "member",
        P::SEND_MESSAGES,
    )
    .await;
    let (s, v) = draw(&ts, &w.member, &w.text, pen(json!([1, 1]))).await;
    assert_error(s, &v, StatusCode::FORBIDDEN);
    let (s, v) = board(&ts, &w.member, &w.text, "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["strokes"].as_array().unwrap().len(), 1);

    // A role with MANAGE_MESSAGES may clear.
    let (s, role) = ts
        .post(
            &format!("/api/v1/servers/{}/roles", w.server),
            Some(&w.owner.token),
            json!({"name": "mods", "permissions": P::MANAGE_MESSAGES.0}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{role}");
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{}/members/{}", w.server, w.member.id),
            &w.owner.token,
            json!({"roles": [id_of(&role)]}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let (s, v) = clear(&ts, &w.member, &w.text).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");

    // Voice channels hold no board.
    let voice = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "v", "kind": "voice"}),
    )
    .await;
    let (s, v) = draw(&ts, &w.owner, &voice, pen(json!([1, 1]))).await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = board(&ts, &w.owner, &voice, "").await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY);

    // Deleting a channel deletes its board.
    let (s, v) = ts
        .delete(&format!("/api/v1/channels/{ro}"), &w.owner.token)
        .await;
    assert!(s.is_success(), "{s} {v}");
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM whiteboard_strokes WHERE channel_id = $1)
              + (SELECT count(*) FROM whiteboards WHERE channel_id = $1)",
    )
    .bind(wid(&ro).0)
    .fetch_one(&ts.state.db)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn whiteboard_encrypted_places_carry_only_envelopes() {
    let ts = TestServer::start().await;
    let w = world(&ts, "wbenc").await;
    let enc = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "secret", "kind": "text", "encrypted": true}),
    )
    .await;
    // Plaintext, or plaintext next to an envelope, is refused.
    for body in [
        pen(json!([1, 1])),
        json!({"tool": "pen", "encrypted": envelope("aGk=")}),
        json!({"points": [1, 1], "encrypted": envelope("aGk=")}),
        json!({"encrypted": envelope("not base64 !!")}),
        json!({}),
    ] {
        let (s, v) = draw(&ts, &w.member, &enc, body.clone()).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Larger than a stroke may be (32 KiB), though a message could be (64 KiB).
    let big = base64_of(&vec![7u8; 32 * 1024 + 1]);
    let (s, v) = draw(&ts, &w.member, &enc, json!({"encrypted": envelope(&big)})).await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY);

    let ct = base64_of(b"megolm ciphertext of a stroke");
    let (s, v) = draw(
        &ts,
        &w.member,
        &enc,
        json!({"encrypted": envelope(&ct), "nonce": "n1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["encrypted"], envelope(&ct));
    assert!(v["points"].is_null() && v["tool"].is_null() && v["color"].is_null());
    let (_, page) = board(&ts, &w.owner, &enc, "").await;
    assert_eq!(page["strokes"][0]["encrypted"]["ciphertext"], ct.as_str());
    // Nothing readable was stored.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM whiteboard_strokes WHERE channel_id = $1 AND points IS NOT NULL",
    )
    .bind(wid(&enc).0)
    .fetch_one(&ts.state.db)
    .await
    .unwrap();
    assert_eq!(n, 0);

    // DMs: always encrypted; every recipient may draw and clear, nobody else sees the board.
    let (s, dm) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&w.member.token),
            json!({"recipients": [w.owner.id]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dm}");
    let dm = id_of(&dm);
    let (s, v) = draw(&ts, &w.member, &dm, pen(json!([1, 1]))).await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = draw(&ts, &w.owner, &dm, json!({"encrypted": envelope(&ct)})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = board(&ts, &w.outsider, &dm, "").await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = draw(&ts, &w.outsider, &dm, json!({"encrypted": envelope(&ct)})).await;
    assert_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = clear(&ts, &w.member, &dm).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, page) = board(&ts, &w.owner, &dm, "").await;
    assert_eq!(page["strokes"], json!([]));
}

#[tokio::test]
async fn whiteboard_full_board_answers_409_until_cleared() {
    let ts = TestServer::start().await;
    let w = world(&ts, "wbfull").await;
    let (s, v) = draw(&ts, &w.member, &w.text, pen(json!([1, 1]))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Pretend the board already holds the most strokes it may (drawing 5000 over HTTP would
    // only slow the test down; the count is what the insert checks under the board's lock).
    sqlx::query("UPDATE whiteboards SET stroke_count = $2 WHERE channel_id = $1")
        .bind(wid(&w.text).0)
        .bind(copains_api::whiteboard::MAX_STROKES)
        .execute(&ts.state.db)
        .await
        .unwrap();
    let (s, v) = draw(&ts, &w.member, &w.text, pen(json!([2, 2]))).await;
    assert_error(s, &v, StatusCode::CONFLICT);
    assert_eq!(v["code"], "whiteboard_full");
    let (s, _) = clear(&ts, &w.owner, &w.text).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = draw(&ts, &w.member, &w.text, pen(json!([2, 2]))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn whiteboard_concurrent_strokes_are_all_kept_in_id_order() {
    let ts = Arc::new(TestServer::start().await);
    let w = world(&ts, "wbconc").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let ts = ts.clone();
        let (who, ch) = (
            if i % 2 == 0 {
                w.owner.clone()
            } else {
                w.member.clone()
            },
            w.text.clone(),
        );
        tasks.push(tokio::spawn(async move {
            draw(&ts, &who, &ch, pen(json!([i, i]))).await
        }));
    }
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, v) = board(&ts, &w.owner, &w.text, "").await;
    let ids: Vec<i64> = v["strokes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| wid(s["id"].as_str().unwrap()).0)
        .collect();
    assert_eq!(ids.len(), 12);
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "{ids:?}");
    let count: i32 =
        sqlx::query_scalar("SELECT stroke_count FROM whiteboards WHERE channel_id = $1")
            .bind(wid(&w.text).0)
            .fetch_one(&ts.state.db)
            .await
            .unwrap();
    assert_eq!(count, 12);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
