//! Accounts and sessions: registration, login, refresh rotation with reuse detection,
//! logout, password change and reset, sessions, suspension, deletion, the web cookie.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn register_then_login_by_username_or_email_and_wrong_password_is_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (st, me) = s.get("/api/v1/users/@me", &alice.token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["username"], "alice");
    assert!(me["id"].is_string(), "ids are strings in JSON");
    assert_eq!(
        me["is_admin"], true,
        "the first account of an instance is its admin"
    );

    for login in ["alice", "ALICE@example.org"] {
        let (st, v) = s
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": login, "password": alice.password()}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["user"]["id"], alice.id.as_str());
        assert_ne!(
            v["refresh_token"],
            alice.refresh.as_str(),
            "new tokens on every login"
        );
    }
    let (st, wrong) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "not-the-password"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st2, unknown) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "nobody", "password": "not-the-password"}),
        )
        .await;
    assert_eq!(st2, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong, unknown,
        "an unknown account answers exactly like a wrong password"
    );

    let bob = s.register("bob").await;
    let (_, bob_me) = s.get("/api/v1/users/@me", &bob.token).await;
    assert_eq!(bob_me["is_admin"], false);
    let (st, v) = s
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "Bob", "email": "other@example.org", "password": "12345678"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("username_taken"))
    );
    let (st, v) = s
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "bob2", "email": "BOB@example.org", "password": "12345678"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
}

#[tokio::test]
async fn passwords_of_8_to_128_characters_and_argon2id_hashes() {
    let s = TestServer::start().await;
    for (pw, ok) in [
        ("1234567", false),
        ("12345678", true),
        (&*"p".repeat(64), true),
        (&*"é".repeat(128), true),
        (&*"x".repeat(129), false),
    ] {
        let name = format!("u{}", pw.chars().count());
        let (st, v) = s
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": name, "email": format!("{name}@example.org"), "password": pw}),
            )
            .await;
        assert_eq!(
            st == StatusCode::CREATED,
            ok,
            "password of {} chars: {st} {v}",
            pw.chars().count()
        );
        if !ok {
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(v["code"], "validation");
        }
    }
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users LIMIT 1")
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[tokio::test]
async fn access_token_is_eddsa_and_carries_user_and_session() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let header = a.token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(&base64_url_decode(header)).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let verifier =
        copains_wire::TokenVerifier::from_public_pem(s.state.signer.public_pem()).unwrap();
    let claims = verifier.verify(&a.token).unwrap();
    assert_eq!(claims.sub.to_string(), a.id);
    assert!(claims.exp - claims.iat == 900, "15 minutes");
    let (_, sessions) = s.get("/api/v1/users/@me/sessions", &a.token).await;
    assert_eq!(sessions[0]["id"], claims.sid.to_string());
    assert_eq!(sessions[0]["current"], true);
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let (st, r1) = s
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": a.refresh}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r1}");
    let t1 = r1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(t1, a.refresh);
    let (st, r2) = s
        .post("/api/v1/auth/refresh", None, json!({"refresh_token": t1}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let t2 = r2["refresh_token"].as_str().unwrap().to_owned();
    let access2 = r2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/v1/users/@me", &access2).await.0, StatusCode::OK);

    // The first token is replayed (a thief's copy): the family dies.
    let (st, v) = s
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": a.refresh}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("refresh_token_reused"))
    );
    // Even the newest token of the family now fails, and so does its access token.
    let (st, v) = s
        .post("/api/v1/auth/refresh", None, json!({"refresh_token": t2}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session_revoked"))
    );
    let (st, v) = s.get("/api/v1/users/@me", &access2).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session_revoked"))
    );
    let reason: String = sqlx::query_scalar("SELECT revoked_reason FROM sessions")
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    assert_eq!(reason, "refresh_token_reuse");
    // Tokens are stored only hashed.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to($1, 'UTF8')",
    )
    .bind(&t2)
    .fetch_one(&s.state.db)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_yield_at_most_one_winner() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let http = s.http.clone();
        let url = s.url("/api/v1/auth/refresh");
        let body = json!({"refresh_token": a.refresh});
        handles.push(tokio::spawn(async move {
            http.post(url).json(&body).send().await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for h in handles {
        let st = h.await.unwrap();
        assert!(
            st == StatusCode::OK || st == StatusCode::UNAUTHORIZED,
            "{st}"
        );
        ok += usize::from(st == StatusCode::OK);
    }
    assert!(ok <= 1, "{ok} refreshes of one token succeeded");
}

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let (st, _) = s
        .req(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/users/@me", &a.token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": a.refresh}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_revocable_but_only_my_own() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (_, second) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": a.password()}),
        )
        .await;
    let second_token = second["access_token"].as_str().unwrap();
    let (_, list) = s.get("/api/v1/users/@me/sessions", &a.token).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let other = second["session_id"].as_str().unwrap();
    // Bob cannot revoke Alice's session: it does not exist for him.
    let (st, _) = s
        .delete(&format!("/api/v1/users/@me/sessions/{other}"), &b.token)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/api/v1/users/@me", second_token).await.0,
        StatusCode::OK
    );
    let (st, _) = s
        .delete(&format!("/api/v1/users/@me/sessions/{other}"), &a.token)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/users/@me", second_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.get("/api/v1/users/@me", &a.token).await.0, StatusCode::OK);
    let (st, _) = s
        .delete("/api/v1/users/@me/sessions/not-an-id", &a.token)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn password_change_revokes_every_other_session() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let (_, other) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": a.password()}),
        )
        .await;
    let other_token = other["access_token"].as_str().unwrap();
    let (st, v) = s
        .post(
            "/api/v1/users/@me/password",
            Some(&a.token),
            json!({"current_password": "wrong-password", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_password"))
    );
    let (st, _) = s
        .post(
            "/api/v1/users/@me/password",
            Some(&a.token),
            json!({"current_password": a.password(), "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/users/@me", &a.token).await.0,
        StatusCode::OK,
        "the current session stays"
    );
    assert_eq!(
        s.get("/api/v1/users/@me", other_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": a.password()}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "new-password-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn forgot_answers_the_same_for_known_and_unknown_emails_and_issues_a_hashed_token() {
    let s = TestServer::start().await;
    s.register("alice").await;
    let (st1, known) = s
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "alice@example.org"}),
        )
        .await;
    let (st2, unknown) = s
        .post(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "ghost@example.org"}),
        )
        .await;
    assert_eq!(st1, StatusCode::ACCEPTED);
    assert_eq!((st1, &known), (st2, &unknown), "identical replies");
    // The work happens in the background: a hashed token row appears for the real account only.
    let mut n = 0i64;
    for _ in 0..100 {
        n = sqlx::query_scalar("SELECT count(*) FROM password_resets")
            .fetch_one(&s.state.db)
            .await
            .unwrap();
        if n > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(n, 1);
}

#[tokio::test]
async fn reset_token_is_single_use_expiring_and_ends_every_session() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let uid = copains_wire::Id(a.id.parse().unwrap());
    let link = copains_api::accounts::issue_reset_link(&s.state, uid)
        .await
        .unwrap();
    assert!(
        link.starts_with("http://localhost:8080/reset-password?token="),
        "{link}"
    );
    let token = link.rsplit_once("token=").unwrap().1.to_owned();
    let (st, _) = s
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "short"}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a bad password does not burn the token"
    );
    let (st, _) = s
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "brand-new-pass"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "another-pass-1"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_reset_token")),
        "single use"
    );
    assert_eq!(
        s.get("/api/v1/users/@me", &a.token).await.0,
        StatusCode::UNAUTHORIZED,
        "sessions ended"
    );
    let (st, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "brand-new-pass"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // An expired token is refused.
    let link = copains_api::accounts::issue_reset_link(&s.state, uid)
        .await
        .unwrap();
    let token = link.rsplit_once("token=").unwrap().1.to_owned();
    sqlx::query(
        "UPDATE password_resets SET expires_at = now() - interval '1 second' WHERE used_at IS NULL",
    )
    .execute(&s.state.db)
    .await
    .unwrap();
    let (st, _) = s
        .post(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "password": "brand-new-pass-2"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Stored hashed only.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM password_resets WHERE token_hash = convert_to($1, 'UTF8')",
    )
    .bind(&token)
    .fetch_one(&s.state.db)
    .await
    .unwrap();
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn web_clients_get_the_refresh_token_only_in_an_httponly_cookie() {
    let s = TestServer::start().await;
    let resp = s
        .http
        .post(s.url("/api/v1/auth/register"))
        .header("X-Copains-Client", "web")
        .json(&json!({"username": "webby", "email": "webby@example.org", "password": "password-webby"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["refresh_token"].is_null());
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/v1/auth"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    let resp = s
        .http
        .post(s.url("/api/v1/auth/refresh"))
        .header("X-Copains-Client", "web")
        .header("Cookie", &pair)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let rotated = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        rotated.split(';').next().unwrap(),
        pair,
        "the cookie rotates too"
    );
    // The old cookie replayed: the family dies.
    let resp = s
        .http
        .post(s.url("/api/v1/auth/refresh"))
        .header("Cookie", &pair)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn profile_update_and_public_profile_and_account_deletion() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (st, v) = s
        .patch(
            "/api/v1/users/@me",
            &a.token,
            json!({"display_name": "Alice A.", "bio": "hi"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["display_name"], "Alice A.");
    let (st, v) = s
        .patch("/api/v1/users/@me", &a.token, json!({"username": "bob"}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("username_taken"))
    );
    let (st, v) = s
        .patch(
            "/api/v1/users/@me",
            &a.token,
            json!({"display_name": "x".repeat(65)}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation"))
    );
    let (st, v) = s.get(&format!("/api/v1/users/{}", a.id), &b.token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["display_name"], "Alice A.");
    assert!(v.get("email").is_none(), "emails are private");
    let (st, _) = s.get("/api/v1/users/999999999", &b.token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, _) = s
        .req(
            reqwest::Method::DELETE,
            "/api/v1/users/@me",
            Some(&b.token),
            Some(json!({"password": "wrong-password"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .req(
            reqwest::Method::DELETE,
            "/api/v1/users/@me",
            Some(&b.token),
            Some(json!({"password": b.password()})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/users/@me", &b.token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "bob", "password": b.password()}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn suspension_ends_sessions_and_blocks_login_until_lifted() {
    let s = TestServer::start().await;
    let admin = s.register("admin").await;
    let b = s.register("bob").await;
    let (st, _) = s
        .post(
            &format!("/api/v1/admin/users/{}/suspend", b.id),
            Some(&b.token),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "non-admins cannot suspend");
    let (st, _) = s
        .post(
            &format!("/api/v1/admin/users/{}/suspend", b.id),
            Some(&admin.token),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/users/@me", &b.token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, v) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "bob", "password": b.password()}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_suspended"))
    );
    let (st, v) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "bob", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a wrong password does not learn of the suspension: {v}"
    );
    let (st, _) = s
        .delete(
            &format!("/api/v1/admin/users/{}/suspend", b.id),
            &admin.token,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "bob", "password": b.password()}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Admin-issued reset link through the API.
    let (st, v) = s
        .post(
            &format!("/api/v1/admin/users/{}/reset-link", b.id),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .contains("/reset-password?token=")
    );
}

#[tokio::test]
async fn ended_sessions_are_announced_on_the_bus_for_the_gateway() {
    use copains_signaling::Topic;
    use copains_wire::events::Event;
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let uid = copains_wire::Id(a.id.parse().unwrap());
    s.state.bus.subscribe(&[Topic::User(uid)]).await.unwrap();
    let mut rx = s.state.bus.incoming();
    let (_, other) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": a.password()}),
        )
        .await;
    let other_sid = other["session_id"].as_str().unwrap().to_owned();
    s.post(
        "/api/v1/users/@me/password",
        Some(&a.token),
        json!({"current_password": a.password(), "new_password": "new-password-1"}),
    )
    .await;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match &ev.event {
        Event::SessionRevoked {
            user_id,
            session_id,
        } => {
            assert_eq!(*user_id, uid);
            assert_eq!(
                session_id.to_string(),
                other_sid,
                "the other session, not the current one"
            );
        }
        other => panic!("unexpected event {other:?}"),
    }
    s.req(
        reqwest::Method::POST,
        "/api/v1/auth/logout",
        Some(&a.token),
        None,
    )
    .await;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev.event, Event::SessionRevoked { .. }));
}
