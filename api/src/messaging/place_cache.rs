//! A per-process cache of resolved [`Place`]s — the place and the caller's permissions in it —
//! for the hot messaging routes (send, history), keyed by `(user, place)`.
//!
//! Correctness first:
//! - every event this process publishes that can change what a user may do somewhere (roles,
//!   overwrites, members, timeouts, channels, threads, servers, DM membership: every event
//!   except message contents, reactions, read states, whiteboard strokes, typing, presence,
//!   voice and device traffic) moves the cache to a new epoch, which makes every entry stale at once — a
//!   revocation made through this node takes effect on the next request;
//! - an entry is filled only if no such event was published while its row was being read
//!   (the epoch is taken before the query), so a concurrent revocation cannot be overwritten
//!   by an older answer;
//! - entries live at most [`PLACE_TTL`]: changes made by another api node (or outside the
//!   api) take effect here within that time, the same bound as the session cache
//!   ([`crate::auth_cache::SESSION_TTL`]).
//!
//! Invisible places (404) are not cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use copains_wire::Id;
use copains_wire::events::Event;

use super::place::Place;

/// How long a resolved place is trusted without asking the database again.
pub const PLACE_TTL: Duration = Duration::from_secs(1);
/// Most entries (cleared wholesale when full: a cache, not a store).
pub const MAX_ENTRIES: usize = 20_000;

/// The cache; see the module documentation.
#[derive(Debug, Default)]
pub struct PlaceCache {
    epoch: AtomicU64,
    map: Mutex<HashMap<(i64, i64), Entry>>,
}

#[derive(Debug)]
struct Entry {
    place: Arc<Place>,
    epoch: u64,
    at: Instant,
}

impl PlaceCache {
    /// The current epoch; take it before reading what [`PlaceCache::put`] will store.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The place `channel` as resolved for `user`, if cached, fresh and of this epoch.
    pub fn get(&self, user: Id, channel: Id) -> Option<Arc<Place>> {
        let epoch = self.epoch();
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(user.0, channel.0))
            .filter(|e| e.epoch == epoch && e.at.elapsed() < PLACE_TTL)
            .map(|e| e.place.clone())
    }

    /// Stores `place`, read from the database after [`PlaceCache::epoch`] returned `epoch`;
    /// nothing when an invalidating event was published since.
    pub fn put(&self, user: Id, channel: Id, place: Arc<Place>, epoch: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: `invalidate` bumps the epoch, then clears under it.
        if self.epoch() != epoch {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            (user.0, channel.0),
            Entry {
                place,
                epoch,
                at: Instant::now(),
            },
        );
    }

    /// Makes every entry stale (a permission-relevant change was committed).
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.clear();
    }

    /// Invalidates when `event` can change what someone may do in a place.
    pub fn observe(&self, event: &Event) {
        if changes_places(event) {
            self.invalidate();
        }
    }
}

/// Whether `event` can change a place or anyone's rights in it. Only message traffic,
/// reactions, read states, whiteboard strokes, typing, presence, voice and device events
/// cannot; anything else
/// (including event kinds added later) invalidates.
pub fn changes_places(event: &Event) -> bool {
    !matches!(
        event,
        Event::MessageCreate { .. }
            | Event::MessageUpdate { .. }
            | Event::MessageDelete { .. }
            | Event::ReactionAdd { .. }
            | Event::ReactionRemove { .. }
            | Event::ReadStateUpdate { .. }
            | Event::WhiteboardStroke { .. }
            | Event::WhiteboardClear { .. }
            | Event::TypingStart { .. }
            | Event::PresenceUpdate { .. }
            | Event::VoiceStateUpdate { .. }
            | Event::VoiceSignal { .. }
            | Event::ToDevice { .. }
            | Event::DeviceKeysChanged { .. }
    )
}
