//! Voice through the real `copains serve`: native str0m clients join a voice channel over
//! the gateway (SDP relayed to the SFU by the voice bridge), media flows over UDP with
//! payload bytes identical end to end, and a kicked member stops receiving at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::voice::*;
use common::*;
use copains_sfu::client::Publish;
use futures_util::StreamExt;
use serde_json::json;

async fn join_voice_video(gw: &str, token: &str, server_id: &str, channel: &str) -> Member {
    let mut ws = connect(gw, None).await.unwrap();
    identify(&mut ws, token).await;
    start_voice_with(ws, server_id, channel, Publish::AudioVideo).await
}

/// Alice's server with a voice channel, Bob invited and joined: `(alice_token, bob_id,
/// bob_token, server_id, voice_channel_id)`.
async fn voice_channel_with_two_members(base: &str) -> (String, String, String, String, String) {
    let (_, alice) = register(base, "alice").await;
    let (bob_id, bob) = register(base, "bob").await;
    let server = post(
        base,
        "/api/v1/servers",
        Some(&alice),
        json!({"name": "Voice"}),
    )
    .await;
    let sid = server["id"].as_str().unwrap().to_owned();
    let voice = post(
        base,
        &format!("/api/v1/servers/{sid}/channels"),
        Some(&alice),
        json!({"name": "Lounge", "kind": "voice"}),
    )
    .await;
    let vc = voice["id"].as_str().unwrap().to_owned();
    let inv = post(
        base,
        &format!("/api/v1/servers/{sid}/invites"),
        Some(&alice),
        json!({}),
    )
    .await;
    post(
        base,
        &format!("/api/v1/invites/{}", inv["code"].as_str().unwrap()),
        Some(&bob),
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    (alice, bob_id, bob, sid, vc)
}

#[tokio::test]
async fn native_clients_talk_through_serve_and_a_kick_cuts_media() {
    let (_db, s) = serve_with_sfu("voice", 42000, 5000).await;
    let base = s.base.as_str();
    let (alice, bob_id, bob, sid, vc) = voice_channel_with_two_members(base).await;

    let mut a = join_voice_video(base, &alice, &sid, &vc).await;
    let mut b = join_voice_video(base, &bob, &sid, &vc).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(a.client.is_connected() && b.client.is_connected()) {
        assert!(
            Instant::now() < deadline,
            "voice clients did not connect through serve"
        );
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    // Let renegotiation (the other's track) settle.
    for _ in 0..50 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }

    for i in 0..40u32 {
        a.client
            .send_audio(
                Instant::now(),
                format!("alice-{i}").into_bytes(),
                i * 960,
                -20,
            )
            .unwrap();
        b.client
            .send_audio(
                Instant::now(),
                format!("bob-{i}").into_bytes(),
                i * 960,
                -20,
            )
            .unwrap();
        for (m, who) in [(&mut a, "alice"), (&mut b, "bob")] {
            for rid in ["q", "h", "f"] {
                // VP8 payload descriptor: a key frame on the first packet, then deltas.
                let mut v = vec![0x10, if i == 0 { 0x00 } else { 0x01 }];
                v.extend_from_slice(format!("{who}-v{rid}-{i}").as_bytes());
                m.client
                    .send_video(Instant::now(), rid, v, true, i * 3000)
                    .unwrap();
            }
        }
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..30 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    // Video: each side gets one simulcast layer of the other, every frame, bytes identical.
    for (m, other) in [(&b, "alice"), (&a, "bob")] {
        let layer = ["q", "h", "f"]
            .into_iter()
            .find(|rid| {
                m.got
                    .iter()
                    .any(|g| g.ends_with(format!("{other}-v{rid}-39").as_bytes()))
            })
            .unwrap_or_else(|| panic!("no video layer of {other} arrived"));
        let frames = (0..40)
            .filter(|i| {
                let mut v = vec![0x10, if *i == 0 { 0x00 } else { 0x01 }];
                v.extend_from_slice(format!("{other}-v{layer}-{i}").as_bytes());
                m.got.contains(&v)
            })
            .count();
        assert!(
            frames >= 38,
            "{frames}/40 video packets of {other} (layer {layer}) arrived identical"
        );
    }
    let bob_heard = (0..40).filter(|i| has(&b, &format!("alice-{i}"))).count();
    let alice_heard = (0..40).filter(|i| has(&a, &format!("bob-{i}"))).count();
    assert!(
        bob_heard >= 38,
        "bob received {bob_heard}/40 of alice's packets (identical bytes)"
    );
    assert!(
        alice_heard >= 38,
        "alice received {alice_heard}/40 of bob's packets (identical bytes)"
    );

    // Alice hides Bob's video (view size "hidden"): his frames stop reaching her; "focus"
    // brings them back.
    let bob_name = bob_id.clone();
    let vc_id = vc.clone();
    send(&mut a.ws, json!({"op": "voice_signal", "channel_id": vc_id, "kind": "other", "data": {"view": {"user_id": bob_name, "size": "hidden"}}})).await;
    for _ in 0..30 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    let video_round = |tag: &'static str| {
        move |m: &mut Member, i: u32| {
            for rid in ["q", "h", "f"] {
                let mut v = vec![0x10, if i == 0 { 0x00 } else { 0x01 }];
                v.extend_from_slice(format!("{tag}-{rid}-{i}").as_bytes());
                m.client
                    .send_video(Instant::now(), rid, v, true, (1000 + i) * 3000)
                    .unwrap();
            }
        }
    };
    let hidden = video_round("hidden");
    for i in 0..20u32 {
        hidden(&mut b, i);
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        a.pump(Duration::from_millis(10)).await;
    }
    let seen_hidden = a
        .got
        .iter()
        .filter(|g| g.windows(7).any(|w| w == b"hidden-"))
        .count();
    assert_eq!(seen_hidden, 0, "a hidden view still received video");
    send(&mut a.ws, json!({"op": "voice_signal", "channel_id": vc, "kind": "other", "data": {"view": {"user_id": bob_id, "size": "focus"}}})).await;
    let focus = video_round("focus");
    for i in 0..40u32 {
        focus(&mut b, i);
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        a.pump(Duration::from_millis(10)).await;
    }
    let seen_focus = a
        .got
        .iter()
        .filter(|g| g.windows(6).any(|w| w == b"focus-"))
        .count();
    assert!(seen_focus > 0, "a focused view received no video");

    // Alice (MUTE_MEMBERS as the owner) server-mutes Bob: his audio stops reaching her.
    let r = reqwest::Client::new()
        .put(format!(
            "{base}/api/v1/servers/{sid}/members/{bob_id}/voice-mute"
        ))
        .bearer_auth(&alice)
        .json(&json!({"muted": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "voice mute");
    let muted_at = Instant::now();
    while muted_at.elapsed() < Duration::from_secs(3) {
        a.pump(Duration::from_millis(20)).await;
        b.pump(Duration::from_millis(20)).await;
    }
    for i in 0..20u32 {
        b.client
            .send_audio(
                Instant::now(),
                format!("muted-{i}").into_bytes(),
                (200 + i) * 960,
                -20,
            )
            .unwrap();
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        a.pump(Duration::from_millis(10)).await;
    }
    let leaked = (0..20).filter(|i| has(&a, &format!("muted-{i}"))).count();
    assert_eq!(
        leaked, 0,
        "a server-muted member's audio still reached the room"
    );
    // Bob cannot unmute himself: he lacks MUTE_MEMBERS.
    let r = reqwest::Client::new()
        .put(format!(
            "{base}/api/v1/servers/{sid}/members/{bob_id}/voice-mute"
        ))
        .bearer_auth(&bob)
        .json(&json!({"muted": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Alice kicks Bob from the server: he is removed from the room and hears nothing more.
    let r = reqwest::Client::new()
        .delete(format!("{base}/api/v1/servers/{sid}/members/{bob_id}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "kick: {}", r.status());
    let kicked_at = Instant::now();
    while kicked_at.elapsed() < Duration::from_secs(3) {
        a.pump(Duration::from_millis(20)).await;
        b.pump(Duration::from_millis(20)).await;
    }
    let before = b.got.len();
    for i in 0..20u32 {
        a.client
            .send_audio(
                Instant::now(),
                format!("after-kick-{i}").into_bytes(),
                (100 + i) * 960,
                -20,
            )
            .unwrap();
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        b.pump(Duration::from_millis(10)).await;
    }
    let after: Vec<_> = b.got[before..]
        .iter()
        .filter(|g| g.starts_with(b"after-kick"))
        .collect();
    assert!(
        after.is_empty(),
        "bob still received {} packets after the kick",
        after.len()
    );
}

#[tokio::test]
async fn a_dm_call_rings_the_other_side_and_goes_through_the_sfu() {
    let (_db, s) = serve_with_sfu("dmcall", 47000, 2000).await;
    let base = s.base.as_str();
    let (alice_id, alice) = register(base, "alice").await;
    let (bob_id, bob) = register(base, "bob").await;
    // Strangers may not DM (bob's default DM policy): they become friends first.
    post(
        base,
        "/api/v1/users/@me/relationships",
        Some(&alice),
        json!({"user_id": bob_id}),
    )
    .await;
    post(
        base,
        &format!("/api/v1/users/@me/relationships/{alice_id}/accept"),
        Some(&bob),
        json!({}),
    )
    .await;
    let dm = post(
        base,
        "/api/v1/users/@me/channels",
        Some(&alice),
        json!({"recipients": [bob_id]}),
    )
    .await;
    let dm_id = dm["id"].as_str().unwrap().to_owned();

    let mut bob_ws = connect(base, None).await.unwrap();
    identify(&mut bob_ws, &bob).await;
    let mut a = join_voice(base, &alice, "", &dm_id).await;
    // Bob's client sees Alice's voice state in their DM: that is the ring.
    let ring = wait_for(&mut bob_ws, "voice_state_update", |d| {
        d["channel_id"] == dm_id.as_str()
    })
    .await;
    assert_eq!(ring["user_id"], alice_id.as_str());
    assert!(ring["server_id"].is_null());
    // Bob accepts: he joins the call.
    let mut b = start_voice(bob_ws, "", &dm_id).await;
    let (a_heard, b_heard) = exchange(&mut a, &mut b, "dm").await;
    assert!(
        a_heard >= 28 && b_heard >= 28,
        "dm call: alice heard {a_heard}/30, bob heard {b_heard}/30"
    );

    // Bob hangs up: nothing reaches him afterwards.
    send(
        &mut b.ws,
        json!({"op": "voice_state_update", "server_id": null, "channel_id": null}),
    )
    .await;
    for _ in 0..30 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for i in 0..20u32 {
        a.client
            .send_audio(
                Instant::now(),
                format!("after-leave-{i}").into_bytes(),
                (300 + i) * 960,
                -20,
            )
            .unwrap();
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    let after_leave = (0..20)
        .filter(|i| has(&b, &format!("after-leave-{i}")))
        .count();
    assert_eq!(
        after_leave, 0,
        "bob still received media after leaving the call"
    );

    // A stranger cannot join the DM's call.
    let (_, eve) = register(base, "eve").await;
    let mut e = join_voice(base, &eve, "", &dm_id).await;
    e.pump(Duration::from_millis(1500)).await;
    assert!(!e.client.is_connected(), "a stranger joined a DM call");

    // Stopping the node (SIGTERM) tells the participants to rejoin before the gateway closes.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let f: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if f["t"] == "voice_signal" && f["d"]["data"]["reconnect"] == true {
                        return true;
                    }
                }
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(
        told.ok(),
        Some(true),
        "participants were not told to rejoin when the SFU stopped"
    );
}

/// A client whose connection dies without leaving (a crashed browser, a lost network) is
/// announced as gone: the SFU notices the dead connection and the bridge tells the channel,
/// so nobody keeps seeing a ghost in voice.
#[tokio::test]
async fn a_vanished_client_is_announced_as_having_left() {
    let (_db, s) = serve_with_sfu("voice_ghost", 42000, 5000).await;
    let base = s.base.as_str();
    let (alice, bob_id, bob, sid, vc) = voice_channel_with_two_members(base).await;

    let mut a = join_voice(base, &alice, &sid, &vc).await;
    let mut b = join_voice(base, &bob, &sid, &vc).await;
    let (a_heard, b_heard) = exchange(&mut a, &mut b, "ghost").await;
    assert!(
        a_heard > 0 && b_heard > 0,
        "the call works first ({a_heard}, {b_heard})"
    );
    let left = |m: &Member| {
        m.states
            .iter()
            .any(|d| d["user_id"] == bob_id.as_str() && d["channel_id"].is_null())
    };
    assert!(
        a.states
            .iter()
            .any(|d| d["user_id"] == bob_id.as_str() && d["channel_id"] == vc.as_str()),
        "alice saw bob join"
    );
    assert!(!left(&a), "bob has not left yet");

    // Bob's browser dies: no leave is sent, his media and socket just stop.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !left(&a) {
        assert!(
            Instant::now() < deadline,
            "bob's vanished connection was never announced as a leave"
        );
        a.pump(Duration::from_millis(50)).await;
    }
    let d = a
        .states
        .iter()
        .rev()
        .find(|d| d["user_id"] == bob_id.as_str())
        .unwrap();
    assert_eq!(
        d["server_id"],
        sid.as_str(),
        "announced to the server's members"
    );
}
