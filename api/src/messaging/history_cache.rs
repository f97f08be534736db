//! A per-node cache of history pages: for each place, the messages of the id ranges recently
//! read ("spans"), so repeated reads of the same stretch of history are answered from memory.
//! Sans-IO: the database side is in [`super::messages::history`], which asks this cache
//! first and fills it after a miss.
//!
//! Correctness rests on three facts:
//! - **Ids are ordered per place.** An insert takes `max(generated, last id + 1)` under the
//!   place's `channel_heads` row lock, so a message committed after a read has a larger id
//!   than the head that read saw (`channel_heads.last_message_id`, read in the same
//!   statement). A span that ends at or below that head is therefore complete *forever*
//!   (until an edit, delete or reaction changes a message in it). A span reaching past the
//!   head is "open": complete only until the next create, and for at most [`HEAD_TTL`].
//! - **Every change this node makes invalidates first-hand.** Creates close the open span;
//!   edits, pins, deletes and reactions cut their message out of its span (the span splits
//!   and the next read of that stretch goes to the database); anything else that could alter
//!   a stored message (bans that purge, account deletions, events of unknown kinds) empties
//!   the cache. [`HistoryCache::observe`] does it for every event this node publishes, and
//!   [`WriteGuard`]s do it when a request is cancelled between its commit and its event.
//! - **A fill never overwrites a newer invalidation.** A miss takes a [`Ticket`] (the place's
//!   generation) before its query; [`HistoryCache::fill`] drops the result when the place was
//!   invalidated meanwhile.
//!
//! With one node (the in-process bus) every writer is in this process. With several api
//! nodes (Redis), [`super::history_sync`] carries each node's invalidations to the others and
//! keeps the cache off whenever that link is down. [`CHANNEL_TTL`] (shorter with several
//! nodes) bounds what a missed invalidation (a write outside the api) could leave stale. Memory is bounded by [`MAX_BYTES`] and
//! [`MAX_CHANNELS`] (least recently used places go first).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use copains_wire::Id;
use copains_wire::events::Event;

use super::Message;

/// How long a span reaching past the head stays trusted without a create closing it.
pub const HEAD_TTL: Duration = Duration::from_secs(2);
/// How long a place's cached history lives, whatever happens.
pub const CHANNEL_TTL: Duration = Duration::from_secs(30);
/// Most bytes of cached message JSON on this node.
pub const MAX_BYTES: usize = 64 << 20;
/// Most places cached on this node.
pub const MAX_CHANNELS: usize = 10_000;
/// Most reactors of one message kept to answer `me` from memory (more: looked up per read).
pub const MAX_REACTORS: usize = 256;

/// One emoji's reactions on a cached message.
#[derive(Debug, Clone)]
pub struct CachedReaction {
    /// The emoji, already as a JSON string.
    emoji_json: Box<str>,
    /// The emoji itself.
    emoji: Box<str>,
    count: i64,
    /// Who reacted (sorted), when the message has at most [`MAX_REACTORS`] reactions.
    reactors: Option<Box<[i64]>>,
}

/// A message as cached: its JSON without `reactions`, and its reactions.
#[derive(Debug, Clone)]
pub struct CachedMessage {
    /// Message id.
    pub id: i64,
    /// `{"id":…,…` — every field but `reactions`, without the closing brace.
    head_json: Box<str>,
    reactions: Vec<CachedReaction>,
}

/// One reaction row group of a message: emoji, count and (when small) who reacted.
#[derive(Debug, Clone)]
pub struct ReactionGroup {
    /// The emoji.
    pub emoji: String,
    /// How many reacted.
    pub count: i64,
    /// Who reacted, when known (at most [`MAX_REACTORS`] on the message).
    pub reactors: Option<Vec<i64>>,
}

impl CachedMessage {
    /// Builds the cached form of `message` (its `reactions` are ignored: `groups` replace them,
    /// in first-reaction order).
    pub fn new(message: &Message, groups: Vec<ReactionGroup>) -> Result<Self, serde_json::Error> {
        let mut value = serde_json::to_value(message)?;
        if let Some(o) = value.as_object_mut() {
            o.remove("reactions");
        }
        let mut head = serde_json::to_string(&value)?;
        head.pop(); // the closing brace
        let total: i64 = groups.iter().map(|g| g.count).sum();
        let reactions = groups
            .into_iter()
            .map(|g| {
                Ok(CachedReaction {
                    emoji_json: serde_json::to_string(&g.emoji)?.into(),
                    emoji: g.emoji.into(),
                    count: g.count,
                    reactors: g
                        .reactors
                        .filter(|_| total <= MAX_REACTORS as i64)
                        .map(|mut r| {
                            r.sort_unstable();
                            r.into_boxed_slice()
                        }),
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self {
            id: message.id.0,
            head_json: head.into(),
            reactions,
        })
    }

    /// Whether `me` of some reaction needs the reader's reactions from the database.
    pub fn needs_lookup(&self) -> bool {
        self.reactions.iter().any(|r| r.reactors.is_none())
    }

    /// Appends this message's JSON as `viewer` sees it; `mine` holds `(message, emoji)` of
    /// the viewer's reactions for messages whose reactors are not kept.
    pub fn write_json(&self, viewer: i64, mine: &HashSet<(i64, String)>, out: &mut String) {
        out.push_str(&self.head_json);
        out.push_str(",\"reactions\":[");
        for (i, r) in self.reactions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let me = match &r.reactors {
                Some(users) => users.binary_search(&viewer).is_ok(),
                None => mine.contains(&(self.id, r.emoji.to_string())),
            };
            out.push_str("{\"emoji\":");
            out.push_str(&r.emoji_json);
            out.push_str(",\"count\":");
            out.push_str(&r.count.to_string());
            out.push_str(if me {
                ",\"me\":true}"
            } else {
                ",\"me\":false}"
            });
        }
        out.push_str("]}");
    }

    fn bytes(&self) -> usize {
        96 + self.head_json.len()
            + self
                .reactions
                .iter()
                .map(|r| {
                    48 + r.emoji_json.len()
                        + r.emoji.len()
                        + r.reactors.as_ref().map_or(0, |u| u.len() * 8)
                })
                .sum::<usize>()
    }
}

/// What a page asks for, in the terms of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Up to `n` messages with `id <= upper`, nearest first (descending).
    Down {
        /// Highest id included.
        upper: i64,
        /// How many.
        n: usize,
    },
    /// Up to `n` messages with `id > lower`, nearest first (ascending).
    Up {
        /// Lowest id excluded.
        lower: i64,
        /// How many.
        n: usize,
    },
}

/// What a database read of a [`Range`] proved, to [`HistoryCache::fill`] the cache with.
#[derive(Debug)]
pub struct Fill {
    /// The range that was read.
    pub range: Range,
    /// The messages it returned, in the order it returned them.
    pub messages: Vec<Arc<CachedMessage>>,
    /// `channel_heads.last_message_id` read in the same statement (0: no message yet).
    pub head: i64,
}

impl Fill {
    /// The span the read proves complete: `(lo, hi)` inclusive, `hi == i64::MAX` when it
    /// reaches past the head (open). `None`: nothing worth keeping.
    fn span(&self) -> Option<(i64, i64)> {
        let ids = || self.messages.iter().map(|m| m.id);
        match self.range {
            Range::Down { upper, n } => {
                let lo = if self.messages.len() >= n {
                    ids().min()?
                } else {
                    i64::MIN
                };
                // Everything in [lo, upper] existed at the read; ids committed later are
                // above `head`, so [lo, upper] stays complete when upper <= head, and with
                // upper >= head nothing lay above head at the read either.
                let hi = if upper <= self.head { upper } else { i64::MAX };
                (lo <= hi).then_some((lo, hi))
            }
            Range::Up { lower, n } => {
                let lo = lower.checked_add(1)?;
                let hi = if self.messages.len() >= n {
                    ids().max()?
                } else {
                    i64::MAX
                };
                (lo <= hi).then_some((lo, hi))
            }
        }
    }
}

/// What a miss must hand back to [`HistoryCache::fill`]: the place's cache instance and
/// generation when the read began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    channel: i64,
    instance: u64,
    generation: u64,
}

/// What a change invalidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A message was (or may have been) created in this place: the open span closes.
    Create(i64),
    /// This message of this place changed or went: it leaves its span.
    Message(i64, i64),
    /// Anything may have changed: the whole cache empties.
    All,
}

/// The cached history of one place.
#[derive(Debug)]
struct Place {
    instance: u64,
    generation: u64,
    created: Instant,
    used: Instant,
    /// `lo -> hi`, inclusive, disjoint and not adjacent; `hi == i64::MAX`: open.
    spans: BTreeMap<i64, i64>,
    /// When the open span was last proved; the head it was proved against (always
    /// `seen_head`).
    open: Option<(Instant, i64)>,
    /// The highest head any accepted read saw: no cached message is above it.
    seen_head: i64,
    messages: BTreeMap<i64, Arc<CachedMessage>>,
    bytes: usize,
}

impl Place {
    fn new(instance: u64, now: Instant) -> Self {
        Self {
            instance,
            generation: 0,
            created: now,
            used: now,
            spans: BTreeMap::new(),
            open: None,
            seen_head: 0,
            messages: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// The span holding `id`, if any.
    fn span_of(&self, id: i64) -> Option<(i64, i64)> {
        self.spans
            .range(..=id)
            .next_back()
            .map(|(lo, hi)| (*lo, *hi))
            .filter(|(_, hi)| *hi >= id)
    }

    /// Closes the open span at the head it was proved against.
    fn close_open(&mut self) {
        // Only the open span reaches past the head (and exists only with `open`).
        let Some((_, head)) = self.open.take() else {
            return;
        };
        let open: Vec<i64> = self
            .spans
            .iter()
            .filter(|(_, hi)| **hi == i64::MAX)
            .map(|(lo, _)| *lo)
            .collect();
        for lo in open {
            if head >= lo {
                self.spans.insert(lo, head);
            } else {
                self.spans.remove(&lo);
            }
        }
        self.drop_uncovered_above(head);
    }

    /// Forgets messages above `head` that no span covers any more.
    fn drop_uncovered_above(&mut self, head: i64) {
        let above: Vec<i64> = self
            .messages
            .range((Bound::Excluded(head), Bound::Unbounded))
            .map(|(id, _)| *id)
            .filter(|id| self.span_of(*id).is_none())
            .collect();
        for id in above {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: i64) {
        if let Some(m) = self.messages.remove(&id) {
            self.bytes = self.bytes.saturating_sub(m.bytes());
        }
    }

    /// Takes `id` out of its span (which splits around it).
    fn cut(&mut self, id: i64) {
        self.forget(id);
        if let Some((lo, hi)) = self.span_of(id) {
            self.spans.remove(&lo);
            if lo < id {
                self.spans.insert(lo, id - 1);
            }
            if id < hi {
                self.spans.insert(id + 1, hi);
            }
        }
    }

    /// The open span has outlived [`HEAD_TTL`]: close it.
    fn expire_open(&mut self, now: Instant) {
        if self
            .open
            .is_some_and(|(at, _)| now.duration_since(at) >= HEAD_TTL)
        {
            self.close_open();
        }
    }

    /// Records a read's span and messages (merging with overlapping and adjacent spans).
    ///
    /// A read that saw a newer head than the open span was proved against closes that span
    /// first (messages committed in between are not in it); an open read that saw an older
    /// head than what is cached is kept only up to its head (the cache may already hold
    /// newer messages, and the ones between would be missing).
    fn add(&mut self, fill: Fill, now: Instant) {
        if fill.head > self.seen_head {
            if self.open.is_some() {
                self.close_open();
            }
            self.seen_head = fill.head;
        }
        let Some((mut lo, mut hi)) = fill.span() else {
            return;
        };
        if hi == i64::MAX {
            if fill.head < self.seen_head {
                hi = fill.head;
                if lo > hi {
                    return;
                }
            } else {
                self.open = Some((now, fill.head));
            }
        }
        for m in fill.messages {
            if m.id >= lo && m.id <= hi {
                let add = m.bytes();
                if let Some(old) = self.messages.insert(m.id, m) {
                    self.bytes = self.bytes.saturating_sub(old.bytes());
                }
                self.bytes += add;
            }
        }
        // Merge every span that overlaps or touches [lo, hi].
        let touching: Vec<(i64, i64)> = self
            .spans
            .range(..=hi.saturating_add(1))
            .filter(|(_, h)| h.saturating_add(1) >= lo)
            .map(|(l, h)| (*l, *h))
            .collect();
        for (l, h) in touching {
            self.spans.remove(&l);
            lo = lo.min(l);
            hi = hi.max(h);
        }
        self.spans.insert(lo, hi);
    }

    /// Answers `range` from memory, or `None` when the spans do not cover it.
    fn read(&self, range: Range) -> Option<Vec<Arc<CachedMessage>>> {
        match range {
            Range::Down { upper, n } => {
                let (lo, _) = self.span_of(upper)?;
                let page: Vec<_> = self
                    .messages
                    .range(lo..=upper)
                    .rev()
                    .take(n)
                    .map(|(_, m)| m.clone())
                    .collect();
                (page.len() >= n || lo == i64::MIN).then_some(page)
            }
            Range::Up { lower, n } => {
                let first = lower.checked_add(1)?;
                let (_, hi) = self.span_of(first)?;
                let page: Vec<_> = self
                    .messages
                    .range(first..=hi)
                    .take(n)
                    .map(|(_, m)| m.clone())
                    .collect();
                (page.len() >= n || hi == i64::MAX).then_some(page)
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    places: HashMap<i64, Place>,
    bytes: usize,
    next_instance: u64,
}

impl Inner {
    fn fresh_instance(&mut self) -> u64 {
        self.next_instance += 1;
        self.next_instance
    }

    fn remove(&mut self, channel: i64) {
        if let Some(p) = self.places.remove(&channel) {
            self.bytes = self.bytes.saturating_sub(p.bytes);
        }
    }

    /// Evicts least recently used places until within bounds.
    fn shrink(&mut self) {
        while self.bytes > MAX_BYTES || self.places.len() > MAX_CHANNELS {
            let Some(lru) = self
                .places
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(c, _)| *c)
            else {
                break;
            };
            self.remove(lru);
        }
    }
}

/// Carries this node's invalidations to the other api nodes (see
/// [`super::history_sync`]); must not block.
pub trait RemoteInvalidation: Send + Sync {
    /// Sends `change` to the other nodes.
    fn publish(&self, change: Change);
}

/// The node's history cache; see the module documentation.
pub struct HistoryCache {
    enabled: AtomicBool,
    inner: Mutex<Inner>,
    /// Where this node's invalidations also go (the other api nodes), if anywhere.
    remote: std::sync::RwLock<Option<Arc<dyn RemoteInvalidation>>>,
    /// [`CHANNEL_TTL`], or shorter when several nodes share the cache's coherence.
    channel_ttl_ms: AtomicU64,
    /// Range reads answered from memory / from the database.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for HistoryCache {
    fn default() -> Self {
        Self {
            enabled: AtomicBool::new(true),
            inner: Mutex::default(),
            remote: std::sync::RwLock::new(None),
            channel_ttl_ms: AtomicU64::new(CHANNEL_TTL.as_millis() as u64),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for HistoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryCache")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl HistoryCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether reads are answered from memory.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Turns the cache on or off (off empties it).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
        if !on {
            self.invalidate_local(Change::All);
        }
    }

    /// Sends this node's invalidations to `remote` too (several api nodes).
    pub fn set_remote(&self, remote: Arc<dyn RemoteInvalidation>) {
        *self.remote.write().unwrap_or_else(|p| p.into_inner()) = Some(remote);
    }

    /// Sets how long a place's cached history may live (default [`CHANNEL_TTL`]).
    pub fn set_channel_ttl(&self, ttl: Duration) {
        self.channel_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::Release);
    }

    fn channel_ttl(&self) -> Duration {
        Duration::from_millis(self.channel_ttl_ms.load(Ordering::Acquire))
    }

    /// Range reads answered so far: `(from memory, from the database)`.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Answers `range` of `channel` from memory, if the cache covers it.
    pub fn read(&self, channel: i64, range: Range) -> Option<Vec<Arc<CachedMessage>>> {
        let page = self.lookup(channel, range);
        let counter = if page.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        page
    }

    fn lookup(&self, channel: i64, range: Range) -> Option<Vec<Arc<CachedMessage>>> {
        if !self.enabled() {
            return None;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let place = inner.places.get_mut(&channel)?;
        if now.duration_since(place.created) >= self.channel_ttl() {
            inner.remove(channel);
            return None;
        }
        place.expire_open(now);
        place.used = now;
        place.read(range)
    }

    /// Starts a miss: take the ticket before reading the database. `None` when disabled.
    pub fn begin(&self, channel: i64) -> Option<Ticket> {
        if !self.enabled() {
            return None;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let expired = inner
            .places
            .get(&channel)
            .is_some_and(|p| now.duration_since(p.created) >= self.channel_ttl());
        if expired {
            inner.remove(channel);
        }
        if !inner.places.contains_key(&channel) {
            let instance = inner.fresh_instance();
            inner.places.insert(channel, Place::new(instance, now));
            inner.shrink();
        }
        let place = inner.places.get(&channel)?;
        Some(Ticket {
            channel,
            instance: place.instance,
            generation: place.generation,
        })
    }

    /// Records what a miss read, unless the place changed since its ticket was taken.
    pub fn fill(&self, ticket: Ticket, fill: Fill) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(place) = inner.places.get_mut(&ticket.channel) else {
            return;
        };
        if place.instance != ticket.instance || place.generation != ticket.generation {
            return;
        }
        let before = place.bytes;
        place.add(fill, now);
        place.used = now;
        let after = place.bytes;
        inner.bytes = inner.bytes.saturating_sub(before) + after;
        inner.shrink();
    }

    /// Applies a change committed (or possibly committed) by this node, here and on the other
    /// nodes.
    pub fn invalidate(&self, change: Change) {
        self.invalidate_local(change);
        let remote = self
            .remote
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(remote) = remote {
            remote.publish(change);
        }
    }

    /// Applies a change to this node's cache only (one another node made, say).
    pub fn invalidate_local(&self, change: Change) {
        let mut inner = self.lock();
        let channel = match change {
            Change::All => {
                // New instances: tickets taken before are refused.
                inner.places.clear();
                inner.bytes = 0;
                return;
            }
            Change::Create(c) | Change::Message(c, _) => c,
        };
        let Some(place) = inner.places.get_mut(&channel) else {
            return;
        };
        let before = place.bytes;
        place.generation += 1;
        match change {
            Change::Create(_) => place.close_open(),
            Change::Message(_, id) => place.cut(id),
            Change::All => {}
        }
        let after = place.bytes;
        inner.bytes = inner.bytes.saturating_sub(before) + after;
    }

    /// Invalidates what `event` (published by this node) changed.
    pub fn observe(&self, event: &Event) {
        if let Some(change) = change_of(event) {
            self.invalidate(change);
        }
    }

    /// A guard that applies `change` when dropped — also when the request is cancelled
    /// after its commit and before its event.
    pub fn guard(self: &Arc<Self>, change: Change) -> WriteGuard {
        WriteGuard {
            cache: self.clone(),
            change,
        }
    }
}

/// Applies its [`Change`] when dropped; see [`HistoryCache::guard`].
#[derive(Debug)]
pub struct WriteGuard {
    cache: Arc<HistoryCache>,
    change: Change,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.cache.invalidate(self.change);
    }
}

/// The ids a message object of an event names.
fn message_ids(message: &serde_json::Value) -> Option<(i64, i64)> {
    let id = |k: &str| message.get(k)?.as_str()?.parse::<i64>().ok();
    Some((id("channel_id")?, id("id")?))
}

/// What `event` invalidates: `None` for events that cannot change stored messages.
pub fn change_of(event: &Event) -> Option<Change> {
    let msg = |c: Id, m: Id| Some(Change::Message(c.0, m.0));
    match event {
        Event::MessageCreate { message } => {
            Some(message_ids(message).map_or(Change::All, |(channel, _)| Change::Create(channel)))
        }
        Event::MessageUpdate { message } => Some(
            message_ids(message).map_or(Change::All, |(channel, id)| Change::Message(channel, id)),
        ),
        Event::MessageDelete {
            channel_id,
            message_id,
        } => msg(*channel_id, *message_id),
        Event::ReactionAdd {
            channel_id,
            message_id,
            ..
        }
        | Event::ReactionRemove {
            channel_id,
            message_id,
            ..
        } => msg(*channel_id, *message_id),
        // Places, roles, members, people and live traffic: no stored message changes.
        // (A deleted place answers 404 before its history is read.)
        Event::ServerCreate { .. }
        | Event::ServerUpdate { .. }
        | Event::ChannelCreate { .. }
        | Event::ChannelUpdate { .. }
        | Event::RoleCreate { .. }
        | Event::RoleUpdate { .. }
        | Event::RoleDelete { .. }
        | Event::MemberAdd { .. }
        | Event::MemberUpdate { .. }
        | Event::MemberRemove { .. }
        | Event::ModerationNotice { .. }
        | Event::RelationshipUpdate { .. }
        | Event::ScopeChanged { .. }
        | Event::ReadStateUpdate { .. }
        | Event::WhiteboardStroke { .. }
        | Event::WhiteboardClear { .. }
        | Event::TypingStart { .. }
        | Event::PresenceUpdate { .. }
        | Event::VoiceStateUpdate { .. }
        | Event::VoiceSignal { .. }
        | Event::ToDevice { .. }
        | Event::DeviceKeysChanged { .. } => None,
        // Anything else (server and channel deletions, session revocations, kinds added
        // later): empty the cache rather than reason about it.
        _ => Some(Change::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: i64) -> Arc<CachedMessage> {
        Arc::new(CachedMessage {
            id,
            head_json: format!("{{\"id\":\"{id}\"").into(),
            reactions: Vec::new(),
        })
    }

    fn ids(page: Option<Vec<Arc<CachedMessage>>>) -> Option<Vec<i64>> {
        page.map(|p| p.iter().map(|m| m.id).collect())
    }

    /// A place holding messages 10, 20, …, 100, read as "the newest 10" with head 100.
    fn cache_with_newest() -> HistoryCache {
        let c = HistoryCache::default();
        let t = c.begin(1).unwrap();
        c.fill(
            t,
            Fill {
                range: Range::Down {
                    upper: i64::MAX,
                    n: 10,
                },
                messages: (1..=10).rev().map(|k| msg(k * 10)).collect(),
                head: 100,
            },
        );
        c
    }

    #[test]
    fn a_full_newest_page_serves_pages_inside_it_and_not_beyond() {
        let c = cache_with_newest();
        let newest = Range::Down {
            upper: i64::MAX,
            n: 3,
        };
        assert_eq!(ids(c.read(1, newest)), Some(vec![100, 90, 80]));
        // before=50 → id <= 49: 40, 30, 20 — and 4 of them would need 10, the span's floor.
        let b = |n| Range::Down { upper: 49, n };
        assert_eq!(ids(c.read(1, b(3))), Some(vec![40, 30, 20]));
        assert_eq!(ids(c.read(1, b(4))), Some(vec![40, 30, 20, 10]));
        // Below 10 is unknown: a fifth message may exist.
        assert_eq!(ids(c.read(1, b(5))), None);
        // after=85 reaches the open head: complete even though short.
        let a = Range::Up { lower: 85, n: 5 };
        assert_eq!(ids(c.read(1, a)), Some(vec![90, 100]));
        assert_eq!(ids(c.read(2, a)), None, "another place");
    }

    #[test]
    fn a_create_closes_the_open_span_at_the_head() {
        let c = cache_with_newest();
        c.invalidate(Change::Create(1));
        let newest = Range::Down {
            upper: i64::MAX,
            n: 3,
        };
        assert_eq!(
            ids(c.read(1, newest)),
            None,
            "the new message is not cached"
        );
        // after=85 is no longer complete (the new message is above 100)…
        assert_eq!(ids(c.read(1, Range::Up { lower: 85, n: 5 })), None);
        // …but full pages below the head still are.
        assert_eq!(
            ids(c.read(1, Range::Up { lower: 65, n: 3 })),
            Some(vec![70, 80, 90])
        );
        assert_eq!(
            ids(c.read(1, Range::Down { upper: 100, n: 2 })),
            Some(vec![100, 90])
        );
    }

    #[test]
    fn an_edited_message_leaves_its_span() {
        let c = cache_with_newest();
        c.invalidate(Change::Message(1, 50));
        // [51, MAX] holds only 60 up to 60: a second message may be 50's successor… or not.
        assert_eq!(ids(c.read(1, Range::Down { upper: 60, n: 2 })), None);
        assert_eq!(
            ids(c.read(1, Range::Down { upper: 100, n: 5 })),
            Some(vec![100, 90, 80, 70, 60])
        );
        assert_eq!(ids(c.read(1, Range::Down { upper: 100, n: 6 })), None);
        assert_eq!(
            ids(c.read(1, Range::Down { upper: 49, n: 4 })),
            Some(vec![40, 30, 20, 10])
        );
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let c = HistoryCache::default();
        let t = c.begin(1).unwrap();
        c.invalidate(Change::Create(1));
        c.fill(
            t,
            Fill {
                range: Range::Down {
                    upper: i64::MAX,
                    n: 2,
                },
                messages: vec![msg(20), msg(10)],
                head: 20,
            },
        );
        assert_eq!(ids(c.read(1, Range::Down { upper: 20, n: 1 })), None);
        // A ticket from before a full clear is refused too.
        let t = c.begin(1).unwrap();
        c.invalidate(Change::All);
        c.begin(1).unwrap();
        c.fill(
            t,
            Fill {
                range: Range::Down { upper: 20, n: 2 },
                messages: vec![msg(20), msg(10)],
                head: 20,
            },
        );
        assert_eq!(ids(c.read(1, Range::Down { upper: 20, n: 1 })), None);
    }

    #[test]
    fn a_cursor_above_the_head_proves_an_open_span_and_below_it_a_closed_one() {
        let c = HistoryCache::default();
        // before=1000 when the head is 30: open.
        let t = c.begin(1).unwrap();
        c.fill(
            t,
            Fill {
                range: Range::Down { upper: 999, n: 2 },
                messages: vec![msg(30), msg(20)],
                head: 30,
            },
        );
        assert_eq!(
            ids(c.read(1, Range::Up { lower: 25, n: 5 })),
            Some(vec![30])
        );
        // A short read down to the beginning: [MIN, 15], closed (15 < head 40).
        let c = HistoryCache::default();
        let t = c.begin(1).unwrap();
        c.fill(
            t,
            Fill {
                range: Range::Down { upper: 15, n: 5 },
                messages: vec![msg(10)],
                head: 40,
            },
        );
        assert_eq!(
            ids(c.read(1, Range::Down { upper: 12, n: 5 })),
            Some(vec![10])
        );
        assert_eq!(ids(c.read(1, Range::Down { upper: 16, n: 5 })), None);
        assert_eq!(ids(c.read(1, Range::Up { lower: 12, n: 1 })), None);
    }

    #[test]
    fn reads_of_different_snapshots_never_make_a_gap() {
        // Open span proved at head 100; then 110 and 120 commit, and a read sees 120 before
        // either create has invalidated the cache.
        let c = cache_with_newest();
        let t = c.begin(1).unwrap();
        c.fill(
            t,
            Fill {
                range: Range::Down { upper: 120, n: 1 },
                messages: vec![msg(120)],
                head: 120,
            },
        );
        // after=95 must not answer [100, 120]: 110 may exist.
        assert_eq!(ids(c.read(1, Range::Up { lower: 95, n: 10 })), None);
        assert_eq!(
            ids(c.read(1, Range::Up { lower: 95, n: 1 })),
            Some(vec![100])
        );

        // The other order: a newer closed read is cached, then an older open one arrives.
        let c = HistoryCache::default();
        let t = c.begin(1).unwrap();
        c.fill(
            t,
            Fill {
                range: Range::Down { upper: 120, n: 2 },
                messages: vec![msg(120), msg(115)],
                head: 120,
            },
        );
        c.fill(
            t,
            Fill {
                range: Range::Up { lower: 50, n: 10 },
                messages: (6..=10).map(|k| msg(k * 10)).collect(),
                head: 100,
            },
        );
        assert_eq!(ids(c.read(1, Range::Up { lower: 95, n: 10 })), None);
        assert_eq!(
            ids(c.read(1, Range::Down { upper: 100, n: 6 })),
            None,
            "[51, 100] holds five and does not reach down further"
        );
        assert_eq!(
            ids(c.read(1, Range::Up { lower: 50, n: 5 })),
            Some(vec![60, 70, 80, 90, 100])
        );
    }

    #[test]
    fn adjacent_and_overlapping_fills_merge() {
        let c = HistoryCache::default();
        let t = c.begin(1).unwrap();
        // after=0, full page of 3: [1, 30].
        c.fill(
            t,
            Fill {
                range: Range::Up { lower: 0, n: 3 },
                messages: vec![msg(10), msg(20), msg(30)],
                head: 90,
            },
        );
        // after=30, full page of 3: [31, 60] — touches [1, 30].
        c.fill(
            t,
            Fill {
                range: Range::Up { lower: 30, n: 3 },
                messages: vec![msg(40), msg(50), msg(60)],
                head: 90,
            },
        );
        assert_eq!(
            ids(c.read(1, Range::Up { lower: 5, n: 6 })),
            Some(vec![10, 20, 30, 40, 50, 60])
        );
        assert_eq!(ids(c.read(1, Range::Up { lower: 5, n: 7 })), None);
    }

    #[test]
    fn reactions_render_me_per_reader() {
        let m = CachedMessage {
            id: 7,
            head_json: "{\"id\":\"7\"".into(),
            reactions: vec![
                CachedReaction {
                    emoji_json: "\"👍\"".into(),
                    emoji: "👍".into(),
                    count: 2,
                    reactors: Some(vec![3, 5].into_boxed_slice()),
                },
                CachedReaction {
                    emoji_json: "\"🎉\"".into(),
                    emoji: "🎉".into(),
                    count: 999,
                    reactors: None,
                },
            ],
        };
        let mut mine = HashSet::new();
        mine.insert((7, "🎉".to_string()));
        let mut out = String::new();
        m.write_json(5, &mine, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["reactions"][0]["me"], true);
        assert_eq!(v["reactions"][1]["me"], true);
        let mut out = String::new();
        m.write_json(4, &HashSet::new(), &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["reactions"][0]["me"], false);
        assert_eq!(v["reactions"][1]["me"], false);
        assert_eq!(v["reactions"][1]["count"], 999);
        assert!(m.needs_lookup());
    }

    #[test]
    fn bounded_by_places() {
        let c = HistoryCache::default();
        for ch in 0..(MAX_CHANNELS as i64 + 5) {
            c.begin(ch).unwrap();
        }
        assert!(c.lock().places.len() <= MAX_CHANNELS);
    }
}
