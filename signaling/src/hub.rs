//! The node-local router: which sessions of this node need which topic, reference-counted
//! subscriptions on the bus, and delivery of each received event to the matching sessions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use copains_wire::Id;
use copains_wire::events::BusEvent;
use tokio::sync::{Notify, broadcast};

use crate::bus::{EventBus, Topic};
use crate::presence::unix_ms;
use crate::session::{RoutedEvent, Session};

/// How many recent event ids a node remembers to drop copies received via a second topic.
const RECENT_IDS: usize = 8192;

/// A session shared between its connection (reader and writer tasks) and the router.
#[derive(Debug)]
pub struct SessionHandle {
    /// Node-unique key.
    pub key: u64,
    /// The state machine.
    pub core: Mutex<Session>,
    /// Woken when frames are queued.
    pub writer_wake: Notify,
    /// Woken when actions are queued.
    pub reader_wake: Notify,
}

impl SessionHandle {
    /// Wraps a session.
    pub fn new(session: Session) -> Arc<Self> {
        Arc::new(Self {
            key: rand::random(),
            core: Mutex::new(session),
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
        })
    }

    /// Locks the state machine (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the tasks that have work after the session was fed.
    pub fn wake(&self, s: &Session) {
        if s.has_frames() {
            self.writer_wake.notify_one();
        }
        if s.has_actions() {
            self.reader_wake.notify_one();
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<u64, Arc<SessionHandle>>,
    by_session_id: HashMap<String, u64>,
    topics: HashMap<Topic, HashMap<u64, Arc<SessionHandle>>>,
    /// The topics each session holds here (what `unregister` releases).
    session_topics: HashMap<u64, Vec<Topic>>,
    attached_per_user: HashMap<Id, usize>,
    recent: HashSet<u64>,
    recent_order: VecDeque<u64>,
}

/// The router of one gateway node.
pub struct Hub {
    bus: Arc<dyn EventBus>,
    inner: Mutex<Inner>,
    /// Serializes subscription changes so that the bus sees them in the order the topic
    /// reference counts changed (a subscribe never overtaken by an older unsubscribe), and
    /// so that a session registering a topic whose subscription is in flight waits for it.
    sub_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A router on `bus`; call [`Hub::run`] to start delivering.
    pub fn new(bus: Arc<dyn EventBus>) -> Arc<Self> {
        Arc::new(Self {
            bus,
            inner: Mutex::new(Inner::default()),
            sub_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The bus.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers the bus's incoming events until the bus closes.
    pub async fn run(self: Arc<Self>) {
        let mut rx = self.bus.incoming();
        loop {
            match rx.recv().await {
                Ok(ev) => self.route(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(
                        n,
                        "gateway router lagged: events lost, invalidating every session"
                    );
                    self.invalidate_all();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Delivers one event to the matching sessions of this node.
    pub fn route(&self, ev: Arc<BusEvent>) {
        let targets: Vec<Arc<SessionHandle>> = {
            let mut inner = self.lock();
            if !inner.recent.insert(ev.id) {
                return;
            }
            inner.recent_order.push_back(ev.id);
            if inner.recent_order.len() > RECENT_IDS
                && let Some(old) = inner.recent_order.pop_front()
            {
                inner.recent.remove(&old);
            }
            let topics = Topic::for_event(&ev);
            if let [t] = topics.as_slice() {
                // The common case: one topic, no de-duplication needed.
                inner
                    .topics
                    .get(t)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default()
            } else {
                let mut seen: HashSet<u64> = HashSet::new();
                let mut out = Vec::new();
                for t in &topics {
                    if let Some(m) = inner.topics.get(t) {
                        for (k, h) in m {
                            if seen.insert(*k) {
                                out.push(h.clone());
                            }
                        }
                    }
                }
                out
            }
        };
        if targets.is_empty() {
            return;
        }
        let routed = Arc::new(RoutedEvent::new(ev));
        let (now, ms) = (Instant::now(), unix_ms());
        for h in targets {
            let mut s = h.lock();
            s.on_event(now, ms, &routed);
            h.wake(&s);
        }
    }

    fn invalidate_all(&self) {
        let all: Vec<Arc<SessionHandle>> = self.lock().sessions.values().cloned().collect();
        for h in all {
            let mut s = h.lock();
            s.invalidate();
            h.wake(&s);
        }
    }

    /// Registers a session with its topics, subscribing the bus to the topics that no
    /// session of this node needed before. `user` counts towards the per-user cap.
    pub async fn register(
        &self,
        h: &Arc<SessionHandle>,
        session_id: &str,
        topics: &HashSet<Topic>,
    ) {
        let _order = self.sub_lock.lock().await;
        let new: Vec<Topic> = {
            let mut inner = self.lock();
            inner.sessions.insert(h.key, h.clone());
            inner.by_session_id.insert(session_id.to_owned(), h.key);
            add_topics(&mut inner, h.key, topics.iter())
        };
        if !new.is_empty()
            && let Err(e) = self.bus.subscribe(&new).await
        {
            tracing::warn!(%e, "bus subscribe failed");
        }
    }

    /// Adds topics to a registered session.
    pub async fn add_topics(&self, key: u64, topics: &[Topic]) {
        let _order = self.sub_lock.lock().await;
        let new = add_topics(&mut self.lock(), key, topics.iter());
        if !new.is_empty()
            && let Err(e) = self.bus.subscribe(&new).await
        {
            tracing::warn!(%e, "bus subscribe failed");
        }
    }

    /// Removes topics from a registered session.
    pub async fn remove_topics(&self, key: u64, topics: &[Topic]) {
        let _order = self.sub_lock.lock().await;
        let gone = remove_topics(&mut self.lock(), key, topics.iter());
        if !gone.is_empty()
            && let Err(e) = self.bus.unsubscribe(&gone).await
        {
            tracing::warn!(%e, "bus unsubscribe failed");
        }
    }

    /// Forgets a session and its topics.
    pub async fn unregister(&self, h: &Arc<SessionHandle>) {
        let _order = self.sub_lock.lock().await;
        let sid = h.lock().session_id().to_owned();
        let gone = {
            let mut inner = self.lock();
            inner.sessions.remove(&h.key);
            if inner.by_session_id.get(&sid) == Some(&h.key) {
                inner.by_session_id.remove(&sid);
            }
            let topics = inner.session_topics.remove(&h.key).unwrap_or_default();
            remove_topics(&mut inner, h.key, topics.iter())
        };
        if !gone.is_empty()
            && let Err(e) = self.bus.unsubscribe(&gone).await
        {
            tracing::warn!(%e, "bus unsubscribe failed");
        }
    }

    /// The session registered under a gateway session id.
    pub fn find(&self, session_id: &str) -> Option<Arc<SessionHandle>> {
        let inner = self.lock();
        inner
            .by_session_id
            .get(session_id)
            .and_then(|k| inner.sessions.get(k).cloned())
    }

    /// Counts one more live connection for `user` unless it already has `max`.
    pub fn try_attach_user(&self, user: Id, max: usize) -> bool {
        let mut inner = self.lock();
        let n = inner.attached_per_user.entry(user).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// One live connection of `user` ended.
    pub fn detach_user(&self, user: Id) {
        let mut inner = self.lock();
        if let Some(n) = inner.attached_per_user.get_mut(&user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.attached_per_user.remove(&user);
            }
        }
    }

    /// Every registered session (attached or detached).
    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        self.lock().sessions.values().cloned().collect()
    }

    /// How many topics this node is subscribed to (for tests and metrics).
    pub fn topic_count(&self) -> usize {
        self.lock().topics.len()
    }

    /// How many sessions are registered.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

fn add_topics<'a>(
    inner: &mut Inner,
    key: u64,
    topics: impl Iterator<Item = &'a Topic>,
) -> Vec<Topic> {
    let mut new = Vec::new();
    let Some(h) = inner.sessions.get(&key).cloned() else {
        return new;
    };
    for t in topics {
        let set = inner.topics.entry(t.clone()).or_default();
        if set.is_empty() {
            new.push(t.clone());
        }
        if set.insert(key, h.clone()).is_none() {
            inner.session_topics.entry(key).or_default().push(t.clone());
        }
    }
    new
}

fn remove_topics<'a>(
    inner: &mut Inner,
    key: u64,
    topics: impl Iterator<Item = &'a Topic>,
) -> Vec<Topic> {
    let mut gone = Vec::new();
    for t in topics {
        if let Some(set) = inner.topics.get_mut(t)
            && set.remove(&key).is_some()
        {
            if set.is_empty() {
                inner.topics.remove(t);
                gone.push(t.clone());
            }
            if let Some(mine) = inner.session_topics.get_mut(&key) {
                mine.retain(|x| x != t);
            }
        }
    }
    gone
}
