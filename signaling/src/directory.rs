//! What a user may see: the gateway asks a [`Directory`] (implemented by the api over
//! PostgreSQL) when a connection identifies and whenever a `scope_changed` event says the
//! user's permissions or memberships changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A server channel the user may view (VIEW_CHANNEL after roles and overwrites).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VisibleChannel {
    /// The channel.
    pub id: Id,
    /// Its server.
    pub server_id: Id,
}

/// Everything a user's connections may receive events of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visibility {
    /// Servers the user is a member of.
    pub servers: Vec<Id>,
    /// Of those, the large ones: member presence there only goes to clients that sent
    /// `subscribe_members`.
    #[serde(default)]
    pub large_servers: Vec<Id>,
    /// Server channels the user may view.
    pub channels: Vec<VisibleChannel>,
    /// DM and group DM channels the user is a recipient of.
    pub dm_channels: Vec<Id>,
    /// The user's friends (they see each other's presence).
    pub friends: Vec<Id>,
    /// Members of the user's small servers (bounded): their current presence goes into
    /// `ready` (live changes arrive through the servers' topics).
    #[serde(default)]
    pub co_members: Vec<Id>,
}

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct DirectoryError(pub String);

/// The gateway's view of the database.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The `ready` payload for this user: me, my servers with channels, roles and read
    /// states, my DMs, my friends, pending to-device messages… (the api's shape; the gateway
    /// adds `session_id` and `presences`).
    async fn ready_payload(&self, user_id: Id) -> Result<Value, DirectoryError>;
    /// What this user may currently see.
    async fn visible(&self, user_id: Id) -> Result<Visibility, DirectoryError>;
    /// Whether the login session (the token's `sid`) belongs to `user_id` (the token's `sub`)
    /// and is still active (not logged out or revoked). A session of another user is not.
    async fn is_session_active(&self, user_id: Id, session_id: Id) -> Result<bool, DirectoryError>;
    /// Acknowledges to-device messages of `device_id` up to and including `up_to`
    /// (the api deletes them from the queue).
    async fn ack_to_device(
        &self,
        user_id: Id,
        device_id: &str,
        up_to: i64,
    ) -> Result<(), DirectoryError>;
}

/// An in-memory [`Directory`], for tests and single-process demos.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    visibility: HashMap<Id, Visibility>,
    revoked: HashSet<Id>,
    owners: HashMap<Id, Id>,
    acks: Vec<(Id, String, i64)>,
}

impl MemoryDirectory {
    /// An empty directory (every user sees nothing, every session is active).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what `user` may see.
    pub fn set_visibility(&self, user: Id, v: Visibility) {
        self.lock().visibility.insert(user, v);
    }

    /// Records that login session `sid` belongs to `user` (sessions without a recorded owner
    /// are taken to belong to whoever presents them).
    pub fn set_session_owner(&self, sid: Id, user: Id) {
        self.lock().owners.insert(sid, user);
    }

    /// Marks a login session as revoked.
    pub fn revoke_session(&self, sid: Id) {
        self.lock().revoked.insert(sid);
    }

    /// The to-device acknowledgements received so far (user, device, up_to).
    pub fn acks(&self) -> Vec<(Id, String, i64)> {
        self.lock().acks.clone()
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn ready_payload(&self, user_id: Id) -> Result<Value, DirectoryError> {
        let v = self
            .lock()
            .visibility
            .get(&user_id)
            .cloned()
            .unwrap_or_default();
        Ok(
            serde_json::json!({ "user": { "id": user_id }, "servers": v.servers, "dm_channels": v.dm_channels }),
        )
    }

    async fn visible(&self, user_id: Id) -> Result<Visibility, DirectoryError> {
        Ok(self
            .lock()
            .visibility
            .get(&user_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn is_session_active(&self, user_id: Id, session_id: Id) -> Result<bool, DirectoryError> {
        let inner = self.lock();
        let owner_ok = inner.owners.get(&session_id).is_none_or(|o| *o == user_id);
        Ok(owner_ok && !inner.revoked.contains(&session_id))
    }

    async fn ack_to_device(
        &self,
        user_id: Id,
        device_id: &str,
        up_to: i64,
    ) -> Result<(), DirectoryError> {
        self.lock()
            .acks
            .push((user_id, device_id.to_owned(), up_to));
        Ok(())
    }
}
