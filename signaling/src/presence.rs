//! Presence: each connection sets a status (online / idle / dnd / invisible) and an
//! optional custom status; a user's presence is the aggregate over their live connections
//! (any node): offline when there is none, otherwise the "most present" status
//! (dnd > online > idle > invisible), and the most recently set custom status.
//! Others see `invisible` as `offline`.
//!
//! [`MemoryPresence`] serves one node; [`RedisPresence`] shares presence across nodes in
//! Redis hashes whose entries carry an expiry refreshed by heartbeats, so the connections of
//! a node that died disappear by themselves.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use copains_wire::Id;
use copains_wire::events::PresenceStatus;
use serde::{Deserialize, Serialize};

/// Longest custom status accepted, in characters.
pub const MAX_CUSTOM_STATUS_CHARS: usize = 128;

/// One connection's presence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnPresence {
    /// The chosen status (never `offline`).
    pub status: PresenceStatus,
    /// Custom status text.
    pub custom_status: Option<String>,
    /// When it was set (Unix ms): the latest custom status wins.
    pub set_at_ms: u64,
    /// When this entry expires unless refreshed (Unix ms).
    pub expires_at_ms: u64,
}

/// A user's aggregated presence, as seen by others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    /// The user.
    pub user_id: Id,
    /// What others see (`invisible` shown as `offline`).
    pub status: PresenceStatus,
    /// Custom status (none when offline).
    pub custom_status: Option<String>,
}

/// Why presence could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("presence store: {0}")]
pub struct PresenceError(pub String);

/// The current Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Aggregates the live entries of one user (what others see).
pub fn aggregate<'a>(
    user_id: Id,
    entries: impl IntoIterator<Item = &'a ConnPresence>,
    now_ms: u64,
) -> UserPresence {
    fn rank(s: PresenceStatus) -> u8 {
        match s {
            PresenceStatus::Dnd => 4,
            PresenceStatus::Online => 3,
            PresenceStatus::Idle => 2,
            PresenceStatus::Invisible => 1,
            PresenceStatus::Offline => 0,
        }
    }
    let mut best = PresenceStatus::Offline;
    let mut latest: Option<&ConnPresence> = None;
    for e in entries.into_iter().filter(|e| e.expires_at_ms > now_ms) {
        if rank(e.status) > rank(best) {
            best = e.status;
        }
        if e.status != PresenceStatus::Invisible
            && latest.is_none_or(|l| e.set_at_ms >= l.set_at_ms)
        {
            latest = Some(e);
        }
    }
    let status = if best == PresenceStatus::Invisible {
        PresenceStatus::Offline
    } else {
        best
    };
    let custom_status = if status == PresenceStatus::Offline {
        None
    } else {
        latest.and_then(|l| l.custom_status.clone())
    };
    UserPresence {
        user_id,
        status,
        custom_status,
    }
}

/// Where presence lives.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Sets (or refreshes) connection `conn` of `user`; returns the aggregate before and after.
    async fn set(
        &self,
        user: Id,
        conn: u64,
        p: ConnPresence,
    ) -> Result<(UserPresence, UserPresence), PresenceError>;
    /// Removes connection `conn` of `user`; returns the aggregate before and after.
    async fn remove(
        &self,
        user: Id,
        conn: u64,
    ) -> Result<(UserPresence, UserPresence), PresenceError>;
    /// Pushes the expiry of connection `conn` of `user` to `expires_at_ms` (heartbeat).
    async fn refresh(&self, user: Id, conn: u64, expires_at_ms: u64) -> Result<(), PresenceError>;
    /// The aggregated presence of these users (offline ones included).
    async fn get(&self, users: &[Id]) -> Result<Vec<UserPresence>, PresenceError>;
}

/// Presence in this process's memory (one node).
#[derive(Debug, Default)]
pub struct MemoryPresence {
    users: Mutex<HashMap<Id, HashMap<u64, ConnPresence>>>,
}

impl MemoryPresence {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn set(
        &self,
        user: Id,
        conn: u64,
        p: ConnPresence,
    ) -> Result<(UserPresence, UserPresence), PresenceError> {
        let now = unix_ms();
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let e = users.entry(user).or_default();
        let before = aggregate(user, e.values(), now);
        e.insert(conn, p);
        e.retain(|_, c| c.expires_at_ms > now);
        Ok((before, aggregate(user, e.values(), now)))
    }

    async fn remove(
        &self,
        user: Id,
        conn: u64,
    ) -> Result<(UserPresence, UserPresence), PresenceError> {
        let now = unix_ms();
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = users.get_mut(&user) else {
            let off = aggregate(user, [], now);
            return Ok((off.clone(), off));
        };
        let before = aggregate(user, e.values(), now);
        e.remove(&conn);
        let after = aggregate(user, e.values(), now);
        if e.is_empty() {
            users.remove(&user);
        }
        Ok((before, after))
    }

    async fn refresh(&self, user: Id, conn: u64, expires_at_ms: u64) -> Result<(), PresenceError> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = users.get_mut(&user).and_then(|e| e.get_mut(&conn)) {
            c.expires_at_ms = expires_at_ms;
        }
        Ok(())
    }

    async fn get(&self, list: &[Id]) -> Result<Vec<UserPresence>, PresenceError> {
        let now = unix_ms();
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(list
            .iter()
            .map(|u| match users.get(u) {
                Some(e) => aggregate(*u, e.values(), now),
                None => aggregate(*u, [], now),
            })
            .collect())
    }
}

/// Presence in Redis: hash `{prefix}:presence:{user}`, one field per connection holding a
/// JSON [`ConnPresence`]; the key's TTL is pushed forward on every write.
pub struct RedisPresence {
    prefix: String,
    conn: redis::aio::ConnectionManager,
    key_ttl: Duration,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn perr(e: impl std::fmt::Display) -> PresenceError {
    PresenceError(e.to_string())
}

impl RedisPresence {
    /// Connects to Redis at `url`; keys start with `prefix`; keys expire after `key_ttl`
    /// without writes (use a few heartbeat intervals).
    pub async fn connect(
        url: &str,
        prefix: &str,
        key_ttl: Duration,
    ) -> Result<Self, PresenceError> {
        let client = redis::Client::open(url).map_err(perr)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let conn = redis::aio::ConnectionManager::new_with_config(client, cfg)
            .await
            .map_err(perr)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            conn,
            key_ttl,
        })
    }

    fn key(&self, user: Id) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    fn parse(user: Id, raw: &HashMap<String, String>, now: u64) -> UserPresence {
        let entries: Vec<ConnPresence> = raw
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        aggregate(user, entries.iter(), now)
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn set(
        &self,
        user: Id,
        conn: u64,
        p: ConnPresence,
    ) -> Result<(UserPresence, UserPresence), PresenceError> {
        let key = self.key(user);
        let value = serde_json::to_string(&p).map_err(perr)?;
        let ttl_ms = self.key_ttl.as_millis() as u64;
        let (before, after): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .hgetall(&key)
            .hset(&key, conn, value)
            .ignore()
            .pexpire(&key, ttl_ms as i64)
            .ignore()
            .hgetall(&key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(perr)?;
        let now = unix_ms();
        Ok((
            Self::parse(user, &before, now),
            Self::parse(user, &after, now),
        ))
    }

    async fn remove(
        &self,
        user: Id,
        conn: u64,
    ) -> Result<(UserPresence, UserPresence), PresenceError> {
        let key = self.key(user);
        let (before, after): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .hgetall(&key)
            .hdel(&key, conn)
            .ignore()
            .hgetall(&key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(perr)?;
        let now = unix_ms();
        Ok((
            Self::parse(user, &before, now),
            Self::parse(user, &after, now),
        ))
    }

    async fn refresh(&self, user: Id, conn: u64, expires_at_ms: u64) -> Result<(), PresenceError> {
        let key = self.key(user);
        let mut c = self.conn.clone();
        let cur: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg(conn)
            .query_async(&mut c)
            .await
            .map_err(perr)?;
        let Some(mut p) = cur.and_then(|s| serde_json::from_str::<ConnPresence>(&s).ok()) else {
            return Ok(());
        };
        p.expires_at_ms = expires_at_ms;
        let value = serde_json::to_string(&p).map_err(perr)?;
        redis::pipe()
            .hset(&key, conn, value)
            .ignore()
            .pexpire(&key, self.key_ttl.as_millis() as i64)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(perr)
    }

    async fn get(&self, users: &[Id]) -> Result<Vec<UserPresence>, PresenceError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.hgetall(self.key(*u));
        }
        let raws: Vec<HashMap<String, String>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(perr)?;
        let now = unix_ms();
        Ok(users
            .iter()
            .zip(raws.iter())
            .map(|(u, r)| Self::parse(*u, r, now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(status: PresenceStatus, custom: Option<&str>, at: u64) -> ConnPresence {
        ConnPresence {
            status,
            custom_status: custom.map(Into::into),
            set_at_ms: at,
            expires_at_ms: u64::MAX,
        }
    }

    #[test]
    fn aggregation_rules() {
        let u = Id(1);
        assert_eq!(aggregate(u, [], 0).status, PresenceStatus::Offline);
        let a = [
            p(PresenceStatus::Idle, Some("lunch"), 1),
            p(PresenceStatus::Online, None, 2),
        ];
        let agg = aggregate(u, a.iter(), 0);
        assert_eq!(agg.status, PresenceStatus::Online);
        assert_eq!(agg.custom_status, None);
        let inv = [p(PresenceStatus::Invisible, Some("secret"), 5)];
        assert_eq!(
            aggregate(u, inv.iter(), 0),
            UserPresence {
                user_id: u,
                status: PresenceStatus::Offline,
                custom_status: None
            }
        );
        let mut expired = p(PresenceStatus::Dnd, None, 1);
        expired.expires_at_ms = 10;
        assert_eq!(aggregate(u, [&expired], 11).status, PresenceStatus::Offline);
    }

    #[tokio::test]
    async fn memory_store_online_while_any_connection() {
        let s = MemoryPresence::new();
        let u = Id(7);
        let (b, a) = s
            .set(u, 1, p(PresenceStatus::Online, None, 1))
            .await
            .unwrap();
        assert_eq!(
            (b.status, a.status),
            (PresenceStatus::Offline, PresenceStatus::Online)
        );
        s.set(u, 2, p(PresenceStatus::Idle, None, 2)).await.unwrap();
        let (_, a) = s.remove(u, 1).await.unwrap();
        assert_eq!(a.status, PresenceStatus::Idle);
        let (_, a) = s.remove(u, 2).await.unwrap();
        assert_eq!(a.status, PresenceStatus::Offline);
    }
}
