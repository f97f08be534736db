//! ICE servers for calls: STUN as configured, TURN with coturn `use-auth-secret` credentials.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{TestServer, test_config};

#[tokio::test]
async fn ice_servers_mint_time_limited_turn_credentials() {
    let mut cfg = test_config();
    cfg.ice.stun_urls = vec!["stun:turn.example.org:3478".into()];
    cfg.ice.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
    cfg.ice.turn_secret = Some("north-wind".into());
    cfg.ice.turn_ttl = Duration::from_secs(600);
    let s = TestServer::with_config(cfg).await;
    let a = s.register("alice").await;
    let (st, _) = s
        .req(
            reqwest::Method::GET,
            "/api/v1/voice/ice-servers",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s.get("/api/v1/voice/ice-servers", &a.token).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["ttl_secs"], 600);
    let servers = v["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"][0], "stun:turn.example.org:3478");
    assert!(servers[0].get("credential").is_none());
    let turn = &servers[1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, a.id);
    let now = chrono::Utc::now().timestamp();
    let expiry: i64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expiry {expiry} vs now {now}"
    );
    // RFC 2104 HMAC-SHA1 computed independently of the route's helper.
    let expected = {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"north-wind").unwrap();
        mac.update(username.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    assert_eq!(turn["credential"], expected.as_str());
    // Known-answer check of the helper itself (RFC 2202 test case 2: key "Jefe").
    assert_eq!(
        copains_api::routes::voice::turn_password("Jefe", "what do ya want for nothing?").unwrap(),
        "7/zfauXrL6LSdBbV8YTfnCWafHk="
    );
}

#[tokio::test]
async fn without_turn_configuration_no_credentials_are_minted() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let (st, v) = s.get("/api/v1/voice/ice-servers", &a.token).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["ice_servers"].as_array().unwrap().is_empty());
}
