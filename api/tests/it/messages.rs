//! Messaging acceptance tests against a live server and PostgreSQL: nonce idempotency under
//! concurrent retries, pagination under concurrent inserts, ids from other channels,
//! encrypted places, DMs and blocks, reactions, pins, read states, search visibility,
//! threads, slow mode and timeouts. Every request helper asserts no 5xx.

use std::collections::HashSet;
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

async fn create_server(ts: &TestServer, owner: &TestUser) -> String {
    let (s, v) = ts
        .post(
            "/api/v1/servers",
            Some(&owner.token),
            json!({"name": "msgs"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    id_of(&v)
}

async fn join_server(ts: &TestServer, owner: &TestUser, server: &str, who: &TestUser) {
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
            Some(&who.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
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

async fn overwrite(ts: &TestServer, owner: &TestUser, ch: &str, target: &str, kind: &str, deny: P) {
    let (s, v) = ts
        .put(
            &format!("/api/v1/channels/{ch}/overwrites/{target}"),
            &owner.token,
            Some(json!({"kind": kind, "allow": 0, "deny": deny.0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn send(ts: &TestServer, who: &TestUser, ch: &str, body: Value) -> (StatusCode, Value) {
    ts.post(
        &format!("/api/v1/channels/{ch}/messages"),
        Some(&who.token),
        body,
    )
    .await
}

async fn say(ts: &TestServer, who: &TestUser, ch: &str, text: &str) -> String {
    let (s, v) = send(ts, who, ch, json!({"content": text})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    id_of(&v)
}

fn envelope(ct: &str) -> Value {
    json!({"algorithm": "m.megolm.v1.aes-sha2", "sender_device_id": "DEVA",
           "session_id": "sess-1", "ciphertext": ct})
}

/// A server with an owner, a plain member and a text channel.
struct World {
    owner: TestUser,
    member: TestUser,
    server: String,
    text: String,
}

async fn world(ts: &TestServer, prefix: &str) -> World {
    let owner = ts.register(&format!("{prefix}owner")).await;
    let member = ts.register(&format!("{prefix}member")).await;
    let server = create_server(ts, &owner).await;
    join_server(ts, &owner, &server, &member).await;
    let text = channel(ts, &owner, &server, json!({"name": "chat", "kind": "text"})).await;
    World {
        owner,
        member,
        server,
        text,
    }
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

#[tokio::test]
async fn messages_crud_replies_mentions_events_and_foreign_ids() {
    let ts = TestServer::start().await;
    let w = world(&ts, "crud").await;
    ts.state
        .bus
        .subscribe(&[Topic::Server(wid(&w.server))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();
    let other = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "other", "kind": "text"}),
    )
    .await;

    // Create, with a mention of the owner and an @everyone the member may not make.
    let (s, m) = send(
        &ts,
        &w.member,
        &w.text,
        json!({"content": format!("hi <@{}> and <@999> @everyone", w.owner.id)}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let mid = id_of(&m);
    assert_eq!(
        m["content"],
        format!("hi <@{}> and <@999> @everyone", w.owner.id)
    );
    assert_eq!(m["author_id"], w.member.id.as_str());
    assert_eq!(m["mentions"], json!([w.owner.id]));
    assert_eq!(m["mention_everyone"], false);
    assert!(m["encrypted"].is_null());
    // The owner holds MENTION_EVERYONE.
    let (_, m2) = send(
        &ts,
        &w.owner,
        &w.text,
        json!({"content": "@everyone listen"}),
    )
    .await;
    assert_eq!(m2["mention_everyone"], true);

    // Replies: same channel fine; a message of another channel is refused.
    let (s, r) = send(
        &ts,
        &w.owner,
        &w.text,
        json!({"content": "re", "reply_to": mid}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["reply_to"], mid.as_str());
    let foreign = say(&ts, &w.owner, &other, "elsewhere").await;
    let (s, _) = send(
        &ts,
        &w.owner,
        &w.text,
        json!({"content": "re", "reply_to": foreign}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // A message id of another channel answers 404 everywhere.
    let wrong = format!("/api/v1/channels/{}/messages/{foreign}", w.text);
    assert_eq!(
        ts.get(&wrong, &w.owner.token).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.patch(&wrong, &w.owner.token, json!({"content": "x"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.delete(&wrong, &w.owner.token).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.post(&format!("{wrong}/ack"), Some(&w.owner.token), json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.put(
            &format!("/api/v1/channels/{}/pins/{foreign}", w.text),
            &w.owner.token,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    // Unknown channel, garbage ids.
    assert_eq!(
        ts.get("/api/v1/channels/123456/messages", &w.owner.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.get(
            &format!("/api/v1/channels/{}/messages/abc", w.text),
            &w.owner.token
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Fetch, edit (author only), delete (author or MANAGE_MESSAGES).
    let path = format!("/api/v1/channels/{}/messages/{mid}", w.text);
    let (s, got) = ts.get(&path, &w.owner.token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["id"], mid.as_str());
    let (s, e) = ts
        .patch(&path, &w.owner.token, json!({"content": "hijack"}))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_author"))
    );
    let (s, e) = ts
        .patch(
            &path,
            &w.member.token,
            json!({"content": "edited <@" .to_owned() + &w.member.id + ">"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(e["edited_at"].is_string());
    assert_eq!(e["mentions"], json!([w.member.id]));
    let theirs = say(&ts, &w.owner, &w.text, "owner's").await;
    let (s, _) = ts
        .delete(
            &format!("/api/v1/channels/{}/messages/{theirs}", w.text),
            &w.member.token,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        ts.delete(&path, &w.owner.token).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(ts.get(&path, &w.owner.token).await.0, StatusCode::NOT_FOUND);

    // Bad bodies: blank, too long, unknown fields, encrypted in a plaintext channel.
    for body in [
        json!({"content": "   "}),
        json!({"content": "x".repeat(4001)}),
        json!({}),
        json!({"content": "a", "bogus": 1}),
        json!({"encrypted": envelope("aGk=")}),
        json!({"content": "a", "mentions": [w.owner.id]}),
        json!({"content": "a", "nonce": ""}),
    ] {
        let (s, v) = send(&ts, &w.member, &w.text, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
    }
    // Messages live only in text channels.
    let voice = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "v", "kind": "voice"}),
    )
    .await;
    assert_eq!(
        send(&ts, &w.owner, &voice, json!({"content": "x"})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Every change was published.
    let evs = drain(&mut rx);
    let creates = evs
        .iter()
        .filter(|e| matches!(e, Event::MessageCreate { .. }))
        .count();
    assert_eq!(creates, 5, "{evs:?}");
    assert!(evs.iter().any(|e| matches!(e, Event::MessageUpdate { .. })));
    assert!(evs.iter().any(
        |e| matches!(e, Event::MessageDelete { message_id, .. } if message_id.to_string() == mid)
    ));
}

#[tokio::test]
async fn messages_nonce_concurrent_retries_create_one() {
    let ts = Arc::new(TestServer::start().await);
    let w = world(&ts, "nonce").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let ts = ts.clone();
        let (m, ch) = (w.member.clone(), w.text.clone());
        tasks.push(tokio::spawn(async move {
            send(&ts, &m, &ch, json!({"content": "once", "nonce": "n-123"})).await
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {v}");
        if s == StatusCode::CREATED {
            created += 1;
        }
        assert_eq!(v["nonce"], "n-123");
        ids.insert(id_of(&v));
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let (_, hist) = ts
        .get(
            &format!("/api/v1/channels/{}/messages", w.text),
            &w.member.token,
        )
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 1);
    // Another user may use the same nonce; the same user in another channel may not.
    let (s, _) = send(
        &ts,
        &w.owner,
        &w.text,
        json!({"content": "mine", "nonce": "n-123"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let other = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "o", "kind": "text"}),
    )
    .await;
    let (s, v) = send(
        &ts,
        &w.member,
        &other,
        json!({"content": "x", "nonce": "n-123"}),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("nonce_reused"))
    );
    // After the 10-minute window the nonce names a new message.
    sqlx::query("UPDATE message_nonces SET created_at = now() - interval '11 minutes'")
        .execute(&ts.state.db)
        .await
        .unwrap();
    let (s, v) = send(
        &ts,
        &w.member,
        &w.text,
        json!({"content": "again", "nonce": "n-123"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(!ids.contains(&id_of(&v)));
    // Stale nonces are pruned (one live nonce row is left: the one just used).
    sqlx::query("UPDATE message_nonces SET created_at = now() - interval '11 minutes'")
        .execute(&ts.state.db)
        .await
        .unwrap();
    send(
        &ts,
        &w.member,
        &w.text,
        json!({"content": "fresh", "nonce": "n-456"}),
    )
    .await;
    let pruned =
        copains_api::messaging::messages::prune_stale_nonces(&ts.state.db, wid(&w.member.id))
            .await
            .unwrap();
    // (The background pruning may have run first: 1 send in 32.)
    assert!(pruned <= 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM message_nonces WHERE author_id = $1")
        .bind(wid(&w.member.id).0)
        .fetch_one(&ts.state.db)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn messages_pagination_under_concurrent_inserts_has_no_gaps_or_duplicates() {
    let ts = Arc::new(TestServer::start().await);
    let w = world(&ts, "page").await;
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let mut writers = Vec::new();
    for k in 0..WRITERS {
        let ts = ts.clone();
        let who = if k % 2 == 0 {
            w.owner.clone()
        } else {
            w.member.clone()
        };
        let ch = w.text.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(say(&ts, &who, &ch, &format!("w{k} m{i}")).await);
            }
            ids
        }));
    }
    // Page forward with `after` while the writers run.
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor = "1".to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < WRITERS * EACH {
        assert!(
            std::time::Instant::now() < deadline,
            "reader stalled at {}",
            seen.len()
        );
        let (s, page) = ts
            .get(
                &format!(
                    "/api/v1/channels/{}/messages?after={cursor}&limit=7",
                    w.text
                ),
                &w.member.token,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for m in page.as_array().unwrap() {
            let id: i64 = id_of(m).parse().unwrap();
            assert!(
                seen.last().is_none_or(|l| *l < id),
                "out of order or duplicate"
            );
            seen.push(id);
            cursor = id.to_string();
        }
    }
    let mut written: Vec<i64> = Vec::new();
    for t in writers {
        written.extend(t.await.unwrap().iter().map(|s| s.parse::<i64>().unwrap()));
    }
    written.sort_unstable();
    assert_eq!(
        seen, written,
        "the forward reader missed or duplicated messages"
    );

    // Backwards with `before` covers everything exactly once too.
    let mut back: Vec<i64> = Vec::new();
    let mut url = format!("/api/v1/channels/{}/messages?limit=100", w.text);
    loop {
        let (_, page) = ts.get(&url, &w.member.token).await;
        let page: Vec<i64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|m| id_of(m).parse().unwrap())
            .collect();
        if page.is_empty() {
            break;
        }
        assert!(
            page.windows(2).all(|p| p[0] < p[1]),
            "a page is oldest first"
        );
        back.splice(0..0, page.iter().copied());
        url = format!(
            "/api/v1/channels/{}/messages?before={}&limit=30",
            w.text, page[0]
        );
    }
    assert_eq!(back, written);
    // `around` includes the anchor and is centred on it.
    let mid = written[50];
    let (_, page) = ts
        .get(
            &format!("/api/v1/channels/{}/messages?around={mid}&limit=10", w.text),
            &w.member.token,
        )
        .await;
    let page: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|m| id_of(m).parse().unwrap())
        .collect();
    assert_eq!(page, written[46..56].to_vec());
    // Limits and exclusive cursors.
    for q in ["limit=0", "limit=101", "before=1&after=2", "limit=abc"] {
        let (s, _) = ts
            .get(
                &format!("/api/v1/channels/{}/messages?{q}", w.text),
                &w.member.token,
            )
            .await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST,
            "{q}: {s}"
        );
    }
}

#[tokio::test]
async fn messages_visibility_history_send_timeout_and_slowmode() {
    let ts = TestServer::start().await;
    let w = world(&ts, "perm").await;
    let m = &w.member;
    let hidden = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "hidden", "kind": "text"}),
    )
    .await;
    overwrite(&ts, &w.owner, &hidden, &m.id, "member", P::VIEW_CHANNEL).await;
    let secret = say(&ts, &w.owner, &hidden, "secret").await;
    // No VIEW_CHANNEL: the channel does not exist for them (404 everywhere).
    for path in [
        format!("/api/v1/channels/{hidden}/messages"),
        format!("/api/v1/channels/{hidden}/messages/{secret}"),
        format!("/api/v1/channels/{hidden}/pins"),
    ] {
        assert_eq!(
            ts.get(&path, &m.token).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        send(&ts, m, &hidden, json!({"content": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.put(
            &format!("/api/v1/channels/{hidden}/messages/{secret}/reactions/%F0%9F%91%8D/@me"),
            &m.token,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Role overwrites: @everyone denied VIEW_CHANNEL, a role allows it back; a role deny
    // of SEND_MESSAGES applies to its holders only; an administrator role ignores overwrites.
    let staff = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "staff", "kind": "text"}),
    )
    .await;
    overwrite(&ts, &w.owner, &staff, &w.server, "role", P::VIEW_CHANNEL).await;
    assert_eq!(
        send(&ts, m, &staff, json!({"content": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, role) = ts
        .post(
            &format!("/api/v1/servers/{}/roles", w.server),
            Some(&w.owner.token),
            json!({"name": "staff", "permissions": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{role}");
    let role = id_of(&role);
    let (s, v) = ts
        .put(
            &format!("/api/v1/channels/{staff}/overwrites/{role}"),
            &w.owner.token,
            Some(json!({"kind": "role", "allow": P::VIEW_CHANNEL.0, "deny": P::SEND_MESSAGES.0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{}/members/{}", w.server, m.id),
            &w.owner.token,
            json!({"roles": [role]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, e) = send(&ts, m, &staff, json!({"content": "x"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission"))
    );
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{staff}/messages"), &m.token)
            .await
            .0,
        StatusCode::OK
    );
    let (s, admin) = ts
        .post(
            &format!("/api/v1/servers/{}/roles", w.server),
            Some(&w.owner.token),
            json!({"name": "admin", "permissions": P::ADMINISTRATOR.0}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{admin}");
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{}/members/{}", w.server, m.id),
            &w.owner.token,
            json!({"roles": [role, id_of(&admin)]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        send(&ts, m, &staff, json!({"content": "admin"})).await.0,
        StatusCode::CREATED
    );
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{}/members/{}", w.server, m.id),
            &w.owner.token,
            json!({"roles": []}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        send(&ts, m, &staff, json!({"content": "x"})).await.0,
        StatusCode::NOT_FOUND
    );

    // No READ_HISTORY: may send, may not read (403 missing_permission).
    let blind = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "blind", "kind": "text"}),
    )
    .await;
    overwrite(&ts, &w.owner, &blind, &m.id, "member", P::READ_HISTORY).await;
    let old = say(&ts, &w.owner, &blind, "before").await;
    assert_eq!(
        send(&ts, m, &blind, json!({"content": "x"})).await.0,
        StatusCode::CREATED
    );
    let (s, e) = ts
        .get(&format!("/api/v1/channels/{blind}/messages"), &m.token)
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission"))
    );
    assert_eq!(
        ts.get(
            &format!("/api/v1/channels/{blind}/messages/{old}"),
            &m.token
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // No SEND_MESSAGES: 403.
    let ro = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "ro", "kind": "text"}),
    )
    .await;
    overwrite(&ts, &w.owner, &ro, &w.server, "role", P::SEND_MESSAGES).await;
    let (s, e) = send(&ts, m, &ro, json!({"content": "x"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission"))
    );
    assert_eq!(
        send(&ts, &w.owner, &ro, json!({"content": "x"})).await.0,
        StatusCode::CREATED
    );

    // Slow mode: 429 with Retry-After; the owner is exempt.
    let slow = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "slow", "kind": "text", "slowmode_secs": 60}),
    )
    .await;
    assert_eq!(
        send(&ts, m, &slow, json!({"content": "1"})).await.0,
        StatusCode::CREATED
    );
    let resp = ts
        .http
        .post(ts.url(&format!("/api/v1/channels/{slow}/messages")))
        .bearer_auth(&m.token)
        .json(&json!({"content": "2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    for _ in 0..2 {
        assert_eq!(
            send(&ts, &w.owner, &slow, json!({"content": "o"})).await.0,
            StatusCode::CREATED
        );
    }

    // Timeout: 403 timed_out, reading still allowed.
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{}/members/{}", w.server, m.id),
            &w.owner.token,
            json!({"timeout_until": until}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, e) = send(&ts, m, &w.text, json!({"content": "x"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("timed_out"))
    );
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{}/messages", w.text), &m.token)
            .await
            .0,
        StatusCode::OK
    );
    // A stranger sees nothing.
    let stranger = ts.register("permstranger").await;
    assert_eq!(
        ts.get(
            &format!("/api/v1/channels/{}/messages", w.text),
            &stranger.token
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    // No token: 401.
    let (s, _) = ts
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/channels/{}/messages", w.text),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn messages_encrypted_places_reject_plaintext_and_relay_envelopes() {
    let ts = TestServer::start().await;
    let w = world(&ts, "enc").await;
    let enc = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "e2ee", "kind": "text", "encrypted": true}),
    )
    .await;
    let (s, e) = send(&ts, &w.member, &enc, json!({"content": "plaintext!"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, e) = send(
        &ts,
        &w.member,
        &enc,
        json!({"content": "x", "encrypted": envelope("aGk=")}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(
        send(&ts, &w.member, &enc, json!({})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(
            &ts,
            &w.member,
            &enc,
            json!({"encrypted": envelope("not base64 !!")})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut extra = envelope("aGk=");
    extra["body"] = json!("sneaky plaintext");
    assert_eq!(
        send(&ts, &w.member, &enc, json!({"encrypted": extra}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    use base64::Engine as _;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 64 * 1024 + 3]);
    let (s, _) = send(&ts, &w.member, &enc, json!({"encrypted": envelope(&big)})).await;
    assert!(
        s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::PAYLOAD_TOO_LARGE,
        "{s}"
    );
    let ct = base64::engine::general_purpose::STANDARD.encode(b"\x00\x01opaque ciphertext");
    let (s, m) = send(
        &ts,
        &w.member,
        &enc,
        json!({"encrypted": envelope(&ct), "mentions": [w.owner.id, "12345"], "nonce": "e1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    assert_eq!(m["encrypted"], envelope(&ct));
    assert!(m["content"].is_null());
    assert_eq!(
        m["mentions"],
        json!([w.owner.id]),
        "declared mentions are filtered to members"
    );
    let (_, hist) = ts
        .get(&format!("/api/v1/channels/{enc}/messages"), &w.owner.token)
        .await;
    assert_eq!(hist[0]["encrypted"]["ciphertext"], ct.as_str());
    // Edits stay encrypted.
    let path = format!("/api/v1/channels/{enc}/messages/{}", id_of(&m));
    assert_eq!(
        ts.patch(&path, &w.member.token, json!({"content": "leak"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.patch(
            &path,
            &w.member.token,
            json!({"encrypted": envelope("bmV3")})
        )
        .await
        .0,
        StatusCode::OK
    );
    // Nothing readable was stored: no content column set in the encrypted channel.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE channel_id = $1 AND content IS NOT NULL",
    )
    .bind(wid(&enc).0)
    .fetch_one(&ts.state.db)
    .await
    .unwrap();
    assert_eq!(n, 0);

    // DMs are always encrypted.
    let (s, dm) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&w.member.token),
            json!({"recipients": [w.owner.id]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dm}");
    let dm = id_of(&dm);
    assert_eq!(
        send(&ts, &w.member, &dm, json!({"content": "hello"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (s, v) = send(
        &ts,
        &w.member,
        &dm,
        json!({"encrypted": envelope(&ct), "mentions": [w.owner.id, w.member.id, "777"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v["server_id"].is_null());
    assert_eq!(v["mentions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn messages_dms_get_or_create_race_blocks_and_group_membership() {
    let ts = Arc::new(TestServer::start().await);
    let a = ts.register("dma").await;
    let b = ts.register("dmb").await;
    let c = ts.register("dmc").await;
    // Strangers may not DM by default (dm_policy; tests in everyday.rs): make them friends.
    ts.befriend(&a, &b).await;
    ts.befriend(&a, &c).await;
    ts.befriend(&b, &c).await;
    // Both sides race to open the same DM: one channel.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let ts = ts.clone();
        let (me, other) = if i % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        tasks.push(tokio::spawn(async move {
            ts.post(
                "/api/v1/users/@me/channels",
                Some(&me.token),
                json!({"recipients": [other.id]}),
            )
            .await
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {v}");
        created += usize::from(s == StatusCode::CREATED);
        assert_eq!(v["kind"], "dm");
        assert_eq!(v["encrypted"], true);
        assert_eq!(v["recipients"].as_array().unwrap().len(), 2);
        ids.insert(id_of(&v));
    }
    assert_eq!((ids.len(), created), (1, 1));
    let dm = ids.into_iter().next().unwrap();
    let (s, list) = ts.get("/api/v1/users/@me/channels", &b.token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], dm.as_str());
    // A third user cannot see it.
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{dm}/messages"), &c.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&ts, &c, &dm, json!({"encrypted": envelope("aGk=")}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Bad requests.
    for body in [
        json!({"recipients": []}),
        json!({"recipients": [a.id]}),
        json!({"recipients": ["abc"]}),
    ] {
        let (s, _) = ts
            .post("/api/v1/users/@me/channels", Some(&a.token), body.clone())
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (s, _) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.token),
            json!({"recipients": ["424242"]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Blocks: neither can open a DM nor send in the existing one.
    assert_eq!(
        send(&ts, &a, &dm, json!({"encrypted": envelope("aGk=")}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        ts.put(
            &format!("/api/v1/users/@me/blocks/{}", a.id),
            &b.token,
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    for (me, other) in [(&a, &b), (&b, &a)] {
        let (s, e) = ts
            .post(
                "/api/v1/users/@me/channels",
                Some(&me.token),
                json!({"recipients": [other.id]}),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("blocked"))
        );
        let (s, e) = send(&ts, me, &dm, json!({"encrypted": envelope("aGk=")})).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("blocked"))
        );
    }
    // …nor be put together in a group DM.
    let (s, _) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.token),
            json!({"recipients": [b.id, c.id]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Group DMs: the owner adds and removes, at most 10 members.
    // One other recipient (deduplicated) is a 1:1 DM, which has no name.
    let (s, _) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.token),
            json!({"recipients": [c.id, c.id], "name": "pals"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, g) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.token),
            json!({"recipients": [c.id, c.id]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(g["kind"], "dm");
    let mut others = Vec::new();
    for i in 0..9 {
        let o = ts.register(&format!("dmgroup{i}")).await;
        ts.befriend(&a, &o).await;
        others.push(o);
    }
    let (s, g) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.token),
            json!({"recipients": [c.id, others[0].id], "name": "pals"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(
        (g["kind"].as_str(), g["owner_id"].as_str()),
        (Some("group_dm"), Some(a.id.as_str()))
    );
    let gid = id_of(&g);
    let rec = |u: &TestUser| format!("/api/v1/channels/{gid}/recipients/{}", u.id);
    assert_eq!(
        ts.put(&rec(&others[1]), &c.token, None).await.0,
        StatusCode::FORBIDDEN
    );
    for u in &others[1..8] {
        assert_eq!(ts.put(&rec(u), &a.token, None).await.0, StatusCode::OK);
    }
    let (s, _) = ts.put(&rec(&others[8]), &a.token, None).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the 11th member is refused"
    );
    assert_eq!(
        ts.put(&rec(&b), &a.token, None).await.0,
        StatusCode::FORBIDDEN,
        "blocked"
    );
    // A member sends; the owner removes them; they no longer see it.
    assert_eq!(
        send(
            &ts,
            &others[1],
            &gid,
            json!({"encrypted": envelope("aGk=")})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        ts.delete(&rec(&others[1]), &c.token).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.delete(&rec(&others[1]), &a.token).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ts.get(
            &format!("/api/v1/channels/{gid}/messages"),
            &others[1].token
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    // Anyone may leave; the owner leaving hands the group over.
    assert_eq!(
        ts.delete(&rec(&c), &c.token).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ts.delete(&rec(&a), &a.token).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, l) = ts.get("/api/v1/users/@me/channels", &others[0].token).await;
    let g = l
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == gid.as_str())
        .unwrap()
        .clone();
    assert_ne!(g["owner_id"], a.id.as_str());
    assert!(g["owner_id"].is_string());
}

#[tokio::test]
async fn messages_reactions_pins_and_read_state_counts() {
    let ts = TestServer::start().await;
    let w = world(&ts, "rx").await;
    let (o, m) = (&w.owner, &w.member);
    let first = say(&ts, o, &w.text, "first").await;
    let base = format!("/api/v1/channels/{}/messages/{first}", w.text);
    // Reactions: idempotent add, counts with `me`, list, remove.
    for u in [o, m, m] {
        assert_eq!(
            ts.put(
                &format!("{base}/reactions/%F0%9F%91%8D/@me"),
                &u.token,
                None
            )
            .await
            .0,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        ts.put(&format!("{base}/reactions/party/@me"), &m.token, None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, msg) = ts.get(&base, &o.token).await;
    assert_eq!(
        msg["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "party", "count": 1, "me": false}])
    );
    let (s, users) = ts
        .get(&format!("{base}/reactions/%F0%9F%91%8D"), &o.token)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert_eq!(
        ts.delete(&format!("{base}/reactions/%F0%9F%91%8D/@me"), &m.token)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, msg) = ts.get(&base, &m.token).await;
    assert_eq!(
        msg["reactions"][0],
        json!({"emoji": "👍", "count": 1, "me": false})
    );
    assert_eq!(
        ts.put(&format!("{base}/reactions/a%20b/@me"), &m.token, None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Pins: MANAGE_MESSAGES only.
    let pin = format!("/api/v1/channels/{}/pins/{first}", w.text);
    let (s, e) = ts.put(&pin, &m.token, None).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission"))
    );
    assert_eq!(ts.put(&pin, &o.token, None).await.0, StatusCode::NO_CONTENT);
    let (_, pins) = ts
        .get(&format!("/api/v1/channels/{}/pins", w.text), &m.token)
        .await;
    assert_eq!(pins.as_array().unwrap().len(), 1);
    assert_eq!(pins[0]["pinned"], true);
    assert_eq!(ts.delete(&pin, &o.token).await.0, StatusCode::NO_CONTENT);
    let (_, pins) = ts
        .get(&format!("/api/v1/channels/{}/pins", w.text), &m.token)
        .await;
    assert_eq!(pins.as_array().unwrap().len(), 0);

    // Read states. The member acks `first`; the owner then sends 3 messages, 2 of which
    // mention the member (directly and via @everyone).
    let ack = |id: &str| format!("/api/v1/channels/{}/messages/{id}/ack", w.text);
    let (s, rs) = ts.post(&ack(&first), Some(&m.token), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{rs}");
    assert_eq!(
        (rs["unread_count"].as_i64(), rs["mention_count"].as_i64()),
        (Some(0), Some(0))
    );
    let _a = say(&ts, o, &w.text, "no mention").await;
    let b = say(&ts, o, &w.text, &format!("hey <@{}>", m.id)).await;
    let _c = say(&ts, o, &w.text, "@everyone meeting").await;
    say(&ts, m, &w.text, "my own message does not count").await;
    let all = mine(&ts, m).await;
    let st = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel_id"] == w.text.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (st["unread_count"].as_i64(), st["mention_count"].as_i64()),
        (Some(3), Some(2)),
        "{st}"
    );
    assert_eq!(st["last_read_id"], first.as_str());
    // After acking `b`: one unread, which mentions everyone.
    let (_, rs) = ts.post(&ack(&b), Some(&m.token), json!({})).await;
    assert_eq!(
        (rs["unread_count"].as_i64(), rs["mention_count"].as_i64()),
        (Some(1), Some(1))
    );
    // Acking backwards marks unread again.
    let (_, rs) = ts.post(&ack(&first), Some(&m.token), json!({})).await;
    assert_eq!(
        (rs["unread_count"].as_i64(), rs["mention_count"].as_i64()),
        (Some(3), Some(2))
    );
    // A channel never acked: everything by others is unread.
    let other = channel(&ts, o, &w.server, json!({"name": "o", "kind": "text"})).await;
    say(&ts, o, &other, "x").await;
    let all = mine(&ts, m).await;
    let st = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel_id"] == other.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (st["unread_count"].as_i64(), st["last_read_id"].clone()),
        (Some(1), Value::Null)
    );
    // DMs are listed too.
    let (_, dm) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&o.token),
            json!({"recipients": [m.id]}),
        )
        .await;
    let (_, sent) = send(
        &ts,
        o,
        &id_of(&dm),
        json!({"encrypted": envelope("aGk="), "mentions": [m.id]}),
    )
    .await;
    let all = mine(&ts, m).await;
    let st = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel_id"] == dm["id"])
        .unwrap()
        .clone();
    assert_eq!(
        (st["unread_count"].as_i64(), st["mention_count"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(st["last_message_id"], sent["id"]);
}

#[tokio::test]
async fn messages_search_only_returns_what_the_searcher_may_see() {
    let ts = TestServer::start().await;
    let w = world(&ts, "srch").await;
    let (o, m) = (&w.owner, &w.member);
    let hidden = channel(&ts, o, &w.server, json!({"name": "hidden", "kind": "text"})).await;
    overwrite(&ts, o, &hidden, &m.id, "member", P::VIEW_CHANNEL).await;
    let nohist = channel(&ts, o, &w.server, json!({"name": "nohist", "kind": "text"})).await;
    overwrite(&ts, o, &nohist, &m.id, "member", P::READ_HISTORY).await;
    let visible = say(&ts, o, &w.text, "the banana split recipe").await;
    let by_member = say(&ts, m, &w.text, "I love banana bread").await;
    let secret = say(&ts, o, &hidden, "secret banana plans").await;
    let unreadable = say(&ts, o, &nohist, "banana history").await;
    say(&ts, o, &w.text, "nothing to see").await;
    // Another server the member is not in.
    let other_server = create_server(&ts, o).await;
    let far = channel(
        &ts,
        o,
        &other_server,
        json!({"name": "far", "kind": "text"}),
    )
    .await;
    say(&ts, o, &far, "banana abroad").await;

    let ids = |v: &Value| -> HashSet<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    };
    let (s, r) = search(&ts, &w.server, m, "q=banana").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(ids(&r), HashSet::from([visible.clone(), by_member.clone()]));
    let (_, r) = search(&ts, &w.server, o, "q=banana").await;
    assert_eq!(
        ids(&r),
        HashSet::from([visible.clone(), by_member.clone(), secret, unreadable])
    );
    // Filters: author, channel, dates.
    let (_, r) = search(&ts, &w.server, o, &format!("q=banana&author_id={}", m.id)).await;
    assert_eq!(ids(&r), HashSet::from([by_member.clone()]));
    let (_, r) = search(
        &ts,
        &w.server,
        o,
        &format!("q=banana&channel_id={}", w.text),
    )
    .await;
    assert_eq!(ids(&r).len(), 2);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let enc = |s: &str| s.replace('+', "%2B").replace(':', "%3A");
    let (_, r) = search(
        &ts,
        &w.server,
        o,
        &format!("q=banana&after={}", enc(&future)),
    )
    .await;
    assert_eq!(ids(&r).len(), 0);
    let (_, r) = search(&ts, &w.server, o, &format!("q=banana&after={}", enc(&past))).await;
    assert_eq!(ids(&r).len(), 4);
    let (_, r) = search(
        &ts,
        &w.server,
        o,
        &format!("q=banana&before={}", enc(&past)),
    )
    .await;
    assert_eq!(ids(&r).len(), 0);
    // The member naming a hidden or unreadable channel gets 404, never its messages.
    for ch in [&hidden, &nohist] {
        let (s, _) = search(&ts, &w.server, m, &format!("q=banana&channel_id={ch}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    // Not a member of the server: 404; bad queries: 4xx.
    let stranger = ts.register("srchstranger").await;
    assert_eq!(
        search(&ts, &w.server, &stranger, "q=banana").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        search(&ts, &w.server, m, "q=").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        search(&ts, &w.server, m, "nope=1").await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _) = search(&ts, &w.server, m, "q=%22unterminated%20-%20or%20%21%21").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn messages_threads_inherit_permissions_and_auto_archive() {
    let ts = TestServer::start().await;
    let w = world(&ts, "thr").await;
    let (o, m) = (&w.owner, &w.member);
    let root = say(&ts, m, &w.text, "let's discuss").await;
    let (s, t) = ts
        .post(
            &format!("/api/v1/channels/{}/messages/{root}/threads", w.text),
            Some(&m.token),
            json!({"name": "discussion", "auto_archive_secs": 3600}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tid = id_of(&t);
    assert_eq!(t["parent_id"], w.text.as_str());
    let (s, _) = ts
        .post(
            &format!("/api/v1/channels/{}/messages/{root}/threads", w.text),
            Some(&o.token),
            json!({"name": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let in_thread = say(&ts, o, &tid, "in the thread").await;
    let (_, hist) = ts
        .get(&format!("/api/v1/channels/{tid}/messages"), &m.token)
        .await;
    assert_eq!(hist[0]["id"], in_thread.as_str());
    assert_eq!(hist[0]["channel_id"], tid.as_str());
    let (_, active) = ts
        .get(&format!("/api/v1/channels/{}/threads", w.text), &m.token)
        .await;
    assert_eq!(active.as_array().unwrap().len(), 1);
    // Acknowledged threads appear in my read states.
    let (s, rs) = ts
        .post(
            &format!("/api/v1/channels/{tid}/messages/{in_thread}/ack"),
            Some(&m.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rs}");
    let all = mine(&ts, m).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|r| r["channel_id"] == tid.as_str()),
        "{all}"
    );
    // Hiding the parent hides the thread.
    overwrite(&ts, o, &w.text, &m.id, "member", P::VIEW_CHANNEL).await;
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{tid}/messages"), &m.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&ts, m, &tid, json!({"content": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    // Inactivity archives it (a query-time rule); a new message revives it.
    sqlx::query("UPDATE threads SET last_activity_at = now() - interval '2 hours'")
        .execute(&ts.state.db)
        .await
        .unwrap();
    let (_, active) = ts
        .get(&format!("/api/v1/channels/{}/threads", w.text), &o.token)
        .await;
    assert_eq!(active.as_array().unwrap().len(), 0);
    let (_, archived) = ts
        .get(
            &format!("/api/v1/channels/{}/threads?archived=true", w.text),
            &o.token,
        )
        .await;
    assert_eq!(archived[0]["archived"], true);
    say(&ts, o, &tid, "revive").await;
    let (_, active) = ts
        .get(&format!("/api/v1/channels/{}/threads", w.text), &o.token)
        .await;
    assert_eq!(active.as_array().unwrap().len(), 1);
    // Threads cannot nest; DMs have none.
    let (s, _) = ts
        .post(
            &format!("/api/v1/channels/{tid}/messages/{in_thread}/threads"),
            Some(&o.token),
            json!({"name": "nested"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Deleting the parent channel deletes the thread and every message.
    assert_eq!(
        ts.delete(&format!("/api/v1/channels/{}", w.text), &o.token)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&ts.state.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

async fn search(ts: &TestServer, server: &str, u: &TestUser, q: &str) -> (StatusCode, Value) {
    ts.get(
        &format!("/api/v1/servers/{server}/messages/search?{q}"),
        &u.token,
    )
    .await
}

async fn mine(ts: &TestServer, u: &TestUser) -> Value {
    let (s, v) = ts.get("/api/v1/users/@me/read-states", &u.token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn upload(
    ts: &TestServer,
    who: &TestUser,
    ch: &str,
    name: &str,
    ctype: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = ts
        .http
        .post(ts.url(&format!("/api/v1/channels/{ch}/attachments")))
        .query(&[("filename", name)])
        .bearer_auth(&who.token)
        .header("content-type", ctype)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(status.as_u16() < 500, "server error {status}");
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn messages_attachments_upload_claim_download_and_caps() {
    use copains_api::messaging::attachments::{self, LocalDisk};
    let dir = std::env::temp_dir().join(format!("copains-it-att-{}", rand::random::<u64>()));
    assert!(
        attachments::install(Arc::new(LocalDisk::new(&dir)), 64 * 1024),
        "storage installed twice"
    );
    let ts = TestServer::start().await;
    let w = world(&ts, "att").await;
    let (o, m) = (&w.owner, &w.member);

    let (s, a) = upload(
        &ts,
        m,
        &w.text,
        "notes.txt",
        "text/plain",
        b"hello file".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(
        (a["size"].as_i64(), a["encrypted"].as_bool()),
        (Some(10), Some(false))
    );
    assert!(a["message_id"].is_null());
    let aid = id_of(&a);
    // Caps and names.
    let (s, e) = upload(
        &ts,
        m,
        &w.text,
        "big.bin",
        "application/octet-stream",
        vec![0; 64 * 1024 + 1],
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    for bad in ["../etc/passwd", "", "a\\b"] {
        let (s, _) = upload(&ts, m, &w.text, bad, "text/plain", b"x".to_vec()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    // A message claims it (content optional with attachments); a second claim is refused,
    // and so is someone else's upload.
    let (s, msg) = send(&ts, m, &w.text, json!({"attachments": [aid]})).await;
    assert_eq!(s, StatusCode::CREATED, "{msg}");
    assert_eq!(msg["attachments"][0]["id"], aid.as_str());
    assert!(msg["content"].is_null());
    let (s, _) = send(
        &ts,
        m,
        &w.text,
        json!({"content": "again", "attachments": [aid]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, theirs) = upload(&ts, o, &w.text, "o.txt", "text/plain", b"o".to_vec()).await;
    let (s, _) = send(
        &ts,
        m,
        &w.text,
        json!({"content": "steal", "attachments": [id_of(&theirs)]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, hist) = ts
        .get(&format!("/api/v1/channels/{}/messages", w.text), &o.token)
        .await;
    assert_eq!(hist[0]["attachments"][0]["filename"], "notes.txt");
    // Download: the bytes, as a download.
    let resp = ts
        .http
        .get(ts.url(&format!("/api/v1/channels/{}/attachments/{aid}", w.text)))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-disposition"], "attachment");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    // Not an image the app shows inline: octet-stream whatever the uploader said, and a
    // sandboxing policy should a browser open it anyway.
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"hello file");
    for (claimed, served) in [
        ("text/html; charset=utf-8", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("image/png", "image/png"),
        ("IMAGE/JPEG; x=y", "image/jpeg"),
    ] {
        let (s, up) = upload(&ts, m, &w.text, "f", claimed, b"<b>x</b>".to_vec()).await;
        assert_eq!(s, StatusCode::CREATED, "{up}");
        let resp = ts
            .http
            .get(ts.url(&format!(
                "/api/v1/channels/{}/attachments/{}",
                w.text,
                id_of(&up)
            )))
            .bearer_auth(&o.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], served, "{claimed}");
        assert!(resp.headers().contains_key("content-security-policy"));
    }
    // Through another channel: 404.
    let other = channel(&ts, o, &w.server, json!({"name": "o", "kind": "text"})).await;
    assert_eq!(
        ts.get(
            &format!("/api/v1/channels/{other}/attachments/{aid}"),
            &o.token
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    // Without ATTACH_FILES: 403; hidden channel: 404.
    let noatt = channel(&ts, o, &w.server, json!({"name": "noatt", "kind": "text"})).await;
    overwrite(&ts, o, &noatt, &m.id, "member", P::ATTACH_FILES).await;
    let (s, _) = upload(&ts, m, &noatt, "x.txt", "text/plain", b"x".to_vec()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    overwrite(&ts, o, &noatt, &m.id, "member", P::VIEW_CHANNEL).await;
    let (s, _) = upload(&ts, m, &noatt, "x.txt", "text/plain", b"x".to_vec()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Encrypted places: an opaque blob, served as octet-stream.
    let (_, dm) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&m.token),
            json!({"recipients": [o.id]}),
        )
        .await;
    let dm = id_of(&dm);
    let (s, a) = upload(&ts, m, &dm, "photo.png.enc", "image/png", vec![1, 2, 3]).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(
        (a["content_type"].as_str(), a["encrypted"].as_bool()),
        (Some("application/octet-stream"), Some(true))
    );
    assert_eq!(
        a["filename"], "encrypted",
        "no plaintext file name in encrypted places"
    );
    let (s, v) = send(
        &ts,
        m,
        &dm,
        json!({"encrypted": envelope("a2V5"), "attachments": [id_of(&a)]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn messages_ban_purge_deletes_only_the_recent_window() {
    let ts = TestServer::start().await;
    let w = world(&ts, "purge").await;
    let other = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "o", "kind": "text"}),
    )
    .await;
    let old = say(&ts, &w.member, &w.text, "old").await;
    sqlx::query("UPDATE messages SET created_at = now() - interval '2 days' WHERE id = $1")
        .bind(wid(&old).0)
        .execute(&ts.state.db)
        .await
        .unwrap();
    say(&ts, &w.member, &w.text, "recent 1").await;
    say(&ts, &w.member, &other, "recent 2").await;
    let keep = say(&ts, &w.owner, &w.text, "someone else's").await;
    let n = copains_api::messaging::messages::purge_recent(
        &ts.state,
        wid(&w.server),
        wid(&w.member.id),
        86400,
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let (_, hist) = ts
        .get(
            &format!("/api/v1/channels/{}/messages", w.text),
            &w.owner.token,
        )
        .await;
    let ids: Vec<String> = hist.as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, vec![old, keep]);
}

#[tokio::test]
async fn messages_concurrent_writers_across_channels_never_fail() {
    // Ids bumped past a channel head can meet ids generated for other channels; every send
    // must still succeed (the insert retries with a fresh id) and each channel stays ordered.
    let ts = Arc::new(TestServer::start().await);
    let w = world(&ts, "multi").await;
    let mut chans = vec![w.text.clone()];
    for k in 0..3 {
        chans.push(
            channel(
                &ts,
                &w.owner,
                &w.server,
                json!({"name": format!("c{k}"), "kind": "text"}),
            )
            .await,
        );
    }
    let chans = Arc::new(chans);
    let mut tasks = Vec::new();
    for k in 0..12 {
        let (ts, chans) = (ts.clone(), chans.clone());
        let who = if k % 2 == 0 {
            w.owner.clone()
        } else {
            w.member.clone()
        };
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                say(&ts, &who, &chans[(k + i) % chans.len()], "x").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&ts.state.db)
        .await
        .unwrap();
    assert_eq!(total, 12 * 25);
}

#[tokio::test]
async fn messages_garbage_input_is_a_4xx_never_a_5xx() {
    let ts = TestServer::start().await;
    let w = world(&ts, "junk").await;
    let t = &w.member.token;
    let mid = say(&ts, &w.member, &w.text, "anchor").await;
    let msgs = format!("/api/v1/channels/{}/messages", w.text);
    for body in [
        json!({"content": 5}),
        json!({"content": null, "encrypted": "x"}),
        json!({"content": "a", "reply_to": "9007199254740993"}),
        json!({"content": "a", "reply_to": -1}),
        json!({"content": "a", "reply_to": 1.5}),
        json!({"content": "a", "nonce": 123}),
        json!({"content": "a", "attachments": [1e30]}),
        json!({"content": "a", "attachments": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]}),
        json!({"content": "a", "reply_to": "123456789"}),
        json!([1, 2]),
        json!("string"),
    ] {
        let (s, v) = ts.post(&msgs, Some(t), body.clone()).await;
        assert!(s.is_client_error(), "{body} → {s} {v}");
    }
    for raw in [
        "not json",
        "{\"content\": \"unterminated",
        "",
        "{\"content\":\"a\"}}",
    ] {
        let resp = ts
            .http
            .post(ts.url(&msgs))
            .bearer_auth(t)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{raw:?} → {}",
            resp.status()
        );
    }
    for q in [
        "limit=-5",
        "before=-1",
        "around=99999999999999999999",
        "after=abc",
        "limit=1e3",
        "before=0",
    ] {
        let (s, v) = ts.get(&format!("{msgs}?{q}"), t).await;
        assert!(s.is_client_error(), "{q} → {s} {v}");
    }
    let long_emoji = "e".repeat(65);
    for path in [
        format!("{msgs}/{mid}/reactions/{long_emoji}/@me"),
        format!("{msgs}/{mid}/reactions/%00/@me"),
        format!("{msgs}/{mid}/reactions/%20/@me"),
        format!("{msgs}/99999999999999999999/reactions/x/@me"),
    ] {
        let (s, v) = ts.put(&path, t, None).await;
        assert!(s.is_client_error(), "{path} → {s} {v}");
    }
    for body in [
        json!({"recipients": "x"}),
        json!({"recipients": [w.owner.id], "bogus": true}),
        json!({"recipients": (0..11).map(|i| (1000 + i).to_string()).collect::<Vec<_>>()}),
        json!({"recipients": [w.owner.id, "5"], "name": ""}),
    ] {
        let (s, v) = ts
            .post("/api/v1/users/@me/channels", Some(t), body.clone())
            .await;
        assert!(s.is_client_error(), "{body} → {s} {v}");
    }
    let search = format!("/api/v1/servers/{}/messages/search", w.server);
    let long_q = "q".repeat(201);
    for q in [
        format!("q={long_q}"),
        "q=a&after=notadate".to_owned(),
        "q=a&limit=0".to_owned(),
        "q=a&author_id=-3".to_owned(),
        "q=%00".to_owned(),
    ] {
        let (s, v) = ts.get(&format!("{search}?{q}"), t).await;
        assert!(s.is_client_error() || s == StatusCode::OK, "{q} → {s} {v}");
    }
    for body in [
        json!({"name": "t", "auto_archive_secs": 5}),
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
    ] {
        let (s, v) = ts
            .post(&format!("{msgs}/{mid}/threads"), Some(t), body.clone())
            .await;
        assert!(s.is_client_error(), "{body} → {s} {v}");
    }
}

/// The send and history routes serve the caller's place and permissions from a per-node
/// cache: every revocation made through the api must still take effect on the very next
/// request, and a change made behind the api's back (another node, a manual edit) within
/// `PLACE_TTL`.
#[tokio::test]
async fn messages_permission_cache_never_outlives_a_revocation() {
    let ts = TestServer::start().await;
    let w = world(&ts, "pcache").await;
    let m = &w.member;
    let history = format!("/api/v1/channels/{}/messages", w.text);
    // Warm the cache: the member may send and read.
    for _ in 0..3 {
        say(&ts, m, &w.text, "hello").await;
        assert_eq!(ts.get(&history, &m.token).await.0, StatusCode::OK);
    }
    // Overwrite denying SEND_MESSAGES: the next send is refused, reading still works.
    overwrite(&ts, &w.owner, &w.text, &m.id, "member", P::SEND_MESSAGES).await;
    let (s, e) = send(&ts, m, &w.text, json!({"content": "x"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission"))
    );
    assert_eq!(ts.get(&history, &m.token).await.0, StatusCode::OK);
    // Denying VIEW_CHANNEL: the channel is gone for them at once.
    overwrite(
        &ts,
        &w.owner,
        &w.text,
        &m.id,
        "member",
        P(P::VIEW_CHANNEL.0 | P::SEND_MESSAGES.0),
    )
    .await;
    assert_eq!(ts.get(&history, &m.token).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&ts, m, &w.text, json!({"content": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    // Lifting the overwrite gives the rights back at once.
    let (s, v) = ts
        .delete(
            &format!("/api/v1/channels/{}/overwrites/{}", w.text, m.id),
            &w.owner.token,
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    say(&ts, m, &w.text, "back").await;
    // A role losing SEND_MESSAGES (@everyone's permissions) applies at once.
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{}/roles/{}", w.server, w.server),
            &w.owner.token,
            json!({"permissions": P::VIEW_CHANNEL.0 | P::READ_HISTORY.0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        send(&ts, m, &w.text, json!({"content": "x"})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(ts.get(&history, &m.token).await.0, StatusCode::OK);
    // Kicked: 404 on the next request.
    let (s, v) = ts
        .delete(
            &format!("/api/v1/servers/{}/members/{}", w.server, m.id),
            &w.owner.token,
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(ts.get(&history, &m.token).await.0, StatusCode::NOT_FOUND);

    // A change the api did not publish (as made by another node): within PLACE_TTL.
    say(&ts, &w.owner, &w.text, "warm").await;
    assert_eq!(ts.get(&history, &w.owner.token).await.0, StatusCode::OK);
    let other = channel(
        &ts,
        &w.owner,
        &w.server,
        json!({"name": "o", "kind": "text"}),
    )
    .await;
    let stranger = ts.register("pcachestranger").await;
    join_server(&ts, &w.owner, &w.server, &stranger).await;
    let other_history = format!("/api/v1/channels/{other}/messages");
    assert_eq!(
        ts.get(&other_history, &stranger.token).await.0,
        StatusCode::OK
    );
    sqlx::query(
        "INSERT INTO overwrites (channel_id, target_id, target_kind, allow, deny)
         VALUES ($1, $2, 'member', 0, $3)",
    )
    .bind(other.parse::<i64>().unwrap())
    .bind(stranger.id.parse::<i64>().unwrap())
    .bind(P::VIEW_CHANNEL.0 as i64)
    .execute(&ts.state.db)
    .await
    .unwrap();
    tokio::time::sleep(
        copains_api::messaging::place_cache::PLACE_TTL + std::time::Duration::from_millis(100),
    )
    .await;
    assert_eq!(
        ts.get(&other_history, &stranger.token).await.0,
        StatusCode::NOT_FOUND
    );
}

/// The history cache answers exactly what the database answers: a seeded random walk of
/// creates, edits, deletes, reactions (by several users) and pins, each followed by random
/// pages (newest, `before`, `after`, `around`, limits 1–100, two readers for `me`) compared
/// with the same page rendered with the cache off. Fails when an invalidation is missing
/// (e.g. without the cut on reactions, `count` / `me` go stale).
#[tokio::test]
async fn messages_history_cache_agrees_with_the_database() {
    use copains_api::messaging::history_cache::HistoryCache;
    use copains_api::messaging::messages::{self, HistoryQuery};
    use copains_api::messaging::place::Place;

    let ts = TestServer::start().await;
    let w = world(&ts, "hc").await;
    assert!(ts.state.history.enabled(), "one node: the cache is on");
    let mut uncached = ts.state.clone();
    uncached.history = Arc::new(HistoryCache::default());
    uncached.history.set_enabled(false);
    let users = [&w.owner, &w.member];
    let uid = |u: &TestUser| -> Id { wid(&u.id) };

    // A small deterministic generator (no seed drift between runs).
    let mut seed: u64 = 0x5eed_cafe;
    let mut rnd = move |n: usize| -> usize {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n.max(1)
    };
    let mut ids: Vec<String> = Vec::new();
    for i in 0..60 {
        ids.push(say(&ts, users[i % 2], &w.text, &format!("seed {i}")).await);
    }
    let mut compared = 0;
    let mut served_from_memory = 0;
    for step in 0..160 {
        // A change.
        match rnd(6) {
            0 | 1 => ids.push(say(&ts, users[rnd(2)], &w.text, &format!("step {step}")).await),
            2 if !ids.is_empty() => {
                let k = rnd(ids.len());
                let (s, _) = ts
                    .delete(
                        &format!("/api/v1/channels/{}/messages/{}", w.text, ids[k]),
                        &w.owner.token,
                    )
                    .await;
                assert_eq!(s, StatusCode::NO_CONTENT);
                ids.remove(k);
            }
            3 if !ids.is_empty() => {
                let m = &ids[rnd(ids.len())];
                let emoji = ["👍", "🎉", "x"][rnd(3)];
                let who = users[rnd(2)];
                let path = format!(
                    "/api/v1/channels/{}/messages/{m}/reactions/{emoji}/@me",
                    w.text
                );
                let (s, _) = if rnd(3) == 0 {
                    ts.delete(&path, &who.token).await
                } else {
                    ts.put(&path, &who.token, None).await
                };
                assert_eq!(s, StatusCode::NO_CONTENT);
            }
            4 if !ids.is_empty() => {
                let m = &ids[rnd(ids.len())];
                let path = format!("/api/v1/channels/{}/pins/{m}", w.text);
                let (s, _) = if rnd(2) == 0 {
                    ts.put(&path, &w.owner.token, None).await
                } else {
                    ts.delete(&path, &w.owner.token).await
                };
                assert!(
                    s.is_success() || s == StatusCode::UNPROCESSABLE_ENTITY,
                    "{s}"
                );
            }
            _ if !ids.is_empty() => {
                // Edit one of the owner's messages (authors only).
                let k = rnd(ids.len());
                let (s, _) = ts
                    .patch(
                        &format!("/api/v1/channels/{}/messages/{}", w.text, ids[k]),
                        &w.owner.token,
                        json!({"content": format!("edited at {step}")}),
                    )
                    .await;
                assert!(s == StatusCode::OK || s == StatusCode::FORBIDDEN, "{s}");
            }
            _ => {}
        }
        // Pages, each checked against the database.
        for _ in 0..4 {
            let who = users[rnd(2)];
            let limit = [1, 7, 50, 100][rnd(4)];
            let cursor = if ids.is_empty() {
                wid("1")
            } else {
                wid(&ids[rnd(ids.len())])
            };
            let rnd_kind = rnd(4);
            let q = || {
                let mut q = HistoryQuery {
                    limit: Some(limit),
                    ..Default::default()
                };
                match rnd_kind {
                    0 => {}
                    1 => q.before = Some(cursor),
                    2 => q.after = Some(cursor),
                    _ => q.around = Some(cursor),
                }
                q
            };
            let place = Place::require(&ts.state.db, uid(who), wid(&w.text))
                .await
                .unwrap();
            let got = messages::history(&ts.state, uid(who), &place, q())
                .await
                .unwrap();
            let want = messages::history(&uncached, uid(who), &place, q())
                .await
                .unwrap();
            let (got, want): (Value, Value) = (
                serde_json::from_str(&got).unwrap(),
                serde_json::from_str(&want).unwrap(),
            );
            if got != want {
                let ids = |v: &Value| -> Vec<String> {
                    v.as_array().unwrap().iter().map(id_of).collect()
                };
                panic!(
                    "step {step}: cached page differs (kind {rnd_kind}, limit {limit}): ids {:?} vs {:?}",
                    ids(&got),
                    ids(&want)
                );
            }
            compared += 1;
            // Ask again: from memory when the first read filled the cache.
            let (hits, _) = ts.state.history.stats();
            let again = messages::history(&ts.state, uid(who), &place, q())
                .await
                .unwrap();
            assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), want);
            served_from_memory += usize::from(ts.state.history.stats().0 > hits);
        }
    }
    assert!(compared >= 600, "{compared}");
    // Most second reads are hits (not all: an empty range proves nothing to keep).
    assert!(
        served_from_memory * 2 > compared,
        "{served_from_memory} of {compared}"
    );
    // The route answers the same JSON as the function.
    let (s, page) = ts
        .get(
            &format!("/api/v1/channels/{}/messages?limit=100", w.text),
            &w.member.token,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let place = Place::require(&ts.state.db, uid(&w.member), wid(&w.text))
        .await
        .unwrap();
    let want = messages::history(
        &uncached,
        uid(&w.member),
        &place,
        HistoryQuery {
            limit: Some(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page, serde_json::from_str::<Value>(&want).unwrap());
}

/// Concurrent sends to one place are grouped into shared inserts; a row that cannot be
/// inserted (here: an author that does not exist, a foreign-key violation) fails alone, the
/// others are created, in order, each announced once.
#[tokio::test]
async fn messages_grouped_sends_fail_only_the_bad_row() {
    use copains_api::messaging::place::Place;
    use copains_api::messaging::send_batch::{NewRow, Outcome, SendBatcher};

    let ts = TestServer::start().await;
    let w = world(&ts, "gs").await;
    ts.state
        .bus
        .subscribe(&[Topic::Server(wid(&w.server))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();
    let place = Place::require(&ts.state.db, wid(&w.owner.id), wid(&w.text))
        .await
        .unwrap();
    // Sends `count` rows at once (row `bad`, if any, by a user that does not exist); the
    // outcomes in submission order.
    let wave = |first: usize, count: usize, bad: Option<usize>| {
        let tasks: Vec<_> = (first..first + count)
            .map(|k| {
                let (state, place) = (ts.state.clone(), place.clone());
                let author = if Some(k) == bad {
                    Id(4242)
                } else {
                    wid(&w.owner.id)
                };
                tokio::spawn(async move {
                    let row = NewRow {
                        author,
                        content: Some(format!("grouped {k}")),
                        envelope: None,
                        nonce: Some(format!("n{k}")),
                        reply_to: None,
                        mention_everyone: false,
                        mention_users: Vec::new(),
                        mention_roles: Vec::new(),
                    };
                    SendBatcher::submit(&state, &place, row).await
                })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    let before = ts.state.sends.statements();
    let first = wave(0, 40, None).await;
    let statements = ts.state.sends.statements() - before;
    assert!(
        statements < 40,
        "{statements} statements for 40 concurrent sends: nothing was grouped"
    );
    let second = wave(40, 10, Some(47)).await;
    let mut created = Vec::new();
    for (k, outcome) in first.into_iter().chain(second).enumerate() {
        match outcome {
            Ok(Outcome::Created(row)) => created.push(row.id),
            Ok(Outcome::NonceTaken) => panic!("send {k}: fresh nonce reported taken"),
            Err(e) => assert_eq!(k, 47, "only the bad row fails: {e:?}"),
        }
    }
    assert_eq!(created.len(), 49);
    // Stored once each, ids increasing in submission order.
    let (_, page) = ts
        .get(
            &format!("/api/v1/channels/{}/messages?limit=100", w.text),
            &w.member.token,
        )
        .await;
    let stored: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|m| id_of(m).parse().unwrap())
        .collect();
    assert_eq!(stored, created, "ids follow the order of submission");
    let announced: Vec<i64> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageCreate { message } => message["id"].as_str()?.parse().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(
        announced, created,
        "each created message announced once, in order"
    );
}
