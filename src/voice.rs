//! The voice bridge: joins the gateway's voice signalling (relayed on the event bus) to the
//! SFU. A client in a voice channel sends its SDP offer as a `voice_signal`; the bridge checks
//! CONNECT (and SPEAK: without it the participant is muted server-side), joins the
//! participant to the channel's room, and sends the SFU's answer (and any server offer) back
//! to exactly that gateway session. Leaving voice, a dropped permission or a kick removes the
//! participant from the room at once.
//!
//! On one node (`copains serve`) the bus is in-process and this SFU serves every room. With
//! Redis, several SFU nodes may run: each registers itself with its load
//! (`copains:sfu:node:<id>`, TTL 10 s), and an active voice channel is pinned to the node that
//! first claims it (`copains:voice:room:<channel>`, SET NX, TTL 10 s refreshed every 3 s). A
//! node only answers offers for rooms it holds or can claim. When a node dies its claims
//! expire; its clients' connections fail and their next offer is claimed by a live node.

use std::collections::HashMap;
use std::sync::Arc;

use copains_api::communities::permissions::{self, Permissions};
use copains_sfu::{
    LeaveReason, ParticipantId, RoomEvent, RoomId, SfuEvent, SfuHandle, TrackId, TrackKind,
    ViewSize,
};
use copains_signaling::{EventBus, Topic};
use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event, SignalKind};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::mpsc;

/// Who a room participant is on the gateway side.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Peer {
    user_id: Id,
    session_id: String,
    /// The server of the voice channel; `None` for a DM call.
    server_id: Option<Id>,
    /// Whether the SFU drops this participant's audio (no SPEAK, or server-muted).
    muted: bool,
}

/// What a user may do in a voice place.
struct VoiceAccess {
    server_id: Option<Id>,
    connect: bool,
    speak: bool,
}

/// CONNECT/SPEAK in a server voice channel, or membership of a DM / group DM (a DM call);
/// `None` if the user cannot see the place.
async fn voice_access(
    db: &PgPool,
    user_id: Id,
    channel_id: Id,
) -> Result<Option<VoiceAccess>, copains_api::ApiError> {
    if let Some((server_id, p)) = permissions::channel_permissions(db, user_id, channel_id).await? {
        let server_muted: bool = sqlx::query_scalar(
            "SELECT voice_muted FROM members WHERE server_id = $1 AND user_id = $2",
        )
        .bind(server_id.0)
        .bind(user_id.0)
        .fetch_optional(db)
        .await?
        .unwrap_or(false);
        return Ok(Some(VoiceAccess {
            server_id: Some(server_id),
            connect: p.contains(Permissions::CONNECT),
            speak: p.contains(Permissions::SPEAK) && !server_muted,
        }));
    }
    let member: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM dm_recipients WHERE channel_id = $1 AND user_id = $2")
            .bind(channel_id.0)
            .bind(user_id.0)
            .fetch_optional(db)
            .await?;
    Ok(member.map(|_| VoiceAccess {
        server_id: None,
        connect: true,
        speak: true,
    }))
}

/// The participant id of a gateway session in a room (stable per session).
fn participant_of(session_id: &str) -> ParticipantId {
    // FNV-1a: stable across processes, unlike the std hasher.
    let h = session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ParticipantId(h)
}

/// Where rooms live: here always (one node), or claimed per room in Redis (many nodes).
pub enum Placement {
    /// Single node: every room is served here.
    Local,
    /// Several SFU nodes share rooms through Redis claims.
    Redis {
        /// Connection (reconnects by itself).
        conn: redis::aio::ConnectionManager,
        /// This node's id (unique per process).
        node: String,
    },
}

/// Seconds a room claim or a node registration lives without refresh.
const CLAIM_TTL_SECS: u64 = 10;

impl Placement {
    /// Connects the Redis placement for node `node`.
    pub async fn redis(url: &str, node: String) -> anyhow::Result<Placement> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(Placement::Redis { conn, node })
    }

    /// Whether this node serves `room`, claiming it if nobody does.
    async fn claim(&mut self, room: u64) -> bool {
        match self {
            Placement::Local => true,
            Placement::Redis { conn, node } => {
                let key = format!("copains:voice:room:{room}");
                let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
                    .arg(&key)
                    .arg(node.as_str())
                    .arg("NX")
                    .arg("EX")
                    .arg(CLAIM_TTL_SECS)
                    .query_async(conn)
                    .await;
                match set {
                    Ok(Some(_)) => true,
                    Ok(None) => {
                        let owner: redis::RedisResult<Option<String>> =
                            redis::cmd("GET").arg(&key).query_async(conn).await;
                        owner.ok().flatten().as_deref() == Some(node.as_str())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "room claim failed (Redis)");
                        false
                    }
                }
            }
        }
    }

    /// Refreshes this node's registration (with its load) and its rooms' claims.
    async fn refresh(&mut self, rooms: &[u64], participants: usize) {
        let Placement::Redis { conn, node } = self else {
            return;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("copains:sfu:node:{node}"))
            .arg(participants)
            .arg("EX")
            .arg(CLAIM_TTL_SECS)
            .ignore();
        for r in rooms {
            pipe.cmd("SET")
                .arg(format!("copains:voice:room:{r}"))
                .arg(node.as_str())
                .arg("EX")
                .arg(CLAIM_TTL_SECS)
                .ignore();
        }
        let r: redis::RedisResult<()> = pipe.query_async(conn).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "refreshing SFU registration failed (Redis)");
        }
    }
}

/// Runs the bridge until the bus closes.
pub async fn run(
    bus: Arc<dyn EventBus>,
    sfu: SfuHandle,
    mut sfu_events: mpsc::Receiver<SfuEvent>,
    db: PgPool,
    mut placement: Placement,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Err(e) = bus.subscribe(&[Topic::VoiceAll]).await {
        tracing::error!(error = %e, "voice bridge cannot subscribe to voice signalling");
        return;
    }
    let mut incoming = bus.incoming();
    let mut peers: HashMap<(u64, ParticipantId), Peer> = HashMap::new();
    // Video and screen tracks published in each room (for view-size requests).
    let mut tracks: HashMap<u64, Vec<TrackId>> = HashMap::new();
    let mut recheck = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut heartbeat = tokio::time::interval(std::time::Duration::from_secs(3));
    loop {
        tokio::select! {
            _ = stop.changed() => {
                drain(&bus, &mut placement, &mut peers).await;
                return;
            }
            _ = recheck.tick() => recheck_permissions(&bus, &sfu, &db, &mut peers).await,
            _ = heartbeat.tick() => {
                let mut rooms: Vec<u64> = peers.keys().map(|(r, _)| *r).collect();
                rooms.sort_unstable();
                rooms.dedup();
                placement.refresh(&rooms, peers.len()).await;
            }
            ev = incoming.recv() => match ev {
                Ok(ev) => on_bus_event(&bus, &sfu, &db, &mut peers, &tracks, &mut placement, &ev).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "voice bridge lagged behind the bus");
                }
                Err(_) => return,
            },
            ev = sfu_events.recv() => match ev {
                Some(ev) => on_sfu_event(&bus, &mut peers, &mut tracks, ev).await,
                None => return,
            },
        }
    }
}

/// This node is stopping: every participant is told to rejoin (their next offer lands on
/// another SFU node, or on this one once it is back), and this node's room claims are released.
async fn drain(
    bus: &Arc<dyn EventBus>,
    placement: &mut Placement,
    peers: &mut HashMap<(u64, ParticipantId), Peer>,
) {
    for ((room, _), peer) in peers.iter() {
        signal_to(
            bus,
            peer,
            Id(*room as i64),
            SignalKind::Other,
            json!({"reconnect": true, "reason": "sfu_node_stopping"}),
        )
        .await;
    }
    if let Placement::Redis { conn, node } = placement {
        let mut rooms: Vec<u64> = peers.keys().map(|(r, _)| *r).collect();
        rooms.dedup();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(format!("copains:sfu:node:{node}"))
            .ignore();
        for r in rooms {
            pipe.cmd("DEL")
                .arg(format!("copains:voice:room:{r}"))
                .ignore();
        }
        let _: redis::RedisResult<()> = pipe.query_async(conn).await;
    }
    tracing::info!(
        participants = peers.len(),
        "voice bridge drained: participants told to rejoin"
    );
    peers.clear();
}

async fn signal_to(
    bus: &Arc<dyn EventBus>,
    peer: &Peer,
    channel_id: Id,
    kind: SignalKind,
    data: Value,
) {
    let ev = BusEvent::new(
        vec![Audience::Session {
            user_id: peer.user_id,
            session_id: peer.session_id.clone(),
        }],
        Event::VoiceSignal {
            channel_id,
            user_id: peer.user_id,
            session_id: peer.session_id.clone(),
            kind,
            data,
        },
    );
    if let Err(e) = bus.publish(&ev).await {
        tracing::warn!(error = %e, "voice bridge could not answer a client");
    }
}

/// Tells the voice place's members (or the DM's recipients) that `peer` is no longer in
/// `channel_id`: the leave their client could not announce (its connection died, or it lost
/// CONNECT). Without it, a crashed browser would stay listed in the channel for everyone.
async fn announce_left(bus: &Arc<dyn EventBus>, peer: &Peer, channel_id: Id) {
    let audience = match peer.server_id {
        Some(s) => Audience::Server(s),
        None => Audience::Channel {
            server_id: None,
            channel_id,
        },
    };
    let ev = BusEvent::new(
        vec![audience],
        Event::VoiceStateUpdate {
            server_id: peer.server_id,
            channel_id: None,
            user_id: peer.user_id,
            session_id: peer.session_id.clone(),
            self_mute: false,
            self_deaf: false,
            self_video: false,
            self_stream: false,
        },
    );
    if let Err(e) = bus.publish(&ev).await {
        tracing::warn!(error = %e, "voice bridge could not announce a lost participant");
    }
}

fn sdp_of(data: &Value) -> Option<String> {
    data.get("sdp")
        .and_then(Value::as_str)
        .or_else(|| data.as_str())
        .map(str::to_owned)
}

async fn on_bus_event(
    bus: &Arc<dyn EventBus>,
    sfu: &SfuHandle,
    db: &PgPool,
    peers: &mut HashMap<(u64, ParticipantId), Peer>,
    tracks: &HashMap<u64, Vec<TrackId>>,
    placement: &mut Placement,
    ev: &BusEvent,
) {
    match &ev.event {
        Event::VoiceSignal {
            channel_id,
            user_id,
            session_id,
            kind,
            data,
        } => {
            // Only client → SFU signals: the bridge's own answers carry a Session audience.
            if !ev.audience.iter().any(|a| matches!(a, Audience::Voice(_))) {
                return;
            }
            let room = RoomId(channel_id.0 as u64);
            let who = participant_of(session_id);
            let key = (room.0, who);
            // Another SFU node serves this room (or will): leave it to that node.
            let local = peers.contains_key(&key) || peers.keys().any(|(r, _)| *r == room.0);
            if !local && (*kind != SignalKind::Offer || !placement.claim(room.0).await) {
                return;
            }
            let Ok(Some(access)) = voice_access(db, *user_id, *channel_id).await else {
                return;
            };
            let peer = Peer {
                user_id: *user_id,
                session_id: session_id.clone(),
                server_id: access.server_id,
                muted: !access.speak,
            };
            if !access.connect {
                signal_to(bus, &peer, *channel_id, SignalKind::Other, json!({"error": "missing_permission", "message": "you may not connect to this voice channel"})).await;
                let _ = sfu.kick(room, who).await;
                peers.remove(&key);
                return;
            }
            // `{"view": {"user_id": …, "size": "tile"|"focus"|"hidden"}}`: how large this client
            // shows that user's video (the SFU picks the simulcast layer up to that size).
            if *kind == SignalKind::Other
                && let Some(view) = data.get("view")
            {
                set_view(sfu, peers, tracks, room, who, view).await;
                return;
            }
            let Some(sdp) = sdp_of(data) else { return };
            match kind {
                SignalKind::Offer => {
                    let joined = peers.contains_key(&key);
                    let r = if joined {
                        sfu.renegotiate(room, who, sdp).await
                    } else {
                        sfu.join(room, who, sdp).await
                    };
                    match r {
                        Ok(n) => {
                            peers.insert(key, peer.clone());
                            if !access.speak {
                                let _ = sfu.set_muted(room, who, true).await;
                            }
                            signal_to(
                                bus,
                                &peer,
                                *channel_id,
                                SignalKind::Answer,
                                json!({"sdp": n.answer}),
                            )
                            .await;
                            if let Some(offer) = n.offer {
                                signal_to(
                                    bus,
                                    &peer,
                                    *channel_id,
                                    SignalKind::Offer,
                                    json!({"sdp": offer}),
                                )
                                .await;
                            }
                        }
                        Err(e) => {
                            signal_to(
                                bus,
                                &peer,
                                *channel_id,
                                SignalKind::Other,
                                json!({"error": "negotiation_failed", "message": e.to_string()}),
                            )
                            .await;
                        }
                    }
                }
                SignalKind::Answer => match sfu.accept_answer(room, who, sdp).await {
                    Ok(Some(next)) => {
                        signal_to(
                            bus,
                            &peer,
                            *channel_id,
                            SignalKind::Offer,
                            json!({"sdp": next}),
                        )
                        .await
                    }
                    Ok(None) => {}
                    Err(e) => {
                        signal_to(
                            bus,
                            &peer,
                            *channel_id,
                            SignalKind::Other,
                            json!({"error": "negotiation_failed", "message": e.to_string()}),
                        )
                        .await;
                    }
                },
                // ICE-lite SFU: the client's trickled candidates are not needed.
                SignalKind::Ice | SignalKind::Other => {}
            }
        }
        Event::VoiceStateUpdate {
            channel_id,
            session_id,
            ..
        } => {
            // Leaving voice (or moving): the session's participant leaves every other room.
            let who = participant_of(session_id);
            let stale: Vec<(u64, ParticipantId)> = peers
                .keys()
                .filter(|(room, p)| *p == who && Some(*room) != channel_id.map(|c| c.0 as u64))
                .cloned()
                .collect();
            for key in stale {
                peers.remove(&key);
                let _ = sfu.leave(RoomId(key.0), key.1).await;
            }
        }
        _ => {}
    }
}

/// Kick, ban, timeout, a lost CONNECT or SPEAK, a server mute: every 2 s each participant's
/// permissions are checked again; those who may no longer connect are removed from their
/// room, and muting follows SPEAK and the server mute.
async fn recheck_permissions(
    bus: &Arc<dyn EventBus>,
    sfu: &SfuHandle,
    db: &PgPool,
    peers: &mut HashMap<(u64, ParticipantId), Peer>,
) {
    let keys: Vec<((u64, ParticipantId), Id)> =
        peers.iter().map(|(k, p)| (*k, p.user_id)).collect();
    for (key, user_id) in keys {
        let access = voice_access(db, user_id, Id(key.0 as i64)).await;
        let Ok(access) = access else { continue }; // database hiccup: check again next time
        match access {
            Some(a) if a.connect => {
                // SPEAK lost or regained, or a moderator's server mute: follow it.
                if let Some(peer) = peers.get_mut(&key)
                    && peer.muted == a.speak
                    && sfu.set_muted(RoomId(key.0), key.1, !a.speak).await.is_ok()
                {
                    peer.muted = !a.speak;
                }
            }
            _ => {
                if let Some(peer) = peers.remove(&key) {
                    announce_left(bus, &peer, Id(key.0 as i64)).await;
                }
                let _ = sfu.kick(RoomId(key.0), key.1).await;
                tracing::info!(user_id = %user_id, room = key.0, "removed from voice: no longer allowed to connect");
            }
        }
    }
}

/// Applies a view-size request of `viewer` to every video track of the named user in `room`.
async fn set_view(
    sfu: &SfuHandle,
    peers: &HashMap<(u64, ParticipantId), Peer>,
    tracks: &HashMap<u64, Vec<TrackId>>,
    room: RoomId,
    viewer: ParticipantId,
    view: &Value,
) {
    let size = match view.get("size").and_then(Value::as_str) {
        Some("focus") => ViewSize::Focus,
        Some("hidden") => ViewSize::Hidden,
        Some("tile") => ViewSize::Tile,
        _ => return,
    };
    let Some(user) = view.get("user_id").and_then(Value::as_str) else {
        return;
    };
    let publishers: Vec<ParticipantId> = peers
        .iter()
        .filter(|((r, _), p)| *r == room.0 && p.user_id.to_string() == user)
        .map(|((_, pid), _)| *pid)
        .collect();
    for t in tracks.get(&room.0).into_iter().flatten() {
        if publishers.contains(&t.publisher) {
            let _ = sfu.set_view(room, viewer, *t, size).await;
        }
    }
}

async fn on_sfu_event(
    bus: &Arc<dyn EventBus>,
    peers: &mut HashMap<(u64, ParticipantId), Peer>,
    tracks: &mut HashMap<u64, Vec<TrackId>>,
    ev: SfuEvent,
) {
    let channel_id = Id(ev.room.0 as i64);
    match ev.event {
        RoomEvent::TrackPublished { track, kind } if kind != TrackKind::Audio => {
            tracks.entry(ev.room.0).or_default().push(track);
        }
        RoomEvent::TrackUnpublished { track } => {
            if let Some(v) = tracks.get_mut(&ev.room.0) {
                v.retain(|t| *t != track);
            }
        }
        RoomEvent::Offer { participant, sdp } => {
            if let Some(peer) = peers.get(&(ev.room.0, participant)) {
                signal_to(
                    bus,
                    peer,
                    channel_id,
                    SignalKind::Offer,
                    json!({"sdp": sdp}),
                )
                .await;
            }
        }
        RoomEvent::ActiveSpeakerChanged { participant } => {
            let speaker = participant.and_then(|p| peers.get(&(ev.room.0, p)));
            let place = peers
                .iter()
                .find(|((r, _), _)| *r == ev.room.0)
                .map(|(_, p)| p.server_id);
            if let Some(server_id) = place {
                let audience = match server_id {
                    Some(s) => Audience::Server(s),
                    None => Audience::Channel {
                        server_id: None,
                        channel_id,
                    },
                };
                let data = json!({"active_speaker": speaker.map(|p| p.user_id.to_string())});
                let ev = BusEvent::new(
                    vec![audience],
                    Event::VoiceSignal {
                        channel_id,
                        user_id: speaker.map(|p| p.user_id).unwrap_or(Id(0)),
                        session_id: String::new(),
                        kind: SignalKind::Other,
                        data,
                    },
                );
                let _ = bus.publish(&ev).await;
            }
        }
        RoomEvent::ParticipantLeft {
            participant,
            reason,
        } => {
            // A participant still known here did not leave through the gateway (that removes
            // it first): its connection failed or timed out, so nobody announced the leave.
            if let Some(peer) = peers.remove(&(ev.room.0, participant))
                && reason != LeaveReason::Left
            {
                announce_left(bus, &peer, channel_id).await;
            }
        }
        _ => {}
    }
}
