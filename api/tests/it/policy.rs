//! The instance access policy (registration mode, email domains, IP rules) and rate limits.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, test_config};

fn new_user(name: &str, domain: &str) -> serde_json::Value {
    json!({"username": name, "email": format!("{name}@{domain}"), "password": format!("password-{name}")})
}

#[tokio::test]
async fn registration_modes_closed_and_invite_only() {
    let s = TestServer::start().await;
    let admin = s.register("admin").await;
    let bob = s.register("bob").await;
    let (st, _) = s
        .patch(
            "/api/v1/admin/policy",
            &bob.token,
            json!({"registration_mode": "closed"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "only admins set the policy");

    let (st, v) = s
        .patch(
            "/api/v1/admin/policy",
            &admin.token,
            json!({"registration_mode": "closed"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["registration_mode"], "closed");
    let (st, v) = s
        .post(
            "/api/v1/auth/register",
            None,
            new_user("carol", "example.org"),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("registration_closed"))
    );

    s.patch(
        "/api/v1/admin/policy",
        &admin.token,
        json!({"registration_mode": "invite_only"}),
    )
    .await;
    let (st, v) = s
        .post(
            "/api/v1/auth/register",
            None,
            new_user("carol", "example.org"),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("invite_required"))
    );
    let (st, inv) = s
        .post(
            "/api/v1/admin/registration-invites",
            Some(&admin.token),
            json!({"max_uses": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let code = inv["code"].as_str().unwrap();
    let mut carol = new_user("carol", "example.org");
    carol["invite"] = json!(code);
    let (st, _) = s.post("/api/v1/auth/register", None, carol).await;
    assert_eq!(st, StatusCode::CREATED);
    let mut dave = new_user("dave", "example.org");
    dave["invite"] = json!(code);
    let (st, _) = s.post("/api/v1/auth/register", None, dave).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "the invite had one use");
    // Logins keep working whatever the registration mode.
    let (st, _) = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "bob", "password": bob.password()}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn email_domain_allow_and_deny_lists() {
    let s = TestServer::start().await;
    let admin = s.register("admin").await;
    let (st, _) = s
        .put(
            "/api/v1/admin/policy/email-domains/spam.example",
            &admin.token,
            Some(json!({"rule": "deny"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .post(
            "/api/v1/auth/register",
            None,
            new_user("eve", "mail.spam.example"),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_domain_denied")),
        "subdomains are covered"
    );
    let (st, _) = s
        .post("/api/v1/auth/register", None, new_user("ann", "other.org"))
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "no allow list yet: other domains pass"
    );

    s.put(
        "/api/v1/admin/policy/email-domains/school.edu",
        &admin.token,
        Some(json!({"rule": "allow"})),
    )
    .await;
    let (st, v) = s
        .post("/api/v1/auth/register", None, new_user("zed", "other.org"))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_domain_not_allowed"))
    );
    let (st, _) = s
        .post("/api/v1/auth/register", None, new_user("stu", "school.edu"))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, pol) = s.get("/api/v1/admin/policy", &admin.token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(pol["email_domains"].as_array().unwrap().len(), 2);
    let (st, _) = s
        .delete(
            "/api/v1/admin/policy/email-domains/school.edu",
            &admin.token,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .post("/api/v1/auth/register", None, new_user("zed", "other.org"))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s
        .put(
            "/api/v1/admin/policy/email-domains/not a domain",
            &admin.token,
            Some(json!({"rule": "deny"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn ip_deny_list_uses_forwarded_for_only_from_trusted_proxies() {
    let mut cfg = test_config();
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let s = TestServer::with_config(cfg).await;
    let admin = s.register("admin").await;
    let (st, rule) = s
        .post(
            "/api/v1/admin/policy/ip-rules",
            Some(&admin.token),
            json!({"cidr": "203.0.113.0/24", "reason": "abuse"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    let (st, _) = s
        .post(
            "/api/v1/admin/policy/ip-rules",
            Some(&admin.token),
            json!({"cidr": "203.0.113.7/24"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "same range after truncation");
    let (st, _) = s
        .post(
            "/api/v1/admin/policy/ip-rules",
            Some(&admin.token),
            json!({"cidr": "not-an-ip"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    let from = |ip: &'static str| {
        s.http
            .post(s.url("/api/v1/auth/register"))
            .header("X-Forwarded-For", ip)
            .json(&new_user(
                &format!("u{}", ip.replace('.', "")),
                "example.org",
            ))
            .send()
    };
    let r = from("203.0.113.50").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ip_denied");
    assert_eq!(
        from("198.51.100.1").await.unwrap().status(),
        StatusCode::CREATED
    );

    let (st, _) = s
        .delete(
            &format!(
                "/api/v1/admin/policy/ip-rules/{}",
                rule["id"].as_str().unwrap()
            ),
            &admin.token,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        from("203.0.113.50").await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn untrusted_peers_cannot_dodge_the_ip_deny_list_with_forwarded_for() {
    let s = TestServer::start().await; // no trusted proxies
    let admin = s.register("admin").await;
    let (st, _) = s
        .post(
            "/api/v1/admin/policy/ip-rules",
            Some(&admin.token),
            json!({"cidr": "127.0.0.0/8"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let r = s
        .http
        .get(s.url("/api/v1/users/@me"))
        .bearer_auth(&admin.token)
        .header("X-Forwarded-For", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn auth_routes_are_rate_limited_per_client_ip_with_retry_after() {
    let mut cfg = test_config();
    cfg.auth_rate_burst = 3;
    cfg.auth_rate_period = Duration::from_secs(60);
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let s = TestServer::with_config(cfg).await;
    let attempt = |ip: &'static str| {
        s.http
            .post(s.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", ip)
            .json(&json!({"login": "nobody", "password": "whatever-pass"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("192.0.2.1").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = attempt("192.0.2.1").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    // Another client is not affected.
    assert_eq!(
        attempt("192.0.2.2").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Forgot and register have their own limits.
    for _ in 0..3 {
        let r = s
            .http
            .post(s.url("/api/v1/auth/password/forgot"))
            .header("X-Forwarded-For", "192.0.2.9")
            .json(&json!({"email": "a@b.cd"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = s
        .http
        .post(s.url("/api/v1/auth/password/forgot"))
        .header("X-Forwarded-For", "192.0.2.9")
        .json(&json!({"email": "a@b.cd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
}
