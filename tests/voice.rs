//! Voice through the real `copains serve`: native str0m clients join a voice channel over
//! the gateway (SDP relayed to the SFU by the voice bridge), media flows over UDP with
//! payload bytes identical end to end, and a kicked member stops receiving at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::*;
use copains_sfu::client::{NativeClient, Publish};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Member {
    ws: Ws,
    client: NativeClient,
    got: Vec<Vec<u8>>,
    channel: String,
}

impl Member {
    /// Reads gateway frames for up to `wait`, applying voice signals to the client.
    async fn pump(&mut self, wait: Duration) {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let got = &mut self.got;
            self.client
                .tick(&mut |r| got.push(r.packet.payload.to_vec()))
                .unwrap();
            if left.is_zero() {
                return;
            }
            let Ok(Some(Ok(Message::Text(t)))) =
                tokio::time::timeout(left.min(Duration::from_millis(5)), self.ws.next()).await
            else {
                continue;
            };
            let f: Value = serde_json::from_str(&t).unwrap();
            if f["t"] != "voice_signal" || f["d"]["channel_id"] != self.channel.as_str() {
                continue;
            }
            let sdp = f["d"]["data"]["sdp"].as_str().map(str::to_owned);
            match (f["d"]["kind"].as_str(), sdp) {
                (Some("answer"), Some(sdp)) => self.client.accept_answer(&sdp).unwrap(),
                (Some("offer"), Some(sdp)) => {
                    let answer = self.client.answer_offer(&sdp).unwrap();
                    let msg = json!({"op": "voice_signal", "channel_id": self.channel, "kind": "answer", "data": {"sdp": answer}});
                    send(&mut self.ws, msg).await;
                }
                (Some("other"), _) if f["d"]["data"]["error"].is_string() => {
                    panic!("voice error: {}", f["d"]["data"])
                }
                _ => {}
            }
        }
    }
}

async fn join_voice(gw: &str, token: &str, server_id: &str, channel: &str) -> Member {
    let mut ws = connect(gw, None).await.unwrap();
    identify(&mut ws, token).await;
    start_voice(ws, server_id, channel).await
}

/// Joins voice on an identified connection (`server_id` empty: a DM call).
async fn start_voice(mut ws: Ws, server_id: &str, channel: &str) -> Member {
    let server_id = if server_id.is_empty() {
        Value::Null
    } else {
        json!(server_id)
    };
    send(
        &mut ws,
        json!({"op": "voice_state_update", "server_id": server_id, "channel_id": channel}),
    )
    .await;
    let (client, offer) = NativeClient::new(LO, Publish::Audio, Instant::now()).unwrap();
    send(&mut ws, json!({"op": "voice_signal", "channel_id": channel, "kind": "offer", "data": {"sdp": offer}})).await;
    Member {
        ws,
        client,
        got: Vec::new(),
        channel: channel.to_owned(),
    }
}

fn has(m: &Member, payload: &str) -> bool {
    m.got.iter().any(|g| g == payload.as_bytes())
}

#[tokio::test]
async fn native_clients_talk_through_serve_and_a_kick_cuts_media() {
    let db = TestDb::new("voice");
    let dir = temp_dir("voice");
    let start = 42000 + (nanos() % 5000) as u16;
    let ports = format!("{start}-{}", start + 40);
    let s = Proc::start(
        "serve",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_SFU_PORTS", ports),
        ],
        &dir,
    )
    .await;
    let base = s.base.as_str();
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

    let mut a = join_voice(base, &alice, &sid, &vc).await;
    let mut b = join_voice(base, &bob, &sid, &vc).await;
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
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..30 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
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

/// Talks both ways in a voice place and returns how many of 30 packets each side heard.
async fn exchange(a: &mut Member, b: &mut Member, tag: &str) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(a.client.is_connected() && b.client.is_connected()) {
        assert!(Instant::now() < deadline, "voice clients did not connect");
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..50 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for i in 0..30u32 {
        a.client
            .send_audio(
                Instant::now(),
                format!("{tag}-a-{i}").into_bytes(),
                i * 960,
                -20,
            )
            .unwrap();
        b.client
            .send_audio(
                Instant::now(),
                format!("{tag}-b-{i}").into_bytes(),
                i * 960,
                -20,
            )
            .unwrap();
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    for _ in 0..30 {
        a.pump(Duration::from_millis(10)).await;
        b.pump(Duration::from_millis(10)).await;
    }
    let b_heard = (0..30).filter(|i| has(b, &format!("{tag}-a-{i}"))).count();
    let a_heard = (0..30).filter(|i| has(a, &format!("{tag}-b-{i}"))).count();
    (a_heard, b_heard)
}

#[tokio::test]
async fn a_dm_call_rings_the_other_side_and_goes_through_the_sfu() {
    let db = TestDb::new("dmcall");
    let dir = temp_dir("dmcall");
    let start = 47000 + (nanos() % 2000) as u16;
    let ports = format!("{start}-{}", start + 40);
    let s = Proc::start(
        "serve",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("COPAINS_SFU_PORTS", ports),
        ],
        &dir,
    )
    .await;
    let base = s.base.as_str();
    let (alice_id, alice) = register(base, "alice").await;
    let (bob_id, bob) = register(base, "bob").await;
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

    // A stranger cannot join the DM's call.
    let (_, eve) = register(base, "eve").await;
    let mut e = join_voice(base, &eve, "", &dm_id).await;
    e.pump(Duration::from_millis(1500)).await;
    assert!(!e.client.is_connected(), "a stranger joined a DM call");
}
