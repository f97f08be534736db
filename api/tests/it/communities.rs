//! Communities against a real server and PostgreSQL: servers, channels, roles, members,
//! invites, friends and moderation — an authorization matrix over every route that takes an
//! object id, permission resolution end to end, bans, kicks, timeouts, the audit log, and
//! invite limits under concurrent joins.
#![allow(clippy::panic)]

use std::collections::HashSet;

use copains_api::communities::friends;
use copains_api::communities::permissions::{self, Permissions as P};
use copains_signaling::Topic;
use copains_wire::Id;
use copains_wire::events::Event;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, TestUser};

/// A request with an optional `X-Audit-Log-Reason`; asserts no 5xx.
async fn send(
    ts: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    reason: Option<&str>,
) -> (StatusCode, Value) {
    let mut rb = ts.http.request(method.clone(), ts.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(r) = reason {
        rb = rb.header("X-Audit-Log-Reason", r);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    assert!(
        status.as_u16() < 500,
        "server error {status} on {method} {path}: {v}"
    );
    (status, v)
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

async fn create_server(ts: &TestServer, owner: &TestUser, name: &str) -> String {
    let (s, v) = ts
        .post("/api/v1/servers", Some(&owner.token), json!({"name": name}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    id_of(&v)
}

async fn invite(ts: &TestServer, by: &TestUser, server: &str, body: Value) -> String {
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/invites"),
            Some(&by.token),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["code"].as_str().unwrap().to_owned()
}

async fn join(ts: &TestServer, who: &TestUser, code: &str) -> StatusCode {
    ts.post(
        &format!("/api/v1/invites/{code}"),
        Some(&who.token),
        json!({}),
    )
    .await
    .0
}

async fn create_role(ts: &TestServer, by: &TestUser, server: &str, name: &str, perms: P) -> String {
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/roles"),
            Some(&by.token),
            json!({"name": name, "permissions": perms.0}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    id_of(&v)
}

async fn set_roles(ts: &TestServer, by: &TestUser, server: &str, user: &TestUser, roles: &[&str]) {
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}/members/{}", user.id),
            &by.token,
            json!({"roles": roles}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn set_everyone(ts: &TestServer, owner: &TestUser, server: &str, perms: P) {
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}/roles/{server}"),
            &owner.token,
            json!({"permissions": perms.0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn id(s: &str) -> Id {
    Id(s.parse().unwrap())
}

/// Everything the moderator role holds in the matrix.
fn mod_perms() -> P {
    [
        P::MANAGE_SERVER,
        P::MANAGE_CHANNELS,
        P::MANAGE_ROLES,
        P::KICK_MEMBERS,
        P::BAN_MEMBERS,
        P::MODERATE_MEMBERS,
        P::VIEW_AUDIT_LOG,
        P::CREATE_INVITE,
        P::MANAGE_NICKNAMES,
        P::VIEW_CHANNEL,
        P::SEND_MESSAGES,
        P::READ_HISTORY,
    ]
    .into_iter()
    .fold(P::NONE, P::union)
}

/// A plain member's permissions in the matrix (no CREATE_INVITE, no CHANGE_NICKNAME).
fn plain() -> P {
    P::VIEW_CHANNEL
        .union(P::SEND_MESSAGES)
        .union(P::READ_HISTORY)
}

struct Cast {
    owner: TestUser,
    moderator: TestUser,
    member: TestUser,
    target: TestUser,
    stranger: TestUser,
}

/// A server with a text channel, a `low` role (position 1, held by the plain member) under a
/// `mod` role (position 2, held by the moderator), a target member with no role, an overwrite
/// for `low` on the channel, a live invite, and the stranger banned.
struct Fixture {
    server: String,
    channel: String,
    low: String,
    code: String,
}

async fn fixture(ts: &TestServer, c: &Cast) -> Fixture {
    let server = create_server(ts, &c.owner, "matrix").await;
    let mod_role = create_role(ts, &c.owner, &server, "mod", mod_perms()).await;
    let low = create_role(ts, &c.owner, &server, "low", P::NONE).await;
    set_everyone(ts, &c.owner, &server, plain()).await;
    let code = invite(ts, &c.owner, &server, json!({})).await;
    for u in [&c.moderator, &c.member, &c.target] {
        assert_eq!(join(ts, u, &code).await, StatusCode::CREATED);
    }
    set_roles(ts, &c.owner, &server, &c.moderator, &[&mod_role]).await;
    // The plain member holds `low`, so they outrank the target: only permissions stop them.
    set_roles(ts, &c.owner, &server, &c.member, &[&low]).await;
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&c.owner.token),
            json!({"name": "room", "kind": "text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let channel = id_of(&v);
    let (s, v) = ts
        .put(
            &format!("/api/v1/channels/{channel}/overwrites/{low}"),
            &c.owner.token,
            Some(json!({"kind": "role", "allow": 0, "deny": P::SEND_MESSAGES.0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = ts
        .put(
            &format!("/api/v1/servers/{server}/bans/{}", c.stranger.id),
            &c.owner.token,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    Fixture {
        server,
        channel,
        low,
        code,
    }
}

async fn cast(ts: &TestServer, prefix: &str) -> Cast {
    Cast {
        owner: ts.register(&format!("{prefix}owner")).await,
        moderator: ts.register(&format!("{prefix}mod")).await,
        member: ts.register(&format!("{prefix}member")).await,
        target: ts.register(&format!("{prefix}target")).await,
        stranger: ts.register(&format!("{prefix}stranger")).await,
    }
}

#[tokio::test]
async fn communities_authorization_matrix() {
    let ts = TestServer::start().await;
    let c = cast(&ts, "m").await;
    type Route = (Method, &'static str, Option<Value>);
    // Path placeholders: {s} server, {c} channel, {low} role, {t} target user, {x} stranger
    // (banned), {code} invite. Expected statuses: stranger, member, moderator, owner.
    let routes: Vec<(Route, [u16; 4])> = vec![
        ((Method::GET, "/servers/{s}", None), [404, 200, 200, 200]),
        (
            (
                Method::PATCH,
                "/servers/{s}",
                Some(json!({"name": "renamed"})),
            ),
            [404, 403, 200, 200],
        ),
        ((Method::DELETE, "/servers/{s}", None), [404, 403, 403, 204]),
        (
            (
                Method::POST,
                "/servers/{s}/transfer",
                Some(json!({"user_id": "{t}"})),
            ),
            [404, 403, 403, 200],
        ),
        (
            (Method::GET, "/servers/{s}/channels", None),
            [404, 200, 200, 200],
        ),
        (
            (
                Method::PATCH,
                "/servers/{s}/channels",
                Some(json!([{"id": "{c}", "position": 0}])),
            ),
            [404, 403, 200, 200],
        ),
        (
            (
                Method::POST,
                "/servers/{s}/channels",
                Some(json!({"name": "new", "kind": "voice"})),
            ),
            [404, 403, 201, 201],
        ),
        ((Method::GET, "/channels/{c}", None), [404, 200, 200, 200]),
        (
            (
                Method::PATCH,
                "/channels/{c}",
                Some(json!({"topic": "t", "slowmode_secs": 5})),
            ),
            [404, 403, 200, 200],
        ),
        (
            (Method::DELETE, "/channels/{c}", None),
            [404, 403, 204, 204],
        ),
        (
            (
                Method::PUT,
                "/channels/{c}/overwrites/{t}",
                Some(json!({"kind": "member", "allow": 0, "deny": P::SEND_MESSAGES.0})),
            ),
            [404, 403, 200, 200],
        ),
        (
            (Method::DELETE, "/channels/{c}/overwrites/{low}", None),
            [404, 403, 204, 204],
        ),
        (
            (Method::GET, "/servers/{s}/roles", None),
            [404, 200, 200, 200],
        ),
        (
            (
                Method::POST,
                "/servers/{s}/roles",
                Some(json!({"name": "r", "permissions": P::KICK_MEMBERS.0})),
            ),
            [404, 403, 201, 201],
        ),
        (
            (
                Method::PATCH,
                "/servers/{s}/roles/{low}",
                Some(json!({"name": "lower", "color": 255})),
            ),
            [404, 403, 200, 200],
        ),
        (
            (Method::DELETE, "/servers/{s}/roles/{low}", None),
            [404, 403, 204, 204],
        ),
        (
            (
                Method::PATCH,
                "/servers/{s}/roles",
                Some(json!([{"id": "{low}", "position": 1}])),
            ),
            [404, 403, 200, 200],
        ),
        (
            (Method::GET, "/servers/{s}/members", None),
            [404, 200, 200, 200],
        ),
        (
            (Method::GET, "/servers/{s}/members/{t}", None),
            [404, 200, 200, 200],
        ),
        (
            (
                Method::PATCH,
                "/servers/{s}/members/{t}",
                Some(json!({"nickname": "nick"})),
            ),
            [404, 403, 200, 200],
        ),
        (
            (Method::DELETE, "/servers/{s}/members/{t}", None),
            [404, 403, 204, 204],
        ),
        (
            (Method::GET, "/servers/{s}/bans", None),
            [404, 403, 200, 200],
        ),
        (
            (Method::PUT, "/servers/{s}/bans/{t}", None),
            [404, 403, 204, 204],
        ),
        (
            (Method::DELETE, "/servers/{s}/bans/{x}", None),
            [404, 403, 204, 204],
        ),
        (
            (Method::GET, "/servers/{s}/audit-log", None),
            [404, 403, 200, 200],
        ),
        (
            (
                Method::POST,
                "/servers/{s}/invites",
                Some(json!({"max_uses": 3})),
            ),
            [404, 403, 201, 201],
        ),
        (
            (Method::GET, "/servers/{s}/invites", None),
            [404, 403, 200, 200],
        ),
        (
            (Method::DELETE, "/invites/{code}", None),
            [404, 403, 204, 204],
        ),
        (
            (Method::DELETE, "/users/@me/servers/{s}", None),
            [404, 204, 204, 409],
        ),
    ];
    let mut failures = Vec::new();
    for ((method, path, body), expected) in &routes {
        for (i, actor) in [&c.stranger, &c.member, &c.moderator, &c.owner]
            .into_iter()
            .enumerate()
        {
            let fx = fixture(&ts, &c).await;
            let fill = |s: &str| {
                s.replace("{s}", &fx.server)
                    .replace("{c}", &fx.channel)
                    .replace("{low}", &fx.low)
                    .replace("{t}", &c.target.id)
                    .replace("{x}", &c.stranger.id)
                    .replace("{code}", &fx.code)
            };
            let path = format!("/api/v1{}", fill(path));
            let body = body
                .as_ref()
                .map(|b| serde_json::from_str(&fill(&b.to_string())).unwrap());
            let (st, v) = send(
                &ts,
                method.clone(),
                &path,
                Some(&actor.token),
                body,
                Some("matrix"),
            )
            .await;
            if st.as_u16() != expected[i] {
                failures.push(format!(
                    "{method} {path} as {}: {st} (want {}) {v}",
                    actor.username, expected[i]
                ));
            }
            if st.as_u16() == 403 {
                // Never the hierarchy: every 403 here is about the permission itself.
                let code = v["code"].as_str().unwrap_or_default();
                assert!(
                    code == "missing_permission" || code == "not_owner",
                    "{method} {path} as {}: {v}",
                    actor.username
                );
            }
            // Clean up so nobody reaches the 100-server cap.
            let (ds, _) = ts
                .delete(&format!("/api/v1/servers/{}", fx.server), &c.owner.token)
                .await;
            if ds != StatusCode::NO_CONTENT {
                // Transferred: the target owns it now.
                ts.delete(&format!("/api/v1/servers/{}", fx.server), &c.target.token)
                    .await;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix failures:\n{}",
        failures.join("\n")
    );

    // Ids that name nothing are 404 for everyone, including the owner.
    for path in [
        "/api/v1/servers/123456789",
        "/api/v1/channels/123456789",
        "/api/v1/servers/abc/members",
        "/api/v1/channels/0",
    ] {
        assert_eq!(
            ts.get(path, &c.owner.token).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Public invite preview: anyone with the code, no account needed; bad codes 404.
    let server = create_server(&ts, &c.owner, "preview").await;
    let code = invite(&ts, &c.owner, &server, json!({})).await;
    let (s, v) = send(
        &ts,
        Method::GET,
        &format!("/api/v1/invites/{code}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["server_name"], "preview");
    for bad in [
        "nope",
        "AAAAAAAAAAAA",
        "%00%00%00%00%00%00",
        &"x".repeat(100),
    ] {
        let (s, _) = send(
            &ts,
            Method::GET,
            &format!("/api/v1/invites/{bad}"),
            None,
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn communities_private_channels_are_invisible_and_overwrites_resolve_in_order() {
    let ts = TestServer::start().await;
    let owner = ts.register("powner").await;
    let alice = ts.register("palice").await;
    let bob = ts.register("pbob").await;
    let server = create_server(&ts, &owner, "private").await;
    let code = invite(&ts, &owner, &server, json!({})).await;
    join(&ts, &alice, &code).await;
    join(&ts, &bob, &code).await;
    // A private room: hidden from @everyone, opened to Alice.
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "secret", "kind": "text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = id_of(&v);
    let put = |target: String, body: Value| {
        let ts = &ts;
        let owner = &owner;
        let secret = secret.clone();
        async move {
            ts.put(
                &format!("/api/v1/channels/{secret}/overwrites/{target}"),
                &owner.token,
                Some(body),
            )
            .await
        }
    };
    assert_eq!(
        put(
            server.clone(),
            json!({"kind": "role", "allow": 0, "deny": P::VIEW_CHANNEL.0})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        put(
            alice.id.clone(),
            json!({"kind": "member", "allow": P::VIEW_CHANNEL.0, "deny": 0})
        )
        .await
        .0,
        StatusCode::OK
    );

    // Bob cannot see it: 404 on the channel, absent from the list; Alice sees both.
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{secret}"), &bob.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.patch(
            &format!("/api/v1/channels/{secret}"),
            &bob.token,
            json!({"name": "x"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = ts
        .get(&format!("/api/v1/servers/{server}/channels"), &bob.token)
        .await;
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == secret.as_str())
    );
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{secret}"), &alice.token)
            .await
            .0,
        StatusCode::OK
    );
    let (_, list) = ts
        .get(&format!("/api/v1/servers/{server}/channels"), &alice.token)
        .await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == secret.as_str())
    );
    assert!(
        permissions::channel_permissions(&ts.state.db, id(&bob.id), id(&secret))
            .await
            .unwrap()
            .is_none()
    );
    let (sid, p) = permissions::channel_permissions(&ts.state.db, id(&alice.id), id(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sid, id(&server));
    assert!(p.contains(P::SEND_MESSAGES));

    // Role allow beats @everyone deny; member deny beats role allow.
    let talker = create_role(&ts, &owner, &server, "talker", P::NONE).await;
    set_roles(&ts, &owner, &server, &bob, &[&talker]).await;
    assert_eq!(
        put(
            talker.clone(),
            json!({"kind": "role", "allow": P::VIEW_CHANNEL.0 | P::SEND_MESSAGES.0, "deny": 0})
        )
        .await
        .0,
        StatusCode::OK
    );
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&bob.id), id(&secret))
        .await
        .unwrap()
        .unwrap();
    assert!(p.contains(P::SEND_MESSAGES));
    assert_eq!(
        put(
            bob.id.clone(),
            json!({"kind": "member", "allow": 0, "deny": P::SEND_MESSAGES.0})
        )
        .await
        .0,
        StatusCode::OK
    );
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&bob.id), id(&secret))
        .await
        .unwrap()
        .unwrap();
    assert!(p.contains(P::VIEW_CHANNEL) && !p.contains(P::SEND_MESSAGES));

    // ADMINISTRATOR ignores overwrites: the member deny no longer bites.
    let admin = create_role(&ts, &owner, &server, "admin", P::ADMINISTRATOR).await;
    set_roles(&ts, &owner, &server, &bob, &[&talker, &admin]).await;
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&bob.id), id(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p, P::ALL);

    // Overwrites refuse server-wide bits and unknown bits; targets must exist in the server.
    assert_eq!(
        put(
            alice.id.clone(),
            json!({"kind": "member", "allow": P::BAN_MEMBERS.0, "deny": 0})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        put(
            alice.id.clone(),
            json!({"kind": "member", "allow": 1u64 << 40, "deny": 0})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        put(
            alice.id.clone(),
            json!({"kind": "member", "allow": -1, "deny": 0})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        put(
            "987654321".into(),
            json!({"kind": "role", "allow": 0, "deny": 0})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // A channel created in a category starts with the category's overwrites.
    let (_, cat) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "staff", "kind": "category"}),
        )
        .await;
    let cat = id_of(&cat);
    ts.put(
        &format!("/api/v1/channels/{cat}/overwrites/{server}"),
        &owner.token,
        Some(json!({"kind": "role", "allow": 0, "deny": P::VIEW_CHANNEL.0})),
    )
    .await;
    let (s, child) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "inner", "kind": "voice", "parent_id": cat}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{child}");
    assert_eq!(child["overwrites"].as_array().unwrap().len(), 1);
    assert_eq!(
        ts.get(&format!("/api/v1/channels/{}", id_of(&child)), &alice.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Bulk move: the child leaves its category and goes first; bad moves are refused.
    let (s, list) = ts
        .patch(
            &format!("/api/v1/servers/{server}/channels"),
            &owner.token,
            json!([{"id": id_of(&child), "position": 0, "parent_id": null}, {"id": secret, "position": 7}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let moved = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id_of(&child).as_str())
        .unwrap();
    assert_eq!(moved["position"], 0);
    assert!(moved["parent_id"].is_null());
    let last = list.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["id"].as_str(), last["position"].as_i64()),
        (Some(secret.as_str()), Some(7))
    );
    for bad in [
        json!([{"id": cat, "position": 1, "parent_id": cat}]),
        json!([{"id": secret, "position": 1, "parent_id": secret}]),
        json!([{"id": "42", "position": 1}]),
        json!([{"id": secret, "position": 10001}]),
        json!([{"id": secret, "position": 1}, {"id": secret, "position": 2}]),
        json!([]),
    ] {
        let (s, v) = ts
            .patch(
                &format!("/api/v1/servers/{server}/channels"),
                &owner.token,
                bad.clone(),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    // A category cannot be nested; a text channel is not a parent.
    let (s, _) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "x", "kind": "text", "parent_id": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn communities_hierarchy_and_no_granting_what_you_lack() {
    let ts = TestServer::start().await;
    let owner = ts.register("howner").await;
    let moder = ts.register("hmod").await;
    let peer = ts.register("hpeer").await;
    let user = ts.register("huser").await;
    let server = create_server(&ts, &owner, "hier").await;
    let code = invite(&ts, &owner, &server, json!({})).await;
    for u in [&moder, &peer, &user] {
        join(&ts, u, &code).await;
    }
    let top = create_role(&ts, &owner, &server, "top", P::NONE).await;
    let modr = create_role(
        &ts,
        &owner,
        &server,
        "mod",
        P::MANAGE_ROLES
            .union(P::KICK_MEMBERS)
            .union(P::MANAGE_NICKNAMES),
    )
    .await;
    let low = create_role(&ts, &owner, &server, "low", P::NONE).await;
    // Positions now: low 1, mod 2, top 3.
    let (_, roles) = ts
        .get(&format!("/api/v1/servers/{server}/roles"), &user.token)
        .await;
    let pos = |id: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["position"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        (pos(&low), pos(&modr), pos(&top), pos(&server)),
        (1, 2, 3, 0)
    );
    set_roles(&ts, &owner, &server, &moder, &[&modr]).await;
    set_roles(&ts, &owner, &server, &peer, &[&modr]).await;

    let m = &moder.token;
    // Roles at or above one's highest are off limits; below is fine.
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{modr}"),
            m,
            json!({"name": "x"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{top}"),
            m,
            json!({"name": "x"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.delete(&format!("/api/v1/servers/{server}/roles/{top}"), m)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{low}"),
            m,
            json!({"name": "lower"})
        )
        .await
        .0,
        StatusCode::OK
    );
    // Cannot grant permissions one lacks, in a new role or an edit; can grant held ones.
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/roles"),
            Some(m),
            json!({"name": "x", "permissions": P::ADMINISTRATOR.0}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission"))
    );
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{low}"),
            m,
            json!({"permissions": P::BAN_MEMBERS.0})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{low}"),
            m,
            json!({"permissions": P::KICK_MEMBERS.0})
        )
        .await
        .0,
        StatusCode::OK
    );
    // Cannot hand out one's own role or a higher one; can hand out a lower one.
    let roles_of = |u: &TestUser| format!("/api/v1/servers/{server}/members/{}", u.id);
    assert_eq!(
        ts.patch(&roles_of(&user), m, json!({"roles": [modr]}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(&roles_of(&user), m, json!({"roles": [top]}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(&roles_of(&user), m, json!({"roles": [low]}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        ts.patch(&roles_of(&user), m, json!({"roles": [server]}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.patch(&roles_of(&user), m, json!({"roles": ["123"]}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Members of equal rank and the owner are off limits; lower members are not.
    assert_eq!(
        ts.delete(&roles_of(&peer), m).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(&roles_of(&peer), m, json!({"nickname": "x"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.delete(&roles_of(&owner), m).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(&roles_of(&user), m, json!({"nickname": "lowly"}))
            .await
            .0,
        StatusCode::OK
    );
    // Reordering cannot lift a role to or above one's own.
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles"),
            m,
            json!([{"id": low, "position": 2}])
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // The owner bypasses everything: reorder top to the bottom, edit anything, kick anyone.
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}/roles"),
            &owner.token,
            json!([{"id": top, "position": 1}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, roles) = ts
        .get(&format!("/api/v1/servers/{server}/roles"), &user.token)
        .await;
    let pos = |id: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["position"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((pos(&top), pos(&low), pos(&modr)), (1, 2, 3));
    assert_eq!(
        ts.delete(&roles_of(&peer), &owner.token).await.0,
        StatusCode::NO_CONTENT
    );
    // Now top (1) is below mod (3): the moderator may manage it.
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{top}"),
            m,
            json!({"name": "bottom"})
        )
        .await
        .0,
        StatusCode::OK
    );
    // @everyone cannot be deleted or renamed.
    assert_eq!(
        ts.delete(
            &format!("/api/v1/servers/{server}/roles/{server}"),
            &owner.token
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}/roles/{server}"),
            &owner.token,
            json!({"name": "all"})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn communities_timeout_strips_send_react_speak_connect() {
    let ts = TestServer::start().await;
    let owner = ts.register("towner").await;
    let moder = ts.register("tmod").await;
    let user = ts.register("tuser").await;
    let server = create_server(&ts, &owner, "timeouts").await;
    let code = invite(&ts, &owner, &server, json!({})).await;
    join(&ts, &moder, &code).await;
    join(&ts, &user, &code).await;
    let modr = create_role(
        &ts,
        &owner,
        &server,
        "mod",
        P::MODERATE_MEMBERS.union(P::KICK_MEMBERS),
    )
    .await;
    set_roles(&ts, &owner, &server, &moder, &[&modr]).await;
    let (_, chans) = ts
        .get(&format!("/api/v1/servers/{server}/channels"), &user.token)
        .await;
    let general = chans[0]["id"].as_str().unwrap().to_owned();
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&user.id), id(&general))
        .await
        .unwrap()
        .unwrap();
    assert!(
        p.contains(
            P::SEND_MESSAGES
                .union(P::ADD_REACTIONS)
                .union(P::SPEAK)
                .union(P::CONNECT)
        )
    );

    let member = format!("/api/v1/servers/{server}/members/{}", user.id);
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    // Bounds: not past, not beyond 28 days; nobody times out the owner or themselves.
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let far = chrono::Utc::now() + chrono::Duration::days(29);
    assert_eq!(
        ts.patch(&member, &moder.token, json!({"timeout_until": past}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.patch(&member, &moder.token, json!({"timeout_until": far}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.patch(
            &member,
            &moder.token,
            json!({"timeout_until": "not a date"})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let owner_m = format!("/api/v1/servers/{server}/members/{}", owner.id);
    assert_eq!(
        ts.patch(&owner_m, &moder.token, json!({"timeout_until": until}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ts.patch(&member, &user.token, json!({"timeout_until": until}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    let (s, v) = send(
        &ts,
        Method::PATCH,
        &member,
        Some(&moder.token),
        Some(json!({"timeout_until": until})),
        Some("cool down"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["timeout_until"].is_string());
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&user.id), id(&general))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p,
        P::VIEW_CHANNEL.union(P::READ_HISTORY),
        "timed out: view and read only"
    );
    for forbidden in [
        P::SEND_MESSAGES,
        P::ADD_REACTIONS,
        P::SPEAK,
        P::CONNECT,
        P::VIDEO,
    ] {
        assert!(!p.contains(forbidden));
    }
    // A timed-out member cannot create invites (CREATE_INVITE is stripped too).
    let (s, _) = ts
        .post(
            &format!("/api/v1/servers/{server}/invites"),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A timed-out moderator loses moderation too.
    let owner_sets = |who: &TestUser, body: Value| {
        let path = format!("/api/v1/servers/{server}/members/{}", who.id);
        let ts = &ts;
        let token = owner.token.clone();
        async move { ts.patch(&path, &token, body).await }
    };
    assert_eq!(
        owner_sets(&moder, json!({"timeout_until": until})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        ts.delete(&member, &moder.token).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        owner_sets(&moder, json!({"timeout_until": null})).await.0,
        StatusCode::OK
    );
    // And the messages route (messaging uses the same resolution) refuses the send.
    let send_path = format!("/api/v1/channels/{general}/messages");
    let (s, v) = ts
        .post(
            &send_path,
            Some(&user.token),
            json!({"content": "let me talk"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a timed-out member cannot send: {v}"
    );
    // Ending the timeout restores everything.
    assert_eq!(
        ts.patch(&member, &moder.token, json!({"timeout_until": null}))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = ts
        .post(&send_path, Some(&user.token), json!({"content": "thanks"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&user.id), id(&general))
        .await
        .unwrap()
        .unwrap();
    assert!(p.contains(P::SEND_MESSAGES.union(P::SPEAK)));
    // An expired timeout no longer applies.
    sqlx::query(
        "UPDATE members SET timeout_until = now() - interval '1 second' WHERE user_id = $1",
    )
    .bind(id(&user.id).0)
    .execute(&ts.state.db)
    .await
    .unwrap();
    let (_, p) = permissions::channel_permissions(&ts.state.db, id(&user.id), id(&general))
        .await
        .unwrap()
        .unwrap();
    assert!(p.contains(P::SEND_MESSAGES));
    let (_, audit) = ts
        .get(
            &format!("/api/v1/servers/{server}/audit-log?action=member_update"),
            &owner.token,
        )
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "cool down" && e["changes"]["timeout_until"].is_string())
    );
}

#[tokio::test]
async fn communities_ban_blocks_every_invite_and_kicked_members_can_rejoin() {
    let ts = TestServer::start().await;
    let owner = ts.register("bowner").await;
    let user = ts.register("buser").await;
    let other = ts.register("bother").await;
    let server = create_server(&ts, &owner, "bans").await;
    let first = invite(&ts, &owner, &server, json!({})).await;
    assert_eq!(join(&ts, &user, &first).await, StatusCode::CREATED);
    assert_eq!(
        join(&ts, &user, &first).await,
        StatusCode::OK,
        "joining twice is a no-op"
    );

    // Kick: gone, and back through the same invite.
    let member = format!("/api/v1/servers/{server}/members/{}", user.id);
    assert_eq!(
        send(
            &ts,
            Method::DELETE,
            &member,
            Some(&owner.token),
            None,
            Some("spam")
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ts.get(&format!("/api/v1/servers/{server}"), &user.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ts.get(&member, &owner.token).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        join(&ts, &user, &first).await,
        StatusCode::CREATED,
        "kicked members can rejoin"
    );

    // Two of their messages: one recent, one from two hours ago.
    ts.seed_aged_messages(
        &server,
        &user.id,
        &[(1_000_001i64, "1 minute"), (1_000_002, "2 hours")],
    )
    .await;

    // Ban: gone, and no invite — old or new, limited or not — lets them back.
    ts.state
        .bus
        .subscribe(&[Topic::Server(id(&server))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();
    let ban = format!("/api/v1/servers/{server}/bans/{}", user.id);
    let (s, v) = send(
        &ts,
        Method::PUT,
        &ban,
        Some(&owner.token),
        Some(json!({"delete_message_secs": 3600})),
        Some("raiding"),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(
        ts.get(&format!("/api/v1/servers/{server}"), &user.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Only the message inside the one-hour window went with the ban.
    let left: Vec<(i64,)> = sqlx::query_as("SELECT id FROM messages WHERE author_id = $1")
        .bind(id(&user.id).0)
        .fetch_all(&ts.state.db)
        .await
        .unwrap();
    assert_eq!(left, vec![(1_000_002,)]);
    let (mut removed, mut message_deleted) = (false, false);
    while let Ok(ev) = rx.try_recv() {
        match &ev.event {
            Event::MemberRemove { user_id, .. } if *user_id == id(&user.id) => removed = true,
            Event::MessageDelete { message_id, .. } if *message_id == Id(1_000_001) => {
                message_deleted = true
            }
            _ => {}
        }
    }
    assert!(
        removed && message_deleted,
        "member_remove and message_delete published"
    );
    let second = invite(
        &ts,
        &owner,
        &server,
        json!({"max_uses": 1, "max_age_secs": 600}),
    )
    .await;
    for code in [&first, &second] {
        let (s, v) = ts
            .post(
                &format!("/api/v1/invites/{code}"),
                Some(&user.token),
                json!({}),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("banned"))
        );
    }
    // The refused join did not consume the single use.
    assert_eq!(join(&ts, &other, &second).await, StatusCode::CREATED);
    let (_, bans) = ts
        .get(&format!("/api/v1/servers/{server}/bans"), &owner.token)
        .await;
    assert_eq!(bans.as_array().unwrap().len(), 1);
    assert_eq!(bans[0]["user"]["id"], user.id.as_str());
    assert_eq!(bans[0]["reason"], "raiding");
    assert_eq!(bans[0]["delete_message_secs"], 3600);
    // Bad ban input: window out of range, unknown user, self.
    assert_eq!(
        ts.put(
            &ban,
            &owner.token,
            Some(json!({"delete_message_secs": 999999}))
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.put(
            &format!("/api/v1/servers/{server}/bans/12345"),
            &owner.token,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.put(
            &format!("/api/v1/servers/{server}/bans/{}", owner.id),
            &owner.token,
            None
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Unban: back in through any invite.
    assert_eq!(
        send(
            &ts,
            Method::DELETE,
            &ban,
            Some(&owner.token),
            None,
            Some("appeal")
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(ts.delete(&ban, &owner.token).await.0, StatusCode::NOT_FOUND);
    assert_eq!(join(&ts, &user, &first).await, StatusCode::CREATED);

    // A ban of a non-member is pre-emptive.
    let outsider = ts.register("boutsider").await;
    assert_eq!(
        ts.put(
            &format!("/api/v1/servers/{server}/bans/{}", outsider.id),
            &owner.token,
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(join(&ts, &outsider, &first).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn communities_audit_log_records_each_action_with_its_reason() {
    let ts = TestServer::start().await;
    let owner = ts.register("aowner").await;
    let user = ts.register("auser").await;
    let reader = ts.register("areader").await;
    let server = create_server(&ts, &owner, "audit").await;
    let code = invite(&ts, &owner, &server, json!({})).await;
    join(&ts, &user, &code).await;
    join(&ts, &reader, &code).await;
    let o = Some(owner.token.as_str());
    let s = &server;
    let u = &user.id;

    let (_, ch) = send(
        &ts,
        Method::POST,
        &format!("/api/v1/servers/{s}/channels"),
        o,
        Some(json!({"name": "c", "kind": "text"})),
        Some("r-channel-create"),
    )
    .await;
    let ch = id_of(&ch);
    let (_, role) = send(
        &ts,
        Method::POST,
        &format!("/api/v1/servers/{s}/roles"),
        o,
        Some(json!({"name": "r"})),
        Some("r-role-create"),
    )
    .await;
    let role = id_of(&role);
    let steps: Vec<(Method, String, Option<Value>, &str, &str)> = vec![
        (
            Method::PATCH,
            format!("/api/v1/servers/{s}"),
            Some(json!({"description": "d"})),
            "server_update",
            "r-server",
        ),
        (
            Method::PATCH,
            format!("/api/v1/channels/{ch}"),
            Some(json!({"topic": "t"})),
            "channel_update",
            "r-channel-update",
        ),
        (
            Method::PUT,
            format!("/api/v1/channels/{ch}/overwrites/{u}"),
            Some(json!({"kind": "member", "allow": 0, "deny": 2})),
            "overwrite_update",
            "r-ow",
        ),
        (
            Method::DELETE,
            format!("/api/v1/channels/{ch}/overwrites/{u}"),
            None,
            "overwrite_delete",
            "r-ow-del",
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{s}/roles/{role}"),
            Some(json!({"color": 1})),
            "role_update",
            "r-role-update",
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{s}/roles"),
            Some(json!([{"id": role, "position": 1}])),
            "role_reorder",
            "r-reorder",
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{s}/members/{u}"),
            Some(json!({"roles": [role]})),
            "member_update",
            "r-member",
        ),
        (
            Method::DELETE,
            format!("/api/v1/servers/{s}/roles/{role}"),
            None,
            "role_delete",
            "r-role-delete",
        ),
        (
            Method::DELETE,
            format!("/api/v1/servers/{s}/members/{u}"),
            None,
            "member_kick",
            "r-kick",
        ),
        (
            Method::PUT,
            format!("/api/v1/servers/{s}/bans/{u}"),
            None,
            "member_ban",
            "r-ban",
        ),
        (
            Method::DELETE,
            format!("/api/v1/servers/{s}/bans/{u}"),
            None,
            "member_unban",
            "r-unban",
        ),
        (
            Method::POST,
            format!("/api/v1/servers/{s}/invites"),
            Some(json!({})),
            "invite_create",
            "r-invite",
        ),
        (
            Method::DELETE,
            format!("/api/v1/invites/{code}"),
            None,
            "invite_delete",
            "r-invite-del",
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{s}/channels"),
            Some(json!([{"id": ch, "position": 3}])),
            "channel_reorder",
            "r-channel-reorder",
        ),
        (
            Method::DELETE,
            format!("/api/v1/channels/{ch}"),
            None,
            "channel_delete",
            "r-channel-delete",
        ),
    ];
    for (m, path, body, _, reason) in &steps {
        let (st, v) = send(&ts, m.clone(), path, o, body.clone(), Some(reason)).await;
        assert!(st.is_success(), "{m} {path}: {st} {v}");
    }
    let (st, log) = ts
        .get(
            &format!("/api/v1/servers/{s}/audit-log?limit=100"),
            &owner.token,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let log = log.as_array().unwrap().clone();
    let mut expected: Vec<(&str, &str)> = vec![
        ("channel_create", "r-channel-create"),
        ("role_create", "r-role-create"),
    ];
    expected.extend(steps.iter().map(|(_, _, _, a, r)| (*a, *r)));
    for (action, reason) in &expected {
        let e = log
            .iter()
            .find(|e| e["action"] == *action && e["reason"] == *reason);
        let e = e.unwrap_or_else(|| panic!("no {action} entry with reason {reason}: {log:#?}"));
        assert_eq!(e["actor_id"], owner.id.as_str());
    }
    let kick = log.iter().find(|e| e["action"] == "member_kick").unwrap();
    assert_eq!(kick["target_id"], user.id.as_str());
    // Newest first, and paginated with before/limit without overlap.
    let ids: Vec<u64> = log
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    let (_, page1) = ts
        .get(
            &format!("/api/v1/servers/{s}/audit-log?limit=5"),
            &owner.token,
        )
        .await;
    let last = page1[4]["id"].as_str().unwrap().to_owned();
    let (_, page2) = ts
        .get(
            &format!("/api/v1/servers/{s}/audit-log?limit=5&before={last}"),
            &owner.token,
        )
        .await;
    let p1: HashSet<String> = page1
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].to_string())
        .collect();
    assert_eq!(page2.as_array().unwrap().len(), 5);
    assert!(
        page2
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !p1.contains(&e["id"].to_string()))
    );
    assert_eq!(
        page2[0]["id"].as_str().unwrap(),
        log[5]["id"].as_str().unwrap()
    );
    for bad in ["limit=0", "limit=101", "before=abc", "limit=-1"] {
        let (st, _) = ts
            .get(
                &format!("/api/v1/servers/{s}/audit-log?{bad}"),
                &owner.token,
            )
            .await;
        assert!(
            st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {st}"
        );
    }
    // Reasons are capped at 512 characters.
    let long = "é".repeat(600);
    let encoded: String = long.clone();
    let rb = ts
        .http
        .patch(ts.url(&format!("/api/v1/servers/{s}")))
        .bearer_auth(&owner.token)
        .header(
            "X-Audit-Log-Reason",
            reqwest::header::HeaderValue::from_bytes(encoded.as_bytes()).unwrap(),
        )
        .json(&json!({"name": "audit2"}));
    assert_eq!(rb.send().await.unwrap().status(), StatusCode::OK);
    let (_, log) = ts
        .get(
            &format!("/api/v1/servers/{s}/audit-log?limit=1"),
            &owner.token,
        )
        .await;
    assert_eq!(log[0]["reason"].as_str().unwrap().chars().count(), 512);
    // Readable with VIEW_AUDIT_LOG only.
    assert_eq!(
        ts.get(&format!("/api/v1/servers/{s}/audit-log"), &reader.token)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let auditors = create_role(&ts, &owner, s, "auditors", P::VIEW_AUDIT_LOG).await;
    set_roles(&ts, &owner, s, &reader, &[&auditors]).await;
    assert_eq!(
        ts.get(&format!("/api/v1/servers/{s}/audit-log"), &reader.token)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn communities_invite_max_uses_and_expiry_hold_under_concurrent_joins() {
    let ts = std::sync::Arc::new(TestServer::start().await);
    let owner = ts.register("iowner").await;
    let server = create_server(&ts, &owner, "race").await;
    let mut users = Vec::new();
    for i in 0..16 {
        users.push(ts.register(&format!("racer{i}")).await);
    }
    let code = invite(&ts, &owner, &server, json!({"max_uses": 5})).await;
    let mut tasks = Vec::new();
    for u in users.iter().cloned() {
        let ts = ts.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move { (join(&ts, &u, &code).await, u) }));
    }
    let mut ok = 0;
    let mut outside = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (StatusCode::CREATED, _) => ok += 1,
            (StatusCode::NOT_FOUND, u) => outside.push(u),
            (other, _) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 5, "exactly max_uses joins succeed");
    let (_, invites) = ts
        .get(&format!("/api/v1/servers/{server}/invites"), &owner.token)
        .await;
    assert_eq!(invites[0]["uses"], 5);
    let (_, s) = ts
        .get(&format!("/api/v1/servers/{server}"), &owner.token)
        .await;
    assert_eq!(s["member_count"], 6);
    // Used up: the preview is gone too.
    assert_eq!(
        send(
            &ts,
            Method::GET,
            &format!("/api/v1/invites/{code}"),
            None,
            None,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // The last use, raced by two: exactly one wins.
    let last = invite(&ts, &owner, &server, json!({"max_uses": 1})).await;
    let losers: Vec<TestUser> = outside.iter().take(2).cloned().collect();
    let (a, b) = tokio::join!(join(&ts, &losers[0], &last), join(&ts, &losers[1], &last));
    let mut got = [a, b];
    got.sort();
    assert_eq!(got, [StatusCode::CREATED, StatusCode::NOT_FOUND]);

    // Expiry: valid now, refused (even under concurrency) once expired.
    let short = invite(&ts, &owner, &server, json!({"max_age_secs": 1})).await;
    assert_eq!(
        send(
            &ts,
            Method::GET,
            &format!("/api/v1/invites/{short}"),
            None,
            None,
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut tasks = Vec::new();
    for u in outside.into_iter().skip(2) {
        let ts = ts.clone();
        let short = short.clone();
        tasks.push(tokio::spawn(async move { join(&ts, &u, &short).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::NOT_FOUND);
    }
    // Bad invite bodies.
    for body in [
        json!({"max_uses": 0}),
        json!({"max_uses": 100001}),
        json!({"max_age_secs": 0}),
        json!({"max_age_secs": 9007199254740993u64}),
        json!({"max_uses": "x"}),
    ] {
        let (st, _) = ts
            .post(
                &format!("/api/v1/servers/{server}/invites"),
                Some(&owner.token),
                body.clone(),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

#[tokio::test]
async fn communities_friends_requests_and_blocks() {
    let ts = TestServer::start().await;
    let a = ts.register("fa").await;
    let b = ts.register("fb").await;
    let c = ts.register("fc").await;
    let rel = "/api/v1/users/@me/relationships";
    // Request by username; the recipient sees it incoming; accept.
    let (s, v) = ts
        .post(rel, Some(&a.token), json!({"username": "FB"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "outgoing");
    assert_eq!(
        ts.post(rel, Some(&a.token), json!({"username": "fb"}))
            .await
            .0,
        StatusCode::OK,
        "idempotent"
    );
    let (_, list) = ts.get(rel, &b.token).await;
    assert_eq!(list[0]["kind"], "incoming");
    assert_eq!(list[0]["user"]["id"], a.id.as_str());
    let (s, v) = ts
        .post(&format!("{rel}/{}/accept", a.id), Some(&b.token), json!({}))
        .await;
    assert_eq!((s, v["kind"].as_str()), (StatusCode::OK, Some("friend")));
    let (_, list) = ts.get(rel, &a.token).await;
    assert_eq!(list[0]["kind"], "friend");
    assert_eq!(
        ts.post(rel, Some(&a.token), json!({"user_id": b.id}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    // Remove: gone for both.
    assert_eq!(
        ts.delete(&format!("{rel}/{}", b.id), &a.token).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(ts.get(rel, &b.token).await.1.as_array().unwrap().is_empty());
    assert_eq!(
        ts.delete(&format!("{rel}/{}", b.id), &a.token).await.0,
        StatusCode::NOT_FOUND
    );
    // Request by id, declined.
    assert_eq!(
        ts.post(rel, Some(&c.token), json!({"user_id": a.id}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        ts.post(&format!("{rel}/{}/accept", a.id), Some(&c.token), json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "cannot accept my own request"
    );
    assert_eq!(
        ts.post(
            &format!("{rel}/{}/decline", c.id),
            Some(&a.token),
            json!({})
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert!(ts.get(rel, &c.token).await.1.as_array().unwrap().is_empty());
    // Crossing requests become a friendship.
    ts.post(rel, Some(&a.token), json!({"user_id": c.id})).await;
    let (s, v) = ts.post(rel, Some(&c.token), json!({"user_id": a.id})).await;
    assert_eq!((s, v["kind"].as_str()), (StatusCode::OK, Some("friend")));

    // Block: the friendship ends, the blocked user cannot send a request, is_blocked says so.
    ts.state
        .bus
        .subscribe(&[Topic::User(id(&a.id)), Topic::User(id(&c.id))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();
    assert_eq!(
        ts.put(
            &format!("/api/v1/users/@me/blocks/{}", c.id),
            &a.token,
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = ts.get(rel, &a.token).await;
    assert_eq!(list[0]["kind"], "blocked");
    assert!(
        ts.get(rel, &c.token).await.1.as_array().unwrap().is_empty(),
        "the blocked side sees nothing"
    );
    let (s, v) = ts.post(rel, Some(&c.token), json!({"user_id": a.id})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("friend_request_refused"))
    );
    let (s, _) = ts.post(rel, Some(&a.token), json!({"user_id": c.id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "unblock first");
    assert!(
        friends::is_blocked(&ts.state.db, id(&a.id), id(&c.id))
            .await
            .unwrap()
    );
    assert!(
        friends::is_blocked(&ts.state.db, id(&c.id), id(&a.id))
            .await
            .unwrap()
    );
    assert!(
        !friends::is_blocked(&ts.state.db, id(&a.id), id(&b.id))
            .await
            .unwrap()
    );
    // Both sides were told (relationship_update events on the bus).
    let mut told = HashSet::new();
    while let Ok(ev) = rx.try_recv() {
        if let Event::RelationshipUpdate { relationship } = &ev.event
            && let copains_wire::events::Audience::User(u) = ev.audience[0]
            && (u == id(&a.id) || u == id(&c.id))
        {
            told.insert((u, relationship["kind"].as_str().unwrap_or("").to_owned()));
        }
    }
    assert!(told.contains(&(id(&a.id), "blocked".into())), "{told:?}");
    assert!(told.contains(&(id(&c.id), "none".into())), "{told:?}");
    // Unblock: requests work again.
    assert_eq!(
        ts.delete(&format!("/api/v1/users/@me/blocks/{}", c.id), &a.token)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ts.delete(&format!("/api/v1/users/@me/blocks/{}", c.id), &a.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(
        !friends::is_blocked(&ts.state.db, id(&a.id), id(&c.id))
            .await
            .unwrap()
    );
    assert_eq!(
        ts.post(rel, Some(&c.token), json!({"user_id": a.id}))
            .await
            .0,
        StatusCode::CREATED
    );
    // Bad input.
    assert_eq!(
        ts.post(rel, Some(&a.token), json!({"user_id": a.id}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.post(rel, Some(&a.token), json!({})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        ts.post(rel, Some(&a.token), json!({"username": "nobody-here"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.post(rel, Some(&a.token), json!({"user_id": "999999"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.put("/api/v1/users/@me/blocks/999999", &a.token, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ts.put(
            &format!("/api/v1/users/@me/blocks/{}", a.id),
            &a.token,
            None
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn communities_servers_lifecycle_limits_and_events() {
    let ts = TestServer::start().await;
    let owner = ts.register("sowner").await;
    let heir = ts.register("sheir").await;
    ts.state
        .bus
        .subscribe(&[Topic::User(id(&owner.id))])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();
    let server = create_server(&ts, &owner, "  Les Copains  ").await;
    let (_, mine) = ts.get("/api/v1/users/@me/servers", &owner.token).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["name"], "Les Copains");
    assert_eq!(mine[0]["owner_id"], owner.id.as_str());
    let (_, chans) = ts
        .get(&format!("/api/v1/servers/{server}/channels"), &owner.token)
        .await;
    assert_eq!(chans[0]["name"], "general");
    let (_, roles) = ts
        .get(&format!("/api/v1/servers/{server}/roles"), &owner.token)
        .await;
    assert_eq!(roles[0]["id"], server.as_str());
    assert_eq!(roles[0]["name"], "@everyone");
    // The creation was published to the owner.
    let mut seen = false;
    while let Ok(ev) = rx.try_recv() {
        if let Event::ServerCreate { server: s } = &ev.event
            && s["id"] == server.as_str()
        {
            seen = true;
        }
    }
    assert!(seen, "server_create published");

    // Validation.
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "a\u{0}b"}),
        json!({"name": 5}),
        json!({}),
    ] {
        let (s, v) = ts
            .post("/api/v1/servers", Some(&owner.token), body.clone())
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}"),
            &owner.token,
            json!({"description": "about", "icon": "https://x/y.png"}),
        )
        .await;
    assert_eq!(
        (s, v["description"].as_str()),
        (StatusCode::OK, Some("about"))
    );
    let (_, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}"),
            &owner.token,
            json!({"description": ""}),
        )
        .await;
    assert!(v["description"].is_null());
    assert_eq!(v["icon"], "https://x/y.png");
    assert_eq!(
        ts.patch(
            &format!("/api/v1/servers/{server}"),
            &owner.token,
            json!({"description": "d".repeat(1025)})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Encrypted is final: the API refuses and so does the database.
    let (s, ch) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "e2e", "kind": "text", "encrypted": true}),
        )
        .await;
    assert_eq!(
        (s, ch["encrypted"].as_bool()),
        (StatusCode::CREATED, Some(true))
    );
    let ch = id_of(&ch);
    assert_eq!(
        ts.patch(
            &format!("/api/v1/channels/{ch}"),
            &owner.token,
            json!({"encrypted": false})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = sqlx::query("UPDATE channels SET encrypted = FALSE WHERE id = $1")
        .bind(id(&ch).0)
        .execute(&ts.state.db)
        .await;
    assert!(r.is_err(), "the trigger refuses turning encryption off");
    let (_, v) = ts
        .get(&format!("/api/v1/channels/{ch}"), &owner.token)
        .await;
    assert_eq!(v["encrypted"], true);
    for body in [
        json!({"slowmode_secs": 21601}),
        json!({"slowmode_secs": -1}),
        json!({"position": 10001}),
        json!({"name": ""}),
        json!({"parent_id": ch}),
    ] {
        let (s, v) = ts
            .patch(
                &format!("/api/v1/channels/{ch}"),
                &owner.token,
                body.clone(),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    for body in [
        json!({"name": "x", "kind": "stage"}),
        json!({"name": "x"}),
        json!({"name": "x", "kind": "category", "encrypted": true}),
    ] {
        let (s, v) = ts
            .post(
                &format!("/api/v1/servers/{server}/channels"),
                Some(&owner.token),
                body.clone(),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }

    // Channel cap: 500 per server.
    sqlx::query(
        "INSERT INTO channels (id, server_id, kind, name) SELECT $1 + g, $2, 'text', 'bulk' FROM generate_series(1, 500 - (SELECT count(*) FROM channels WHERE server_id = $2)) g",
    )
    .bind(1_000_000_000_000i64)
    .bind(id(&server).0)
    .execute(&ts.state.db)
    .await
    .unwrap();
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "one-more", "kind": "text"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_channels"))
    );

    // Transfer, then the old owner may leave; the new owner may not.
    let code = invite(&ts, &owner, &server, json!({})).await;
    join(&ts, &heir, &code).await;
    let stranger = ts.register("sstranger").await;
    assert_eq!(
        ts.post(
            &format!("/api/v1/servers/{server}/transfer"),
            Some(&owner.token),
            json!({"user_id": stranger.id})
        )
        .await
        .0,
        StatusCode::NOT_FOUND,
        "only to a member"
    );
    let (s, v) = send(
        &ts,
        Method::POST,
        &format!("/api/v1/servers/{server}/transfer"),
        Some(&owner.token),
        Some(json!({"user_id": heir.id})),
        Some("retiring"),
    )
    .await;
    assert_eq!(
        (s, v["owner_id"].as_str()),
        (StatusCode::OK, Some(heir.id.as_str()))
    );
    assert_eq!(
        ts.delete(&format!("/api/v1/users/@me/servers/{server}"), &heir.token)
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        ts.delete(&format!("/api/v1/users/@me/servers/{server}"), &owner.token)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(
        ts.get("/api/v1/users/@me/servers", &owner.token)
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ts.delete(&format!("/api/v1/servers/{server}"), &heir.token)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ts.get(&format!("/api/v1/servers/{server}"), &heir.token)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Server cap: 100 per user.
    sqlx::query(
        "WITH s AS (INSERT INTO servers (id, owner_id, name) SELECT $1 + g, $2, 'bulk' FROM generate_series(1, 100) g RETURNING id)
         INSERT INTO members (server_id, user_id) SELECT id, $2 FROM s",
    )
    .bind(2_000_000_000_000i64)
    .bind(id(&owner.id).0)
    .execute(&ts.state.db)
    .await
    .unwrap();
    let (s, v) = ts
        .post(
            "/api/v1/servers",
            Some(&owner.token),
            json!({"name": "101st"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_servers"))
    );
}

#[tokio::test]
async fn communities_member_list_is_paginated_and_bad_input_is_4xx() {
    let ts = TestServer::start().await;
    let owner = ts.register("lowner").await;
    let server = create_server(&ts, &owner, "list").await;
    // 30 members straight in the database (registration is slow by design: argon2id).
    sqlx::query(
        "WITH u AS (INSERT INTO users (id, username, email, password_hash)
                    SELECT $1 + g, 'bulk' || g, 'bulk' || g || '@example.org', 'x' FROM generate_series(1, 30) g RETURNING id)
         INSERT INTO members (server_id, user_id) SELECT $2, id FROM u",
    )
    .bind(3_000_000_000_000i64)
    .bind(id(&server).0)
    .execute(&ts.state.db)
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("?limit=7&after={a}"),
            None => "?limit=7".into(),
        };
        let (s, page) = ts
            .get(
                &format!("/api/v1/servers/{server}/members{q}"),
                &owner.token,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        for m in &page {
            seen.push(m["user"]["id"].as_str().unwrap().parse::<u64>().unwrap());
        }
        after = Some(
            page.last().unwrap()["user"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 31);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    for bad in ["limit=0", "limit=1001", "after=x", "limit=1e3"] {
        let (s, _) = ts
            .get(
                &format!("/api/v1/servers/{server}/members?{bad}"),
                &owner.token,
            )
            .await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {s}"
        );
    }
    // Garbage bodies and types on community routes: 4xx JSON, never 5xx.
    let o = &owner.token;
    let garbage = [
        (
            Method::POST,
            format!("/api/v1/servers/{server}/roles"),
            json!({"name": "r", "permissions": -5}),
        ),
        (
            Method::POST,
            format!("/api/v1/servers/{server}/roles"),
            json!({"name": "r", "permissions": 9007199254740993u64}),
        ),
        (
            Method::POST,
            format!("/api/v1/servers/{server}/roles"),
            json!({"name": "r", "color": 16777216}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{server}/roles"),
            json!([]),
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{server}/roles"),
            json!([{"id": "1", "position": 1}]),
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{server}/roles"),
            json!({"id": 1}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{server}/members/{}", owner.id),
            json!({"nickname": "n".repeat(33)}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/servers/{server}/members/{}", owner.id),
            json!({"roles": "x"}),
        ),
        (
            Method::POST,
            format!("/api/v1/servers/{server}/transfer"),
            json!({"user_id": -1}),
        ),
        (
            Method::POST,
            "/api/v1/users/@me/relationships".to_owned(),
            json!({"user_id": 1.5}),
        ),
    ];
    for (m, path, body) in garbage {
        let (s, v) = send(&ts, m.clone(), &path, Some(o), Some(body.clone()), None).await;
        assert!(s.is_client_error(), "{m} {path} {body}: {s} {v}");
        assert!(v["code"].is_string(), "JSON error: {v}");
    }
    let (s, _) = send(
        &ts,
        Method::PUT,
        &format!("/api/v1/servers/{server}/bans/{}", owner.id),
        Some(o),
        None,
        None,
    )
    .await;
    assert!(s.is_client_error());
    let r = ts
        .http
        .put(ts.url(&format!("/api/v1/servers/{server}/bans/123")))
        .bearer_auth(o)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // No token: 401 on every community route.
    let (s, _) = send(
        &ts,
        Method::GET,
        &format!("/api/v1/servers/{server}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// The OpenAPI document lists the community routes (so the schemathesis run covers them).
#[tokio::test]
async fn communities_routes_are_in_the_openapi_document() {
    let ts = TestServer::start().await;
    let (s, doc) = send(&ts, Method::GET, "/api/v1/openapi.json", None, None, None).await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/api/v1/servers",
        "/api/v1/users/@me/servers",
        "/api/v1/servers/{server_id}/channels",
        "/api/v1/servers/{server_id}/invites",
        "/api/v1/invites/{code}",
        "/api/v1/servers/{server_id}/roles",
        "/api/v1/servers/{server_id}/members/{user_id}",
        "/api/v1/channels/{channel_id}/overwrites/{target_id}",
        "/api/v1/servers/{server_id}/bans/{user_id}",
        "/api/v1/servers/{server_id}/audit-log",
        "/api/v1/users/@me/relationships",
        "/api/v1/users/@me/blocks/{user_id}",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
}

/// The user ids of `GET /keys/places/{place}` as seen by `by` (asserting 200).
async fn readers(ts: &TestServer, by: &TestUser, place: &str) -> Vec<String> {
    let (s, v) = ts
        .get(&format!("/api/v1/keys/places/{place}"), &by.token)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["place_id"], place);
    let ids: Vec<String> = v["user_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        assert!(
            v["devices"][id].is_array(),
            "devices listed per reader: {v}"
        );
    }
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort_by_key(|i| i.parse::<i64>().unwrap());
    ids
}

#[tokio::test]
async fn communities_place_readers_follow_view_channel_threads_included() {
    let ts = TestServer::start().await;
    let owner = ts.register("rdowner").await;
    let alice = ts.register("rdalice").await;
    let bob = ts.register("rdbob").await;
    let carol = ts.register("rdcarol").await;
    let server = create_server(&ts, &owner, "readers").await;
    let code = invite(&ts, &owner, &server, json!({})).await;
    for u in [&alice, &bob, &carol] {
        assert!(join(&ts, u, &code).await.is_success());
    }
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/channels"),
            Some(&owner.token),
            json!({"name": "crew", "kind": "text", "encrypted": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = id_of(&v);
    // Hidden from @everyone; open to Alice herself and to the role Carol holds; Bob has neither.
    let crew = create_role(&ts, &owner, &server, "crew", P::NONE).await;
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}/members/{}", carol.id),
            &owner.token,
            json!({"roles": [crew]}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    for (target, body) in [
        (
            server.clone(),
            json!({"kind": "role", "allow": 0, "deny": P::VIEW_CHANNEL.0}),
        ),
        (
            alice.id.clone(),
            json!({"kind": "member", "allow": P::VIEW_CHANNEL.0, "deny": 0}),
        ),
        (
            crew.clone(),
            json!({"kind": "role", "allow": P::VIEW_CHANNEL.0, "deny": 0}),
        ),
    ] {
        let (s, v) = ts
            .put(
                &format!("/api/v1/channels/{secret}/overwrites/{target}"),
                &owner.token,
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let expected = sorted(vec![owner.id.clone(), alice.id.clone(), carol.id.clone()]);
    assert_eq!(readers(&ts, &alice, &secret).await, expected);

    // A thread of the channel has exactly its parent's readers.
    let (s, v) = ts
        .post(
            &format!("/api/v1/channels/{secret}/messages"),
            Some(&alice.token),
            json!({"encrypted": {"algorithm": "m.megolm.v1.aes-sha2", "sender_device_id": "A",
                   "session_id": "s", "ciphertext": "AAAA"}, "nonce": "rd1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let root = id_of(&v);
    let (s, v) = ts
        .post(
            &format!("/api/v1/channels/{secret}/messages/{root}/threads"),
            Some(&alice.token),
            json!({"name": "plans"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let thread = id_of(&v);
    assert_eq!(readers(&ts, &carol, &thread).await, expected);

    // Bob may not see either: 404, never the list.
    for place in [&secret, &thread] {
        let (s, _) = ts
            .get(&format!("/api/v1/keys/places/{place}"), &bob.token)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    // The general channel: everyone.
    let (_, chans) = ts
        .get(&format!("/api/v1/servers/{server}/channels"), &bob.token)
        .await;
    let general = chans
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "text" && c["id"] != secret.as_str())
        .map(id_of)
        .unwrap();
    assert_eq!(
        readers(&ts, &bob, &general).await,
        sorted(vec![
            owner.id.clone(),
            alice.id.clone(),
            bob.id.clone(),
            carol.id.clone()
        ])
    );

    // Losing the role removes Carol from the readers at once.
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}/members/{}", carol.id),
            &owner.token,
            json!({"roles": []}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(
        readers(&ts, &alice, &thread).await,
        sorted(vec![owner.id.clone(), alice.id.clone()])
    );

    // A group DM: its recipients, and only they may ask.
    let (s, v) = ts
        .post(
            "/api/v1/users/@me/channels",
            Some(&alice.token),
            json!({"recipients": [bob.id]}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let dm = id_of(&v);
    assert_eq!(
        readers(&ts, &bob, &dm).await,
        sorted(vec![alice.id.clone(), bob.id.clone()])
    );
    let (s, _) = ts
        .get(&format!("/api/v1/keys/places/{dm}"), &carol.token)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
