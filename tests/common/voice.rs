//! Voice test helpers: a native str0m client joined to voice through the gateway.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use copains_sfu::client::{NativeClient, Publish};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub struct Member {
    pub ws: Ws,
    pub client: NativeClient,
    pub got: Vec<Vec<u8>>,
    pub channel: String,
    /// Every `voice_state_update` dispatch seen by [`Member::pump`].
    pub states: Vec<Value>,
}

impl Member {
    /// Reads gateway frames for up to `wait`, applying voice signals to the client.
    pub async fn pump(&mut self, wait: Duration) {
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
            if f["t"] == "voice_state_update" {
                self.states.push(f["d"].clone());
                continue;
            }
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

pub async fn join_voice(gw: &str, token: &str, server_id: &str, channel: &str) -> Member {
    let mut ws = connect(gw, None).await.unwrap();
    identify(&mut ws, token).await;
    start_voice(ws, server_id, channel).await
}

/// Joins voice on an identified connection (`server_id` empty: a DM call).
pub async fn start_voice(ws: Ws, server_id: &str, channel: &str) -> Member {
    start_voice_with(ws, server_id, channel, Publish::Audio).await
}

/// Like [`start_voice`], publishing `publish` (audio, or audio and simulcast video).
pub async fn start_voice_with(
    mut ws: Ws,
    server_id: &str,
    channel: &str,
    publish: Publish,
) -> Member {
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
    let (client, offer) = NativeClient::new(LO, publish, Instant::now()).unwrap();
    send(&mut ws, json!({"op": "voice_signal", "channel_id": channel, "kind": "offer", "data": {"sdp": offer}})).await;
    Member {
        ws,
        client,
        got: Vec::new(),
        channel: channel.to_owned(),
        states: Vec::new(),
    }
}

pub fn has(m: &Member, payload: &str) -> bool {
    m.got.iter().any(|g| g == payload.as_bytes())
}

/// Talks both ways in a voice place and returns how many of 30 packets each side heard.
pub async fn exchange(a: &mut Member, b: &mut Member, tag: &str) -> (usize, usize) {
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

/// A `copains serve` on its own database with its SFU on a port range picked at random in
/// `[base, base + spread)` (the SFU takes the first free ports of the range).
pub async fn serve_with_sfu(tag: &str, base: u16, spread: u16) -> (TestDb, Proc) {
    let db = TestDb::new(tag);
    let dir = temp_dir(tag);
    let start = base + (nanos() % u32::from(spread)) as u16;
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
    (db, s)
}
