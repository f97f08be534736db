//! Issue 19 ("everyday Discord-grade use") against a real server and PostgreSQL: the channels
//! a new server starts with, the DM privacy setting (each value, for DMs, group DMs and adding
//! to a group DM, and blocks), the public invite preview with member and online counts, and a
//! message over the length limit.

use copains_signaling::presence::{ConnPresence, unix_ms};
use copains_wire::Id;
use copains_wire::events::PresenceStatus;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, TestUser};

async fn create_server(ts: &TestServer, owner: &TestUser, name: &str) -> Value {
    let (s, v) = ts
        .post("/api/v1/servers", Some(&owner.token), json!({"name": name}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn invite(ts: &TestServer, by: &TestUser, server: &str) -> String {
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/invites"),
            Some(&by.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["code"].as_str().unwrap().to_owned()
}

async fn join(ts: &TestServer, who: &TestUser, code: &str) {
    let (s, v) = ts
        .post(
            &format!("/api/v1/invites/{code}"),
            Some(&who.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

async fn open_dm(ts: &TestServer, me: &TestUser, to: &[&TestUser]) -> (StatusCode, Value) {
    let ids: Vec<&str> = to.iter().map(|u| u.id.as_str()).collect();
    ts.post(
        "/api/v1/users/@me/channels",
        Some(&me.token),
        json!({ "recipients": ids }),
    )
    .await
}

async fn set_policy(ts: &TestServer, me: &TestUser, policy: &str) {
    let (s, v) = ts
        .patch(
            "/api/v1/users/@me",
            &me.token,
            json!({ "dm_policy": policy }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["dm_policy"], policy);
}

fn code(v: &Value) -> Option<&str> {
    v["code"].as_str()
}

#[tokio::test]
async fn everyday_a_new_server_has_text_and_voice_categories() {
    let ts = TestServer::start().await;
    let owner = ts.register("starter").await;
    let server = create_server(&ts, &owner, "Club").await;
    let sid = server["id"].as_str().unwrap();
    let (s, chans) = ts
        .get(&format!("/api/v1/servers/{sid}/channels"), &owner.token)
        .await;
    assert_eq!(s, StatusCode::OK);
    let chans = chans.as_array().unwrap();
    let find = |kind: &str, name: &str| -> Value {
        chans
            .iter()
            .find(|c| c["kind"] == kind && c["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {chans:?}"))
            .clone()
    };
    let text_cat = find("category", "Text channels");
    let voice_cat = find("category", "Voice channels");
    let general = find("text", "general");
    let voice = find("voice", "General");
    assert_eq!(chans.len(), 4, "{chans:?}");
    assert_eq!(general["parent_id"], text_cat["id"]);
    assert_eq!(voice["parent_id"], voice_cat["id"]);
    assert!(text_cat["position"].as_i64() < voice_cat["position"].as_i64());
    assert_eq!(general["encrypted"], false);
    // #general comes first in the listing (clients that open "the first channel" land there).
    assert_eq!(chans[0]["id"], general["id"]);
    // The owner can talk in both right away.
    let gid = general["id"].as_str().unwrap();
    let (s, v) = ts
        .post(
            &format!("/api/v1/channels/{gid}/messages"),
            Some(&owner.token),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn everyday_dm_policy_each_setting_for_dms_group_dms_and_blocks() {
    let ts = TestServer::start().await;
    let alice = ts.register("pol_alice").await;
    let bob = ts.register("pol_bob").await;
    let carol = ts.register("pol_carol").await;
    let dave = ts.register("pol_dave").await;

    // The default, and bad values.
    let (_, me) = ts.get("/api/v1/users/@me", &bob.token).await;
    assert_eq!(me["dm_policy"], "server_members");
    for bad in [json!("everyone"), json!(""), json!(3), json!("NOBODY")] {
        let (s, v) = ts
            .patch("/api/v1/users/@me", &bob.token, json!({ "dm_policy": bad }))
            .await;
        assert!(s.is_client_error(), "{bad} → {s} {v}");
        assert!(code(&v).is_some(), "{v}");
    }

    // server_members: a stranger cannot; sharing a server (or a friendship) lets them.
    let (s, v) = open_dm(&ts, &alice, &[&bob]).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, Some("dm_shared_server_only"))
    );
    assert!(v["message"].as_str().unwrap().contains("share a server"));
    let (s, v) = open_dm(&ts, &alice, &[&bob, &carol]).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, Some("dm_shared_server_only")),
        "no group DM with strangers either"
    );
    let club = create_server(&ts, &bob, "Club").await;
    let club = club["id"].as_str().unwrap().to_owned();
    let code_ = invite(&ts, &bob, &club).await;
    join(&ts, &alice, &code_).await;
    join(&ts, &carol, &code_).await;
    let (s, dm) = open_dm(&ts, &alice, &[&bob]).await;
    assert_eq!(s, StatusCode::CREATED, "{dm}");
    let (s, g) = open_dm(&ts, &alice, &[&bob, &carol]).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    // Adding someone who shares no server with the owner: refused; dave joins, then it works.
    let add = |u: &TestUser| format!("/api/v1/channels/{gid}/recipients/{}", u.id);
    let (s, v) = ts.put(&add(&dave), &alice.token, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, Some("dm_shared_server_only"))
    );
    join(&ts, &dave, &code_).await;
    let (s, v) = ts.put(&add(&dave), &alice.token, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    ts.delete(&add(&dave), &alice.token).await;

    // friends: a co-member is refused, a friend is not.
    set_policy(&ts, &carol, "friends").await;
    let (s, v) = open_dm(&ts, &alice, &[&carol]).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, Some("dm_friends_only"))
    );
    let (s, v) = open_dm(&ts, &alice, &[&bob, &carol]).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, Some("dm_friends_only"))
    );
    set_policy(&ts, &dave, "friends").await;
    let (s, v) = ts.put(&add(&dave), &alice.token, None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, Some("dm_friends_only"))
    );
    ts.befriend(&alice, &carol).await;
    let (s, v) = open_dm(&ts, &alice, &[&carol]).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // nobody: not even a friend or a co-member may start one; an existing DM stays.
    set_policy(&ts, &bob, "nobody").await;
    ts.befriend(&carol, &bob).await;
    let (s, v) = open_dm(&ts, &carol, &[&bob]).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("dm_closed")));
    let (s, v) = open_dm(&ts, &carol, &[&alice, &bob]).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("dm_closed")));
    let (s, v) = open_dm(&ts, &alice, &[&bob]).await;
    assert_eq!(s, StatusCode::OK, "the existing DM is returned: {v}");
    assert_eq!(v["id"], dm["id"]);
    set_policy(&ts, &bob, "server_members").await;

    // A block beats every setting, both ways, also between friends and co-members.
    let (s, _) = ts
        .put(
            &format!("/api/v1/users/@me/blocks/{}", dave.id),
            &carol.token,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    set_policy(&ts, &dave, "server_members").await;
    for (me, other) in [(&carol, &dave), (&dave, &carol)] {
        let (s, v) = open_dm(&ts, me, &[other]).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("blocked")));
    }
    let (s, v) = open_dm(&ts, &dave, &[&alice, &carol]).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("blocked")));
    // Carol's own group: adding dave, whom she blocked, is refused.
    let (s, cg) = open_dm(&ts, &carol, &[&alice, &bob]).await;
    assert_eq!(s, StatusCode::CREATED, "{cg}");
    let (s, v) = ts
        .put(
            &format!(
                "/api/v1/channels/{}/recipients/{}",
                cg["id"].as_str().unwrap(),
                dave.id
            ),
            &carol.token,
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, Some("blocked")));
}

#[tokio::test]
async fn everyday_invite_preview_is_public_with_counts_and_no_private_data() {
    let ts = TestServer::start().await;
    let owner = ts.register("prev_owner").await;
    let guest = ts.register("prev_guest").await;
    let (s, v) = ts
        .post(
            "/api/v1/servers",
            Some(&owner.token),
            json!({"name": "Les Copains", "description": "a club", "icon": "https://example.org/icon.png"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let sid = v["id"].as_str().unwrap().to_owned();
    let code_ = invite(&ts, &owner, &sid).await;
    join(&ts, &guest, &code_).await;
    // The owner is online (one live connection), the guest invisible (counted as offline).
    let presence = ts.state.presence.clone().unwrap();
    let live = |status| ConnPresence {
        status,
        custom_status: None,
        set_at_ms: unix_ms(),
        expires_at_ms: unix_ms() + 60_000,
    };
    let uid = |u: &TestUser| Id(u.id.parse().unwrap());
    presence
        .set(uid(&owner), 1, live(PresenceStatus::Online))
        .await
        .unwrap();
    presence
        .set(uid(&guest), 2, live(PresenceStatus::Invisible))
        .await
        .unwrap();

    // Signed out.
    let (s, p) = ts
        .req(Method::GET, &format!("/api/v1/invites/{code_}"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["server_name"], "Les Copains");
    assert_eq!(p["server_id"], sid.as_str());
    assert_eq!(p["server_icon"], "https://example.org/icon.png");
    assert_eq!(p["member_count"], 2);
    assert_eq!(p["online_count"], 1);
    // Nothing private: no email, no member list, no channel names.
    let text = p.to_string();
    assert!(!text.contains("@example.org"), "{text}");
    assert!(!text.contains("general"), "{text}");
    assert!(p.get("members").is_none() && p.get("channels").is_none());

    presence
        .set(uid(&guest), 2, live(PresenceStatus::Idle))
        .await
        .unwrap();
    let (_, p) = ts
        .req(Method::GET, &format!("/api/v1/invites/{code_}"), None, None)
        .await;
    assert_eq!(p["online_count"], 2);
    presence.remove(uid(&owner), 1).await.unwrap();
    presence.remove(uid(&guest), 2).await.unwrap();
    let (_, p) = ts
        .req(Method::GET, &format!("/api/v1/invites/{code_}"), None, None)
        .await;
    assert_eq!(p["online_count"], 0);

    // Bad and unknown codes: a clear 404, never a 500.
    for bad in [
        "nope",
        "zzzzzzzzzzzz",
        "%27%20OR%201%3D1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let (s, v) = ts
            .req(Method::GET, &format!("/api/v1/invites/{bad}"), None, None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}: {v}");
        assert!(code(&v).is_some(), "{v}");
    }
}

#[tokio::test]
async fn everyday_a_message_over_the_limit_is_refused_with_a_clear_message() {
    let ts = TestServer::start().await;
    let owner = ts.register("long_owner").await;
    let server = create_server(&ts, &owner, "Long").await;
    let sid = server["id"].as_str().unwrap();
    let (_, chans) = ts
        .get(&format!("/api/v1/servers/{sid}/channels"), &owner.token)
        .await;
    let gid = chans[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/channels/{gid}/messages");
    let (s, v) = ts
        .post(
            &path,
            Some(&owner.token),
            json!({"content": "é".repeat(5000)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        v["message"],
        "a message can be up to 4000 characters; this one has 5000"
    );
    // Exactly at the limit (in characters, not bytes) is accepted, whole.
    let full = "é".repeat(4000);
    let (s, v) = ts
        .post(&path, Some(&owner.token), json!({"content": full}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["content"].as_str().unwrap().chars().count(), 4000);
    let (s, v) = ts
        .post(&path, Some(&owner.token), json!({"content": "   "}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}
