//! Moderation that speaks: kicks, bans and timeouts carry a reason (the body's, else the
//! `X-Audit-Log-Reason` header's) that reaches the audit log and the member concerned, who is
//! told on their own gateway channel (`moderation_notice`); a ban deletes the banned user's
//! recent messages with `message_delete` events; the invite preview says when the caller is
//! banned; bad input gets a 4xx.
#![allow(clippy::panic)]

use copains_signaling::Topic;
use copains_wire::Id;
use copains_wire::events::{BusEvent, Event, ModerationAction};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::support::{TestServer, TestUser};

fn id(s: &str) -> Id {
    Id(s.parse().unwrap())
}

async fn create_server(ts: &TestServer, owner: &TestUser, name: &str) -> String {
    let (s, v) = ts
        .post("/api/v1/servers", Some(&owner.token), json!({"name": name}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn invite(ts: &TestServer, owner: &TestUser, server: &str) -> String {
    let (s, v) = ts
        .post(
            &format!("/api/v1/servers/{server}/invites"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["code"].as_str().unwrap().to_owned()
}

async fn join(ts: &TestServer, who: &TestUser, code: &str) -> (StatusCode, Value) {
    ts.post(
        &format!("/api/v1/invites/{code}"),
        Some(&who.token),
        json!({}),
    )
    .await
}

/// Every event received so far.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<Arc<BusEvent>>) -> Vec<Arc<BusEvent>> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push(ev);
    }
    out
}

/// The moderation notices addressed to `user`, as (action, server name, reason, until).
fn notices(
    events: &[Arc<BusEvent>],
    user: &TestUser,
) -> Vec<(ModerationAction, String, Option<String>, Option<String>)> {
    events
        .iter()
        .filter(|ev| {
            ev.audience
                .contains(&copains_wire::events::Audience::User(id(&user.id)))
        })
        .filter_map(|ev| match &ev.event {
            Event::ModerationNotice {
                action,
                server_name,
                reason,
                timeout_until,
                ..
            } => Some((
                *action,
                server_name.clone(),
                reason.clone(),
                timeout_until.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// The public preview of invite `code`, with `token` when given.
async fn preview(ts: &TestServer, code: &str, token: Option<&str>) -> Value {
    let mut rb = ts.http.get(ts.url(&format!("/api/v1/invites/{code}")));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()
}

async fn audit(ts: &TestServer, owner: &TestUser, server: &str, action: &str) -> Vec<Value> {
    let (s, v) = ts
        .get(
            &format!("/api/v1/servers/{server}/audit-log?action={action}"),
            &owner.token,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

#[tokio::test]
async fn moderation_kick_ban_and_timeout_tell_the_member_why() {
    let ts = TestServer::start().await;
    let owner = ts.register("mowner").await;
    let kicked = ts.register("mkicked").await;
    let banned = ts.register("mbanned").await;
    let quiet = ts.register("mquiet").await;
    let server = create_server(&ts, &owner, "Club").await;
    let code = invite(&ts, &owner, &server).await;
    for u in [&kicked, &banned, &quiet] {
        assert_eq!(join(&ts, u, &code).await.0, StatusCode::CREATED);
    }
    ts.state
        .bus
        .subscribe(&[
            Topic::User(id(&kicked.id)),
            Topic::User(id(&banned.id)),
            Topic::User(id(&quiet.id)),
            Topic::Server(id(&server)),
        ])
        .await
        .unwrap();
    let mut rx = ts.state.bus.incoming();

    // A timeout with a reason: the member hears until when and why.
    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    let (s, v) = ts
        .patch(
            &format!("/api/v1/servers/{server}/members/{}", quiet.id),
            &owner.token,
            json!({"timeout_until": until.to_rfc3339(), "reason": "cool off"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = notices(&drain(&mut rx), &quiet);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, ModerationAction::Timeout);
    assert_eq!(got[0].1, "Club");
    assert_eq!(got[0].2.as_deref(), Some("cool off"));
    let told: chrono::DateTime<chrono::Utc> = got[0].3.as_deref().unwrap().parse().unwrap();
    assert!((told - until).num_seconds().abs() <= 1, "{told} vs {until}");
    // Ending the timeout tells nobody anything.
    let (s, _) = ts
        .patch(
            &format!("/api/v1/servers/{server}/members/{}", quiet.id),
            &owner.token,
            json!({"timeout_until": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(notices(&drain(&mut rx), &quiet).is_empty());

    // A kick with the reason in the body: told before the server disappears from their list.
    let (s, v) = ts
        .req(
            Method::DELETE,
            &format!("/api/v1/servers/{server}/members/{}", kicked.id),
            Some(&owner.token),
            Some(json!({"reason": "spam links"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let events = drain(&mut rx);
    assert_eq!(
        notices(&events, &kicked),
        vec![(
            ModerationAction::Kick,
            "Club".to_owned(),
            Some("spam links".to_owned()),
            None
        )]
    );
    let notice_at = events
        .iter()
        .position(|e| matches!(e.event, Event::ModerationNotice { .. }));
    let gone_at = events
        .iter()
        .position(|e| matches!(e.event, Event::ServerDelete { .. }));
    assert!(
        notice_at.is_some() && gone_at.is_some() && notice_at < gone_at,
        "the notice comes first: {notice_at:?} < {gone_at:?}"
    );
    assert_eq!(
        audit(&ts, &owner, &server, "member_kick").await[0]["reason"],
        "spam links"
    );

    // A ban with a reason and a 24 h window: the body's reason wins over the header's, the
    // recent message goes (with its message_delete event), the older one stays.
    ts.seed_aged_messages(
        &server,
        &banned.id,
        &[(2_000_001i64, "1 hour"), (2_000_002, "2 days")],
    )
    .await;
    let resp = ts
        .http
        .put(ts.url(&format!("/api/v1/servers/{server}/bans/{}", banned.id)))
        .bearer_auth(&owner.token)
        .header("X-Audit-Log-Reason", "from the header")
        .json(&json!({"reason": "  raiding  ", "delete_message_secs": 86400}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let events = drain(&mut rx);
    assert_eq!(
        notices(&events, &banned),
        vec![(
            ModerationAction::Ban,
            "Club".to_owned(),
            Some("raiding".to_owned()),
            None
        )]
    );
    assert!(
        events.iter().any(|e| matches!(e.event,
            Event::MessageDelete { message_id, .. } if message_id == Id(2_000_001))),
        "message_delete published for the recent message"
    );
    assert!(!events.iter().any(|e| matches!(e.event,
            Event::MessageDelete { message_id, .. } if message_id == Id(2_000_002))));
    let left: Vec<(i64,)> = sqlx::query_as("SELECT id FROM messages WHERE author_id = $1")
        .bind(id(&banned.id).0)
        .fetch_all(&ts.state.db)
        .await
        .unwrap();
    assert_eq!(left, vec![(2_000_002,)]);
    let (_, bans) = ts
        .get(&format!("/api/v1/servers/{server}/bans"), &owner.token)
        .await;
    assert_eq!(bans[0]["reason"], "raiding");
    assert_eq!(bans[0]["delete_message_secs"], 86400);
    let entry = &audit(&ts, &owner, &server, "member_ban").await[0];
    assert_eq!(entry["reason"], "raiding");
    assert_eq!(entry["changes"]["messages_deleted"], 1);
    assert_eq!(entry["changes"]["delete_message_secs"], 86400);

    // The invite says who is banned: the banned user (signed in) sees `banned`, the kicked
    // one and anonymous visitors do not, and a bad token leaves the preview public.
    assert_eq!(
        preview(&ts, &code, Some(&banned.token)).await["banned"],
        true
    );
    assert_eq!(
        preview(&ts, &code, Some(&kicked.token)).await["banned"],
        false
    );
    assert_eq!(preview(&ts, &code, None).await["banned"], false);
    let p = preview(&ts, &code, Some("not-a-token")).await;
    assert_eq!(
        (p["banned"].clone(), p["server_name"].clone()),
        (json!(false), json!("Club"))
    );
    let (s, v) = join(&ts, &banned, &code).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("banned"))
    );
    assert_eq!(join(&ts, &kicked, &code).await.0, StatusCode::CREATED);

    // A pre-emptive ban of someone who is not a member tells them nothing.
    let outsider = ts.register("moutsider").await;
    ts.state
        .bus
        .subscribe(&[Topic::User(id(&outsider.id))])
        .await
        .unwrap();
    let (s, _) = ts
        .put(
            &format!("/api/v1/servers/{server}/bans/{}", outsider.id),
            &owner.token,
            Some(json!({"reason": "known raider"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(notices(&drain(&mut rx), &outsider).is_empty());
    assert_eq!(
        preview(&ts, &code, Some(&outsider.token)).await["banned"],
        true
    );
}

#[tokio::test]
async fn moderation_bad_reasons_and_windows_are_refused_and_change_nothing() {
    let ts = TestServer::start().await;
    let owner = ts.register("rowner").await;
    let user = ts.register("ruser").await;
    let server = create_server(&ts, &owner, "Strict").await;
    let code = invite(&ts, &owner, &server).await;
    assert_eq!(join(&ts, &user, &code).await.0, StatusCode::CREATED);
    let ban = format!("/api/v1/servers/{server}/bans/{}", user.id);
    let member = format!("/api/v1/servers/{server}/members/{}", user.id);
    let long = "x".repeat(513);
    for body in [
        json!({"reason": long}),
        json!({"reason": 5}),
        // The one string rule: a control character (here BEL) is refused, not silently dropped.
        json!({"reason": "raiding\u{7}"}),
        json!({"delete_message_secs": 604801}),
        json!({"delete_message_secs": -1}),
        json!({"delete_message_secs": "1h"}),
    ] {
        let (s, v) = ts.put(&ban, &owner.token, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    }
    let r = ts
        .http
        .put(ts.url(&ban))
        .bearer_auth(&owner.token)
        .header("Content-Type", "application/json")
        .body("{\"reason\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, _) = ts
        .req(
            Method::DELETE,
            &member,
            Some(&owner.token),
            Some(json!({"reason": "y".repeat(513)})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = ts
        .patch(
            &member,
            &owner.token,
            json!({"timeout_until": (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339(),
                   "reason": "z".repeat(513)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Still a member, not banned, not timed out; exactly 512 characters is fine.
    let (s, m) = ts.get(&member, &owner.token).await;
    assert_eq!(s, StatusCode::OK);
    assert!(m["timeout_until"].is_null(), "{m}");
    assert_eq!(
        ts.put(&ban, &owner.token, Some(json!({"reason": "w".repeat(512)})))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, bans) = ts
        .get(&format!("/api/v1/servers/{server}/bans"), &owner.token)
        .await;
    assert_eq!(bans[0]["reason"].as_str().unwrap().chars().count(), 512);
}
