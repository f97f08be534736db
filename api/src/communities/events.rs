//! Publishing the typed bus events ([`copains_wire::events`]) of community changes on
//! the state's event bus (`AppState::publish`), for the gateway to deliver. Publishing happens
//! after the change is committed and never fails the request (a bus failure is logged;
//! clients catch up by refetching on reconnect).

use copains_wire::Id;
use copains_wire::events::{Audience, BusEvent, Event};

use crate::state::AppState;

/// Publishes `event` for `audience` (nothing when the audience is empty).
pub async fn publish(state: &AppState, audience: Vec<Audience>, event: Event) {
    if audience.is_empty() {
        // Nobody to tell, but the change happened: permission caches must still hear of it.
        state.places.observe(&event);
        return;
    }
    state.publish(BusEvent::new(audience, event)).await;
}

/// Tells the gateway that `users`' visible servers or channels changed.
pub async fn scope_changed(state: &AppState, users: &[Id]) {
    for u in users {
        publish(
            state,
            vec![Audience::User(*u)],
            Event::ScopeChanged { user_id: *u },
        )
        .await;
    }
}

/// Renders an api object for an event payload.
pub fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
