//! The presence snapshot sent on `subscribe_members`: who of a server's members is online
//! right now, so that a client opening a server's member list does not show everyone offline
//! until they change status (presence is only published when it changes).
//!
//! Bounded twice: at most [`SnapshotLimits::scan`] members are looked up (from the
//! [`Directory`], in a stable order), and at most [`SnapshotLimits::max`] online ones are
//! sent. When either bound cuts, the snapshot says `truncated` and the client learns the
//! others from live `presence_update`s.

use copains_wire::Id;
use copains_wire::events::{MemberPresence, PresenceStatus};

use crate::directory::Directory;
use crate::presence::PresenceStore;

/// Members whose presence is read per round trip to the presence store.
const CHUNK: usize = 1000;

/// Bounds of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// Most members looked up.
    pub scan: usize,
    /// Most online members sent.
    pub max: usize,
}

/// A server's online members, as sent in `presence_snapshot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Online (online, idle, dnd) members, in the directory's order.
    pub presences: Vec<MemberPresence>,
    /// Some online members may be missing (a bound was reached).
    pub truncated: bool,
}

/// Reads the current presence of `server_id`'s online members within `limits`.
pub async fn snapshot(
    directory: &dyn Directory,
    presence: &dyn PresenceStore,
    server_id: Id,
    limits: SnapshotLimits,
) -> Result<Snapshot, String> {
    let mut members = directory
        .member_ids(server_id, limits.scan.saturating_add(1))
        .await
        .map_err(|e| e.to_string())?;
    let mut truncated = members.len() > limits.scan;
    members.truncate(limits.scan);
    let mut presences = Vec::new();
    for chunk in members.chunks(CHUNK) {
        let list = presence.get(chunk).await.map_err(|e| e.to_string())?;
        for p in list {
            if matches!(
                p.status,
                PresenceStatus::Offline | PresenceStatus::Invisible
            ) {
                continue;
            }
            if presences.len() == limits.max {
                truncated = true;
                break;
            }
            presences.push(MemberPresence {
                user_id: p.user_id,
                status: p.status,
                custom_status: p.custom_status,
            });
        }
        if presences.len() == limits.max && truncated {
            break;
        }
    }
    Ok(Snapshot {
        presences,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{MemoryDirectory, Visibility};
    use crate::presence::{ConnPresence, MemoryPresence};

    #[tokio::test]
    async fn only_online_members_within_the_bounds() {
        let dir = MemoryDirectory::new();
        let pres = MemoryPresence::new();
        let server = Id(500);
        for u in 1..=6 {
            dir.set_visibility(
                Id(u),
                Visibility {
                    servers: vec![server],
                    ..Default::default()
                },
            );
        }
        dir.set_visibility(Id(7), Visibility::default()); // not a member
        for (u, status) in [
            (1, PresenceStatus::Online),
            (2, PresenceStatus::Invisible),
            (3, PresenceStatus::Dnd),
            (5, PresenceStatus::Idle),
            (7, PresenceStatus::Online),
        ] {
            let p = ConnPresence {
                status,
                custom_status: None,
                set_at_ms: 1,
                expires_at_ms: u64::MAX,
            };
            pres.set(Id(u), 1, p).await.unwrap();
        }
        let all = SnapshotLimits {
            scan: 100,
            max: 100,
        };
        let s = snapshot(&dir, &pres, server, all).await.unwrap();
        let ids: Vec<i64> = s.presences.iter().map(|p| p.user_id.0).collect();
        assert_eq!(ids, vec![1, 3, 5]);
        assert!(!s.truncated);
        let few = SnapshotLimits { scan: 100, max: 2 };
        let s = snapshot(&dir, &pres, server, few).await.unwrap();
        assert_eq!(s.presences.len(), 2);
        assert!(s.truncated);
        let scan = SnapshotLimits { scan: 4, max: 100 };
        let s = snapshot(&dir, &pres, server, scan).await.unwrap();
        assert_eq!(s.presences.len(), 2);
        assert!(
            s.truncated,
            "members past the scan bound were not looked up"
        );
    }
}
