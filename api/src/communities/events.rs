//! Publishing the typed bus events ([`copains_wire::events`]) of community changes.
//!
//! `AppState` has no bus handle yet, so [`publish`] hands every event to a process-wide
//! broadcast channel: whoever runs the gateway in the same process (or a test) receives them
//! with [`subscribe`] and forwards them to the `EventBus`. When the lead adds the bus to
//! `AppState`, only the body of [`publish`] changes. Publishing never blocks and never fails
//! the request: with no subscriber the event is dropped (clients resynchronise on reconnect).

use std::sync::{Arc, OnceLock};

use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event};
use tokio::sync::broadcast;

use crate::state::AppState;

/// Events buffered for a slow subscriber before it starts missing some.
const CAPACITY: usize = 4096;

fn channel() -> &'static broadcast::Sender<Arc<BusEvent>> {
    static TX: OnceLock<broadcast::Sender<Arc<BusEvent>>> = OnceLock::new();
    TX.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// Receives every event published by the api in this process from now on.
pub fn subscribe() -> broadcast::Receiver<Arc<BusEvent>> {
    channel().subscribe()
}

/// Publishes `event` for `audience` (see the module docs for where it goes today).
pub fn publish(_state: &AppState, audience: Vec<Audience>, event: Event) {
    if audience.is_empty() {
        return;
    }
    let ev = BusEvent::new(audience, event);
    tracing::debug!(event = ev.event.name(), "publish");
    let _ = channel().send(Arc::new(ev));
}

/// Tells the gateway that `users`' visible servers or channels changed.
pub fn scope_changed(state: &AppState, users: &[Id]) {
    for u in users {
        publish(
            state,
            vec![Audience::User(*u)],
            Event::ScopeChanged { user_id: *u },
        );
    }
}

/// Renders an api object for an event payload (`Null` if it cannot be, which never happens
/// for our plain structs).
pub fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
