//! E2EE key routes against a real server: upload (signatures, caps, identity changes), query
//! and claim (visibility, exactly-once one-time keys under concurrency, fallback), key
//! changes, devices (IDOR), the to-device queue (idempotency, ack, IDOR) and key backup.

use std::collections::BTreeSet;

use copains_crypto::device::{ClaimedKey, Device, KeysUpload};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, TestUser};

/// Makes `a` and `b` friends (each sends a request; the second accepts the first).
async fn befriend(s: &TestServer, a: &TestUser, b: &TestUser) {
    let (st, v) = s
        .post(
            "/api/v1/users/@me/relationships",
            Some(&a.token),
            json!({"user_id": b.id}),
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
    let (st, v) = s
        .post(
            "/api/v1/users/@me/relationships",
            Some(&b.token),
            json!({"user_id": a.id}),
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
}

fn device(user: &TestUser, id: &str, otks: usize) -> Device {
    let mut d = Device::new(&user.id, id).unwrap();
    d.generate_one_time_keys(otks);
    d.generate_fallback_key();
    d
}

async fn upload(s: &TestServer, user: &TestUser, body: &KeysUpload) -> (StatusCode, Value) {
    s.post(
        "/api/v1/keys/upload",
        Some(&user.token),
        serde_json::to_value(body).unwrap(),
    )
    .await
}

async fn publish(s: &TestServer, user: &TestUser, d: &mut Device) -> Value {
    let (st, v) = upload(s, user, &d.keys_for_upload()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    d.mark_keys_as_published();
    v
}

/// A request naming a device with `X-Copains-Device` (asserting no 5xx).
async fn dev_req(
    s: &TestServer,
    method: Method,
    path: &str,
    user: &TestUser,
    device: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = s.http.request(method, s.url(path)).bearer_auth(&user.token);
    if let Some(d) = device {
        rb = rb.header("X-Copains-Device", d);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert!(
        status.as_u16() < 500,
        "server error {status} on {path}: {v}"
    );
    (status, v)
}

async fn claim(s: &TestServer, by: &TestUser, user: &TestUser, device: &str) -> Option<ClaimedKey> {
    let (st, v) = s
        .post(
            "/api/v1/keys/claim",
            Some(&by.token),
            json!({"device_keys": {user.id.clone(): [device]}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let k = v["one_time_keys"][&user.id][device].clone();
    if k.is_null() {
        None
    } else {
        Some(serde_json::from_value(k).unwrap())
    }
}

#[tokio::test]
async fn keys_upload_query_claim_then_fallback() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    befriend(&s, &alice, &bob).await;
    let mut bd = device(&bob, "BOBPHONE", 3);
    let v = publish(&s, &bob, &mut bd).await;
    assert_eq!(v["one_time_key_counts"]["curve25519"], 3);
    assert_eq!(v["fallback_key_unused"], true);

    // Alice (a friend) sees Bob's device; Carol (a stranger) does not.
    let (st, v) = s
        .post(
            "/api/v1/keys/query",
            Some(&alice.token),
            json!({"user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let dk = &v["devices"][&bob.id]["BOBPHONE"];
    assert_eq!(dk["identity_keys"]["ed25519"], bd.identity_keys().ed25519);
    assert_eq!(
        dk["identity_keys"]["curve25519"],
        bd.identity_keys().curve25519
    );
    assert!(dk["signature"].is_string());
    let (_, v) = s
        .post(
            "/api/v1/keys/query",
            Some(&carol.token),
            json!({"user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(
        v["devices"],
        json!({}),
        "a stranger must not see Bob's keys"
    );
    assert!(claim(&s, &carol, &bob, "BOBPHONE").await.is_none());
    // Being in a group DM with Bob makes his keys visible to Carol (she must encrypt to him).
    // Strangers may not open one (DM policy), so Alice, a friend of both, opens it.
    befriend(&s, &alice, &carol).await;
    let (st, v) = s
        .post(
            "/api/v1/users/@me/channels",
            Some(&alice.token),
            json!({"recipients": [bob.id, carol.id]}),
        )
        .await;
    assert!(st.is_success(), "{st} {v}");
    let (_, v) = s
        .post(
            "/api/v1/keys/query",
            Some(&carol.token),
            json!({"user_ids": [bob.id]}),
        )
        .await;
    assert!(v["devices"][&bob.id]["BOBPHONE"].is_object(), "{v}");

    // Three one-time keys, each once, all validly signed; then the fallback key.
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let k = claim(&s, &alice, &bob, "BOBPHONE").await.unwrap();
        assert!(!k.fallback);
        k.verify().unwrap();
        assert_eq!(k.identity_keys, bd.identity_keys());
        assert!(seen.insert(k.key_id.clone()), "key handed out twice");
    }
    let fb = claim(&s, &alice, &bob, "BOBPHONE").await.unwrap();
    assert!(fb.fallback);
    fb.verify().unwrap();
    let fb2 = claim(&s, &alice, &bob, "BOBPHONE").await.unwrap();
    assert_eq!(
        fb2.key_id, fb.key_id,
        "the fallback key is reused until replaced"
    );
    assert!(claim(&s, &alice, &bob, "NOSUCHDEVICE").await.is_none());

    // Bob's next upload reports the fallback key as used and no one-time keys.
    let (_, v) = upload(&s, &bob, &bd.keys_for_upload()).await;
    assert_eq!(v["one_time_key_counts"]["curve25519"], 0);
    assert_eq!(v["fallback_key_unused"], false);

    // Too many users in one query → 422.
    let many: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
    let (st, _) = s
        .post(
            "/api/v1/keys/query",
            Some(&alice.token),
            json!({"user_ids": many}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn keys_bad_signatures_and_caps() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let d = device(&alice, "ALICE1", 5);
    let good = d.keys_for_upload();

    let mut bad = good.clone();
    bad.signature = d.sign(b"something else");
    let (st, v) = upload(&s, &alice, &bad).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_signature"))
    );

    let mut bad = good.clone();
    let other = Device::new(&alice.id, "ALICE1").unwrap();
    bad.one_time_keys.values_mut().next().unwrap().key = other.identity_keys().curve25519;
    let (st, v) = upload(&s, &alice, &bad).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_signature"))
    );

    let mut bad = good.clone();
    bad.fallback_key.as_mut().unwrap().signature = good.signature.clone();
    let (st, v) = upload(&s, &alice, &bad).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_signature"))
    );

    let mut bad = good.clone();
    bad.identity_keys.ed25519 = "not a key".into();
    let (st, v) = upload(&s, &alice, &bad).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_key"))
    );

    // Keys signed for another user id, or uploaded by another user, are refused.
    let (st, _) = upload(&s, &bob, &good).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // Bad device ids and key ids.
    let weird = Device::new(&alice.id, "has space").unwrap();
    let (st, _) = upload(&s, &alice, &weird.keys_for_upload()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let mut raw = serde_json::to_value(&good).unwrap();
    raw["one_time_keys"] = json!({"a\u{0}b": {"key": "x", "signature": "y"}});
    let (st, _) = s.post("/api/v1/keys/upload", Some(&alice.token), raw).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was stored by the failed uploads.
    let (_, v) = s.get("/api/v1/devices", &alice.token).await;
    assert_eq!(v, json!([]));

    let (st, v) = upload(&s, &alice, &good).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["one_time_key_counts"]["curve25519"], 5);
    // Re-uploading the same keys is harmless.
    let (st, v) = upload(&s, &alice, &good).await;
    assert_eq!(
        (st, v["one_time_key_counts"]["curve25519"].as_i64()),
        (StatusCode::OK, Some(5))
    );

    // The identity keys of a registered device cannot change.
    let (st, v) = upload(&s, &alice, &other.keys_for_upload()).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("device_keys_changed"))
    );

    // More than 100 one-time keys in one upload.
    let mut big = good.clone();
    let sample = big.one_time_keys.values().next().unwrap().clone();
    for i in 0..101 {
        big.one_time_keys.insert(format!("K{i}"), sample.clone());
    }
    let (st, v) = upload(&s, &alice, &big).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_keys"))
    );

    // At most 500 stored per device: 5 + 9 × 50 = 455, + 50 = 505 > 500.
    let mut d2 = d;
    d2.mark_keys_as_published();
    for _ in 0..9 {
        d2.generate_one_time_keys(50);
        let (st, v) = upload(&s, &alice, &d2.keys_for_upload()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        d2.mark_keys_as_published();
    }
    d2.generate_one_time_keys(50);
    let (st, v) = upload(&s, &alice, &d2.keys_for_upload()).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_keys"))
    );
    let (_, v) = s.get("/api/v1/devices", &alice.token).await;
    assert_eq!(v[0]["one_time_keys"], 455);
}

#[tokio::test]
async fn keys_concurrent_claims_hand_each_key_out_once() {
    let s = TestServer::start().await;
    let bob = s.register("bob").await;
    let mut claimers = Vec::new();
    for i in 0..3 {
        let u = s.register(&format!("claimer{i}")).await;
        befriend(&s, &u, &bob).await;
        claimers.push(u);
    }
    // M = 40 one-time keys, 60 concurrent claims from three users.
    let mut bd = device(&bob, "BOB1", 40);
    publish(&s, &bob, &mut bd).await;
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = s.clone();
        let by = claimers[i % 3].clone();
        let bob = bob.clone();
        tasks.push(tokio::spawn(
            async move { claim(&s, &by, &bob, "BOB1").await },
        ));
    }
    let mut otks = Vec::new();
    let mut fallbacks = 0;
    for t in tasks {
        let k = t
            .await
            .unwrap()
            .expect("every claim gets a key (fallback at worst)");
        k.verify().unwrap();
        if k.fallback {
            fallbacks += 1;
        } else {
            otks.push(k.key_id);
        }
    }
    let distinct: BTreeSet<_> = otks.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        otks.len(),
        "a one-time key was handed out twice"
    );
    assert_eq!(otks.len(), 40, "every one-time key is handed out");
    assert_eq!(fallbacks, 20);
    let (_, v) = s.get("/api/v1/devices", &bob.token).await;
    assert_eq!(v[0]["one_time_keys"], 0);
}

#[tokio::test]
async fn keys_changes_devices_and_idor() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    befriend(&s, &alice, &bob).await;
    let (_, v) = s.get("/api/v1/keys/changes", &alice.token).await;
    let start = v["next"].as_i64().unwrap();

    let mut bd = device(&bob, "BOB1", 1);
    publish(&s, &bob, &mut bd).await;
    let (_, v) = s
        .get(&format!("/api/v1/keys/changes?since={start}"), &alice.token)
        .await;
    assert_eq!(v["changed"], json!([bob.id]));
    let next = v["next"].as_i64().unwrap();
    assert!(next > start);
    // Nothing new since `next`; Carol (a stranger) never sees Bob's changes.
    let (_, v) = s
        .get(&format!("/api/v1/keys/changes?since={next}"), &alice.token)
        .await;
    assert_eq!(v["changed"], json!([]));
    let (_, v) = s
        .get(&format!("/api/v1/keys/changes?since={start}"), &carol.token)
        .await;
    assert_eq!(v["changed"], json!([]));
    let (st, _) = s.get("/api/v1/keys/changes?since=-1", &alice.token).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.get("/api/v1/keys/changes?since=abc", &alice.token).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Devices: mine only; deleting someone else's is a 404.
    let mut ad = device(&alice, "ALICE1", 1);
    publish(&s, &alice, &mut ad).await;
    let (_, v) = s.get("/api/v1/devices", &alice.token).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["device_id"], "ALICE1");
    let (st, _) = s.delete("/api/v1/devices/ALICE1", &bob.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.delete("/api/v1/devices/no%20such", &bob.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.delete("/api/v1/devices/BOB1", &bob.token).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.delete("/api/v1/devices/BOB1", &bob.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = s
        .get(&format!("/api/v1/keys/changes?since={next}"), &alice.token)
        .await;
    let changed: Vec<&str> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        changed.contains(&bob.id.as_str()),
        "a removed device is a key change: {changed:?}"
    );
    let (_, v) = s
        .post(
            "/api/v1/keys/query",
            Some(&alice.token),
            json!({"user_ids": [bob.id]}),
        )
        .await;
    assert_eq!(v["devices"][&bob.id], json!({}));
    // Alice's device is untouched.
    let (_, v) = s.get("/api/v1/devices", &alice.token).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn to_device_idempotency_ack_and_idor() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    befriend(&s, &alice, &bob).await;
    let mut ad = device(&alice, "A1", 1);
    publish(&s, &alice, &mut ad).await;
    let mut bd = device(&bob, "B1", 1);
    publish(&s, &bob, &mut bd).await;
    let mut cd = device(&carol, "C1", 1);
    publish(&s, &carol, &mut cd).await;

    let body = json!({"type": "test.ping", "messages": {bob.id.clone(): {"B1": {"n": 1}, "NOPE": {"n": 2}}}});
    let (st, v) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/txn-1",
        &alice,
        Some("A1"),
        Some(body.clone()),
    )
    .await;
    assert_eq!((st, v["queued"].as_i64()), (StatusCode::OK, Some(1)), "{v}");
    // The same transaction again queues nothing more.
    let (st, v) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/txn-1",
        &alice,
        Some("A1"),
        Some(body.clone()),
    )
    .await;
    assert_eq!((st, v["queued"].as_i64()), (StatusCode::OK, Some(1)));
    let (st, v) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/txn-2",
        &alice,
        Some("A1"),
        Some(json!({"messages": {bob.id.clone(): {"B1": {"n": 3}}}})),
    )
    .await;
    assert_eq!((st, v["queued"].as_i64()), (StatusCode::OK, Some(1)));

    let (st, v) = dev_req(&s, Method::GET, "/api/v1/to-device", &bob, Some("B1"), None).await;
    assert_eq!(st, StatusCode::OK);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{v}");
    assert_eq!(msgs[0]["content"], json!({"n": 1}));
    assert_eq!(msgs[0]["type"], "test.ping");
    assert_eq!(msgs[0]["sender_user_id"], alice.id);
    assert_eq!(msgs[0]["sender_device_id"], "A1");
    assert_eq!(msgs[1]["type"], "copains.olm");
    let first = msgs[0]["id"].as_i64().unwrap();
    let last = v["next_since"].as_i64().unwrap();
    // Paging with since/limit; the query-parameter form of the device.
    let (_, v) = dev_req(
        &s,
        Method::GET,
        &format!("/api/v1/to-device?since={first}&limit=1&device_id=B1"),
        &bob,
        None,
        None,
    )
    .await;
    assert_eq!(v["messages"][0]["content"], json!({"n": 3}));

    // IDOR: Alice naming Bob's device, Carol naming Bob's device → 404; no device → 400.
    let (st, _) = dev_req(
        &s,
        Method::GET,
        "/api/v1/to-device",
        &alice,
        Some("B1"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = dev_req(
        &s,
        Method::GET,
        "/api/v1/to-device",
        &carol,
        Some("B1"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = dev_req(
        &s,
        Method::POST,
        "/api/v1/to-device/ack",
        &alice,
        Some("B1"),
        Some(json!({"up_to": last})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/x",
        &carol,
        Some("A1"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = dev_req(&s, Method::GET, "/api/v1/to-device", &bob, None, None).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_device"))
    );
    let (st, _) = dev_req(
        &s,
        Method::GET,
        "/api/v1/to-device",
        &bob,
        Some("bad id!"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Carol is no friend of Bob: her messages to him are not queued.
    let (st, v) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/c-1",
        &carol,
        Some("C1"),
        Some(json!({"messages": {bob.id.clone(): {"B1": {"spam": true}}}})),
    )
    .await;
    assert_eq!((st, v["queued"].as_i64()), (StatusCode::OK, Some(0)));

    // Bounds: content over 64 KiB, bad txn ids, bad user ids, negative limits.
    let huge = "x".repeat(70 * 1024);
    let (st, _) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/t-big",
        &alice,
        Some("A1"),
        Some(json!({"messages": {bob.id.clone(): {"B1": {"b": huge}}}})),
    )
    .await;
    assert!(
        st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::PAYLOAD_TOO_LARGE,
        "{st}"
    );
    let (st, _) = dev_req(
        &s,
        Method::PUT,
        &format!("/api/v1/to-device/{}", "t".repeat(65)),
        &alice,
        Some("A1"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/t-3",
        &alice,
        Some("A1"),
        Some(json!({"messages": {"bob": {"B1": {}}}})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = dev_req(
        &s,
        Method::GET,
        "/api/v1/to-device?limit=0",
        &bob,
        Some("B1"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = dev_req(
        &s,
        Method::GET,
        "/api/v1/to-device?since=99999999999999999999",
        &bob,
        Some("B1"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Ack deletes exactly the acknowledged messages.
    let (st, v) = dev_req(
        &s,
        Method::POST,
        "/api/v1/to-device/ack",
        &bob,
        Some("B1"),
        Some(json!({"up_to": first})),
    )
    .await;
    assert_eq!((st, v["deleted"].as_u64()), (StatusCode::OK, Some(1)));
    let (_, v) = dev_req(&s, Method::GET, "/api/v1/to-device", &bob, Some("B1"), None).await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    let (_, v) = dev_req(
        &s,
        Method::POST,
        "/api/v1/to-device/ack",
        &bob,
        Some("B1"),
        Some(json!({"up_to": last})),
    )
    .await;
    assert_eq!(v["deleted"], 1);
    let (_, v) = dev_req(&s, Method::GET, "/api/v1/to-device", &bob, Some("B1"), None).await;
    assert_eq!(v["messages"], json!([]));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM to_device_messages")
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // The transaction id is still remembered after the ack: a retry queues nothing.
    let (_, v) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/txn-1",
        &alice,
        Some("A1"),
        Some(body),
    )
    .await;
    assert_eq!(v["queued"], 1);
    let (_, v) = dev_req(&s, Method::GET, "/api/v1/to-device", &bob, Some("B1"), None).await;
    assert_eq!(v["messages"], json!([]));
}

#[tokio::test]
async fn key_backup_versions_and_sessions() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let (st, _) = s.get("/api/v1/keys/backup", &alice.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s
        .put(
            "/api/v1/keys/backup",
            &alice.token,
            Some(json!({"auth_data": "check-v1"})),
        )
        .await;
    assert_eq!((st, v["version"].as_i64()), (StatusCode::OK, Some(1)));
    let sessions = json!([{"channel_id": "c1", "session_id": "s1", "data": "AAAA"},
                          {"channel_id": "c1", "session_id": "s2", "data": "BBBB"}]);
    let (st, v) = s
        .put(
            "/api/v1/keys/backup/sessions",
            &alice.token,
            Some(json!({"version": 1, "sessions": sessions})),
        )
        .await;
    assert_eq!((st, v["sessions"].as_i64()), (StatusCode::OK, Some(2)));
    // Replacing a blob keeps the count.
    let (_, v) = s.put("/api/v1/keys/backup/sessions", &alice.token, Some(json!({"version": 1, "sessions": [{"channel_id": "c1", "session_id": "s1", "data": "CCCC"}]}))).await;
    assert_eq!(v["sessions"], 2);
    let (_, v) = s.get("/api/v1/keys/backup/sessions", &alice.token).await;
    assert_eq!(v["version"], 1);
    let data: BTreeSet<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, BTreeSet::from(["CCCC", "BBBB"]));
    let (st, v) = s
        .put(
            "/api/v1/keys/backup/sessions",
            &alice.token,
            Some(json!({"version": 7, "sessions": []})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("wrong_backup_version"))
    );
    let (st, _) = s.put("/api/v1/keys/backup/sessions", &alice.token, Some(json!({"version": 1, "sessions": [{"channel_id": "c", "session_id": "s", "data": "a\u{0}b"}]}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s.put("/api/v1/keys/backup/sessions", &alice.token, Some(json!({"version": 1, "sessions": [{"channel_id": "c", "session_id": "s", "data": "x".repeat(16 * 1024 + 1)}]}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // Bob has no backup and cannot reach Alice's.
    let (st, _) = s.get("/api/v1/keys/backup", &bob.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get("/api/v1/keys/backup/sessions", &bob.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .put(
            "/api/v1/keys/backup/sessions",
            &bob.token,
            Some(json!({"version": 1, "sessions": []})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A new version drops the old blobs.
    let (_, v) = s
        .put(
            "/api/v1/keys/backup",
            &alice.token,
            Some(json!({"auth_data": "check-v2"})),
        )
        .await;
    assert_eq!(v["version"], 2);
    let (_, v) = s.get("/api/v1/keys/backup", &alice.token).await;
    assert_eq!(
        (
            v["version"].as_i64(),
            v["sessions"].as_i64(),
            v["auth_data"].as_str()
        ),
        (Some(2), Some(0), Some("check-v2"))
    );
    let (st, _) = s
        .put(
            "/api/v1/keys/backup",
            &alice.token,
            Some(json!({"auth_data": ""})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn keys_bad_input_never_5xx() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    for (path, body) in [
        ("/api/v1/keys/upload", json!({})),
        (
            "/api/v1/keys/upload",
            json!({"user_id": alice.id, "device_id": "D", "identity_keys": {"curve25519": "", "ed25519": ""}, "signature": ""}),
        ),
        (
            "/api/v1/keys/upload",
            json!({"user_id": 9007199254740993_u64, "device_id": [], "identity_keys": 1, "signature": null}),
        ),
        ("/api/v1/keys/query", json!({"user_ids": ["abc"]})),
        (
            "/api/v1/keys/query",
            json!({"user_ids": [9007199254740993_u64]}),
        ),
        (
            "/api/v1/keys/claim",
            json!({"device_keys": {"not-an-id": ["D"]}}),
        ),
        ("/api/v1/keys/claim", json!({"device_keys": []})),
    ] {
        let (st, v) = s.post(path, Some(&alice.token), body).await;
        assert!(st.is_client_error(), "{path}: {st} {v}");
    }
    // Invalid device ids name nothing: no key, no error...
    let (st, v) = s
        .post(
            "/api/v1/keys/claim",
            Some(&alice.token),
            json!({"device_keys": {alice.id.clone(): ["a/b", "x y"]}}),
        )
        .await;
    assert_eq!((st, v), (StatusCode::OK, json!({"one_time_keys": {}})));
    // ...but a control character is refused like in any text a peer sends (#17 item 2).
    let (st, v) = s
        .post(
            "/api/v1/keys/claim",
            Some(&alice.token),
            json!({"device_keys": {alice.id.clone(): ["\u{0}"]}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "validation");
    let (st, _) = s
        .post("/api/v1/keys/query", None, json!({"user_ids": []}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let resp = s
        .http
        .post(s.url("/api/v1/keys/upload"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Every keys route is in the OpenAPI document, with clean field names.
    let doc = s
        .http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for path in [
        "/api/v1/keys/upload",
        "/api/v1/keys/query",
        "/api/v1/keys/claim",
        "/api/v1/keys/changes",
        "/api/v1/devices/{device_id}",
        "/api/v1/to-device/{txn_id}",
        "/api/v1/to-device/ack",
        "/api/v1/keys/backup/sessions",
    ] {
        assert!(doc.contains(&format!("\"{path}\"")), "{path} missing");
    }
    assert!(!doc.contains("r#type"));
}

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<copains_wire::events::BusEvent>>,
) -> std::sync::Arc<copains_wire::events::BusEvent> {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .unwrap()
}

#[tokio::test]
async fn key_changes_and_to_device_messages_are_announced_on_the_bus() {
    use copains_signaling::Topic;
    use copains_wire::events::Event;
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    befriend(&s, &alice, &bob).await;
    let mut ad = device(&alice, "A1", 1);
    publish(&s, &alice, &mut ad).await;
    let alice_id = copains_wire::Id(alice.id.parse().unwrap());
    let bob_id = copains_wire::Id(bob.id.parse().unwrap());
    s.state
        .bus
        .subscribe(&[Topic::User(alice_id), Topic::User(bob_id)])
        .await
        .unwrap();
    let mut rx = s.state.bus.incoming();

    // Bob registers a device: his friend Alice (and Bob) hear of it.
    let mut bd = device(&bob, "B1", 1);
    publish(&s, &bob, &mut bd).await;
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.event, Event::DeviceKeysChanged { user_id: bob_id });
    let audience = serde_json::to_string(&ev.audience).unwrap();
    assert!(
        audience.contains(&alice.id),
        "friends are in the audience: {audience}"
    );

    // A to-device message wakes its recipient up, with the queue position.
    let (st, _) = dev_req(
        &s,
        Method::PUT,
        "/api/v1/to-device/t1",
        &alice,
        Some("A1"),
        Some(json!({"type": "test.ping", "messages": {bob.id.clone(): {"B1": {"n": 1}}}})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let ev = loop {
        let ev = next_event(&mut rx).await;
        if matches!(ev.event, Event::ToDevice { .. }) {
            break ev;
        }
    };
    assert_eq!(
        serde_json::to_value(&ev.event).unwrap()["d"],
        json!({"device_id": "B1", "id": 1, "sender_user_id": alice.id, "sender_device_id": "A1",
               "message": {"type": "test.ping", "content": {"n": 1}}})
    );
}

#[tokio::test]
async fn keys_claim_is_rate_limited() {
    let s = TestServer::with_config(copains_api::ApiConfig {
        auth_rate_burst: 1,
        auth_rate_period: std::time::Duration::from_secs(60),
        ..crate::support::test_config()
    })
    .await;
    let alice = s.register("alice").await;
    let mut ad = device(&alice, "A1", 10);
    publish(&s, &alice, &mut ad).await;
    // Burst = 6 × the auth burst.
    for _ in 0..6 {
        assert!(claim(&s, &alice, &alice, "A1").await.is_some());
    }
    let (st, v) = s
        .post(
            "/api/v1/keys/claim",
            Some(&alice.token),
            json!({"device_keys": {alice.id.clone(): ["A1"]}}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    // Other key routes are not limited by it.
    let (st, _) = s
        .post(
            "/api/v1/keys/query",
            Some(&alice.token),
            json!({"user_ids": [alice.id]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}
