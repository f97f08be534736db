//! Voice states: who is connected to which voice channel (or DM call), with their
//! mute / deafen / video / stream flags, so that `ready` can list them.
//!
//! Each gateway session in voice has one entry, keyed by its session id, in the store of its
//! voice *place*: the server of the voice channel, or the DM channel of a DM call (server and
//! channel ids never collide). The gateway writes the entry when it accepts a
//! `voice_state_update` and on every heartbeat of the session, and removes it when the session
//! leaves voice (itself, or through a leave announced by the voice bridge) or ends for good.
//!
//! Entries carry an expiry pushed forward by those writes, like presence
//! ([`crate::presence`]): the entries of a node that died disappear by themselves.
//! [`MemoryVoiceStates`] serves one node; [`RedisVoiceStates`] shares the states across nodes
//! in one Redis hash per place whose key also expires without writes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use copains_wire::Id;
use copains_wire::events::Event;
use serde::{Deserialize, Serialize};

use crate::presence::unix_ms;

/// Most voice states sent in one `ready` (the rest arrive as live events only).
pub const MAX_READY_VOICE_STATES: usize = 5000;

/// One gateway session's voice state: the fields of the `voice_state_update` event (with a
/// channel), plus the entry's expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceState {
    /// The user.
    pub user_id: Id,
    /// The gateway session holding the voice connection.
    pub session_id: String,
    /// The server (`None` for a DM call).
    pub server_id: Option<Id>,
    /// The voice channel (or the DM channel of a call).
    pub channel_id: Id,
    /// Muted by themselves.
    pub self_mute: bool,
    /// Deafened by themselves.
    pub self_deaf: bool,
    /// Camera on.
    pub self_video: bool,
    /// Sharing their screen.
    pub self_stream: bool,
    /// When this entry expires unless written again (Unix ms); not sent to clients.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires_at_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl VoiceState {
    /// The place the state belongs to: the server, or the DM channel of a call.
    pub fn place(&self) -> Id {
        self.server_id.unwrap_or(self.channel_id)
    }

    /// The state as a client sees it (without the expiry).
    pub fn public(&self) -> Self {
        Self {
            expires_at_ms: 0,
            ..self.clone()
        }
    }

    /// The state a `voice_state_update` event with a channel describes.
    pub fn from_event(ev: &Event) -> Option<Self> {
        match ev {
            Event::VoiceStateUpdate {
                server_id,
                channel_id: Some(channel_id),
                user_id,
                session_id,
                self_mute,
                self_deaf,
                self_video,
                self_stream,
            } => Some(Self {
                user_id: *user_id,
                session_id: session_id.clone(),
                server_id: *server_id,
                channel_id: *channel_id,
                self_mute: *self_mute,
                self_deaf: *self_deaf,
                self_video: *self_video,
                self_stream: *self_stream,
                expires_at_ms: 0,
            }),
            _ => None,
        }
    }
}

/// Why voice states could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("voice state store: {0}")]
pub struct VoiceStateError(pub String);

/// Where voice states live.
#[async_trait]
pub trait VoiceStateStore: Send + Sync + 'static {
    /// Sets (or refreshes) the entry of `state.session_id` in `state.place()`.
    async fn set(&self, state: VoiceState) -> Result<(), VoiceStateError>;
    /// Removes the entry of session `session_id` from `place`.
    async fn remove(&self, place: Id, session_id: &str) -> Result<(), VoiceStateError>;
    /// The live entries of these places, at most `limit` of them.
    async fn list(&self, places: &[Id], limit: usize) -> Result<Vec<VoiceState>, VoiceStateError>;
}

/// Voice states in this process's memory (one node).
#[derive(Debug, Default)]
pub struct MemoryVoiceStates {
    places: Mutex<HashMap<Id, HashMap<String, VoiceState>>>,
}

impl MemoryVoiceStates {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl VoiceStateStore for MemoryVoiceStates {
    async fn set(&self, state: VoiceState) -> Result<(), VoiceStateError> {
        let now = unix_ms();
        let mut places = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        let p = places.entry(state.place()).or_default();
        p.insert(state.session_id.clone(), state);
        p.retain(|_, s| s.expires_at_ms > now);
        Ok(())
    }

    async fn remove(&self, place: Id, session_id: &str) -> Result<(), VoiceStateError> {
        let mut places = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = places.get_mut(&place) {
            p.remove(session_id);
            if p.is_empty() {
                places.remove(&place);
            }
        }
        Ok(())
    }

    async fn list(&self, places: &[Id], limit: usize) -> Result<Vec<VoiceState>, VoiceStateError> {
        let now = unix_ms();
        let map = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(places
            .iter()
            .filter_map(|p| map.get(p))
            .flat_map(|p| p.values())
            .filter(|s| s.expires_at_ms > now)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Voice states in Redis: hash `{prefix}:voice_states:{place}`, one field per gateway
/// session holding a JSON [`VoiceState`]; the key's TTL is pushed forward on every write.
pub struct RedisVoiceStates {
    prefix: String,
    conn: redis::aio::ConnectionManager,
    key_ttl: Duration,
}

impl std::fmt::Debug for RedisVoiceStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVoiceStates")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn verr(e: impl std::fmt::Display) -> VoiceStateError {
    VoiceStateError(e.to_string())
}

impl RedisVoiceStates {
    /// Connects to Redis at `url`; keys start with `prefix`; keys expire after `key_ttl`
    /// without writes (use a few heartbeat intervals).
    pub async fn connect(
        url: &str,
        prefix: &str,
        key_ttl: Duration,
    ) -> Result<Self, VoiceStateError> {
        let client = redis::Client::open(url).map_err(verr)?;
        let conn = crate::bus::connection_manager(&client)
            .await
            .map_err(verr)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            conn,
            key_ttl,
        })
    }

    fn key(&self, place: Id) -> String {
        format!("{}:voice_states:{place}", self.prefix)
    }
}

#[async_trait]
impl VoiceStateStore for RedisVoiceStates {
    async fn set(&self, state: VoiceState) -> Result<(), VoiceStateError> {
        let key = self.key(state.place());
        let value = serde_json::to_string(&state).map_err(verr)?;
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = redis::pipe()
            .atomic()
            .hset(&key, &state.session_id, value)
            .ignore()
            .pexpire(&key, self.key_ttl.as_millis() as i64)
            .ignore()
            .hgetall(&key)
            .query_async::<(HashMap<String, String>,)>(&mut c)
            .await
            .map_err(verr)?
            .0;
        // Entries of sessions whose node died (never refreshed) go on the next write.
        let now = unix_ms();
        let dead: Vec<&String> = all
            .iter()
            .filter(|(_, v)| {
                serde_json::from_str::<VoiceState>(v).map_or(true, |s| s.expires_at_ms <= now)
            })
            .map(|(k, _)| k)
            .collect();
        if !dead.is_empty() {
            redis::cmd("HDEL")
                .arg(&key)
                .arg(dead)
                .query_async::<()>(&mut c)
                .await
                .map_err(verr)?;
        }
        Ok(())
    }

    async fn remove(&self, place: Id, session_id: &str) -> Result<(), VoiceStateError> {
        redis::cmd("HDEL")
            .arg(self.key(place))
            .arg(session_id)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(verr)
    }

    async fn list(&self, places: &[Id], limit: usize) -> Result<Vec<VoiceState>, VoiceStateError> {
        if places.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for p in places {
            pipe.hgetall(self.key(*p));
        }
        let raws: Vec<HashMap<String, String>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(verr)?;
        let now = unix_ms();
        Ok(raws
            .iter()
            .flat_map(|r| r.values())
            .filter_map(|v| serde_json::from_str::<VoiceState>(v).ok())
            .filter(|s| s.expires_at_ms > now)
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(session: &str, server: Option<i64>, channel: i64, expires_at_ms: u64) -> VoiceState {
        VoiceState {
            user_id: Id(1),
            session_id: session.into(),
            server_id: server.map(Id),
            channel_id: Id(channel),
            self_mute: true,
            self_deaf: false,
            self_video: false,
            self_stream: false,
            expires_at_ms,
        }
    }

    #[tokio::test]
    async fn memory_store_lists_live_entries_of_the_places_asked() {
        let s = MemoryVoiceStates::new();
        let later = unix_ms() + 60_000;
        s.set(st("a", Some(10), 11, later)).await.unwrap();
        s.set(st("b", None, 20, later)).await.unwrap();
        s.set(st("c", Some(30), 31, 1)).await.unwrap(); // expired
        let l = s.list(&[Id(10), Id(20), Id(30)], 10).await.unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(s.list(&[Id(10), Id(20)], 1).await.unwrap().len(), 1);
        s.remove(Id(10), "a").await.unwrap();
        let l = s.list(&[Id(10), Id(20)], 10).await.unwrap();
        assert_eq!(l, vec![st("b", None, 20, later)]);
        assert!(l[0].public().expires_at_ms == 0);
    }
}
