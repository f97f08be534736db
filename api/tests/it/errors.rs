//! Bad input gets a clear JSON error, never a 5xx: malformed JSON, wrong types, huge bodies,
//! wrong content types, bad ids and tokens, unknown routes.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestServer;

async fn raw(
    s: &TestServer,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut rb = s.http.post(s.url(path)).body(body);
    if let Some(c) = ctype {
        rb = rb.header("content-type", c);
    }
    let r = rb.send().await.unwrap();
    let st = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    (st, v)
}

#[tokio::test]
async fn malformed_bodies_are_4xx_json_errors() {
    let s = TestServer::start().await;
    let cases: Vec<(&str, Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/api/v1/auth/login",
            Some("application/json"),
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/api/v1/auth/login",
            Some("application/json"),
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/api/v1/auth/login",
            Some("application/json"),
            vec![0xff, 0xfe, 0x00],
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/api/v1/auth/login",
            Some("application/json"),
            b"{\"login\": 5, \"password\": []}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            "/api/v1/auth/login",
            Some("application/json"),
            b"[1,2,3]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            "/api/v1/auth/register",
            Some("application/json"),
            b"{\"username\": \"a\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
        (
            "/api/v1/auth/login",
            Some("text/plain"),
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/v1/auth/login",
            None,
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/v1/auth/refresh",
            Some("application/json"),
            b"{\"refresh_token\": 9007199254740993}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        ),
    ];
    for (path, ct, body, want, code) in cases {
        let (st, v) = raw(&s, path, ct, body.clone()).await;
        assert_eq!(
            st,
            want,
            "{path} {ct:?} {:?}: {v}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = TestServer::start().await;
    let huge = format!(
        "{{\"login\": \"{}\", \"password\": \"x\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let (st, v) = raw(
        &s,
        "/api/v1/auth/login",
        Some("application/json"),
        huge.into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["code"], "payload_too_large");
    // The message states the real limit (the default 1 MiB), not "limit 0 bytes".
    assert_eq!(
        v["message"], "request body too large (limit 1048576 bytes)",
        "{v}"
    );
}

#[tokio::test]
async fn bad_tokens_ids_and_routes_are_clear_4xx() {
    let s = TestServer::with_config(copains_api::config::ApiConfig {
        metrics_token: Some("metrics-token-for-tests".into()),
        ..crate::support::test_config()
    })
    .await;
    let a = s.register("alice").await;
    let (st, v) = s
        .req(reqwest::Method::GET, "/api/v1/users/@me", None, None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
    for bad in ["garbage", "a.b.c", &format!("{}x", a.token)] {
        let (st, v) = s.get("/api/v1/users/@me", bad).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{bad}"
        );
    }
    for id in ["-1", "0", "9007199254740993999999", "1e5", "%00"] {
        let (st, _) = s.get(&format!("/api/v1/users/{id}"), &a.token).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "id {id}");
    }
    let (st, v) = s.get("/api/v1/no/such/route", &a.token).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, v) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/auth/login",
            None,
            Some(json!({})),
        )
        .await;
    assert!(st.is_client_error(), "{st}");
    assert!(v["code"].is_string());
    let (st, _) = s.req(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth("metrics-token-for-tests")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("copains_http_requests_total{class=\"4xx\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn nul_characters_in_text_are_4xx_not_500() {
    // PostgreSQL cannot store U+0000 in text; schemathesis found a friend request by such a
    // username answering 500. Every text a peer sends must come back as a 4xx instead.
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let cases = [
        (
            "/api/v1/users/@me/relationships",
            json!({"username": "bo\u{0}b"}),
        ),
        (
            "/api/v1/auth/login",
            json!({"login": "ali\u{0}ce", "password": "x"}),
        ),
        ("/api/v1/servers", json!({"name": "caf\u{0}e"})),
    ];
    for (path, body) in cases {
        let (st, v) = s.post(path, Some(&a.token), body.clone()).await;
        assert!(st.is_client_error(), "{path} {body}: {st} {v}");
        assert!(v["code"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let s = TestServer::start().await;
    let doc: serde_json::Value = s
        .http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/password/forgot",
        "/api/v1/auth/password/reset",
        "/api/v1/users/@me",
        "/api/v1/users/@me/sessions",
        "/api/v1/users/@me/sessions/{session_id}",
        "/api/v1/admin/policy",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert_eq!(doc["info"]["title"], "Copains API");
    assert!(doc["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"].is_object());
}

#[tokio::test]
async fn errors_signed_out_web_refresh_is_204_not_a_failed_request() {
    let s = TestServer::start().await;
    // The web app restores a session on every page load; signed out (no cookie) that is not
    // an error: 204, so the browser logs no failed request.
    let r = s
        .http
        .post(s.url("/api/v1/auth/refresh"))
        .header("X-Copains-Client", "web")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("set-cookie").is_none());
    // A native client without a token, and a web client with a bad cookie, still get 401.
    let (st, v) = raw(
        &s,
        "/api/v1/auth/refresh",
        Some("application/json"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_refresh_token"))
    );
    let r = s
        .http
        .post(s.url("/api/v1/auth/refresh"))
        .header("X-Copains-Client", "web")
        .header("Cookie", "copains_refresh=not-a-token")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
