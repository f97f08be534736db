//! Shared state handed to every handler.

use std::sync::Arc;

use copains_signaling::{EventBus, InProcessBus, PresenceStore};
use copains_wire::events::BusEvent;
use copains_wire::{IdGenerator, TokenSigner, TokenVerifier};
use sqlx::PgPool;

use crate::config::ApiConfig;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::password::PasswordHasherPool;
use crate::policy::IpRules;

/// Everything handlers need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub db: PgPool,
    /// Makes object ids.
    pub ids: Arc<IdGenerator>,
    /// Signs access tokens.
    pub signer: TokenSigner,
    /// Verifies access tokens.
    pub verifier: TokenVerifier,
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// argon2id on the blocking pool, bounded.
    pub hasher: PasswordHasherPool,
    /// Reset mail, if SMTP is configured.
    pub mailer: Option<Mailer>,
    /// The cached IP deny list.
    pub ip_rules: IpRules,
    /// Prometheus counters.
    pub metrics: Arc<Metrics>,
    /// The event bus: every change is published here for the gateway to deliver.
    pub bus: Arc<dyn EventBus>,
    /// Verified tokens and recently live sessions.
    pub auth_cache: Arc<crate::auth_cache::AuthCache>,
    /// Resolved places and permissions of the hot messaging routes (invalidated by
    /// [`AppState::publish`]).
    pub places: Arc<crate::messaging::place_cache::PlaceCache>,
    /// History pages kept in memory (with several nodes, on only once
    /// [`crate::messaging::history_sync::start`] links it to the others).
    pub history: Arc<crate::messaging::history_cache::HistoryCache>,
    /// Per-place queues that group concurrent sends into one insert.
    pub sends: Arc<crate::messaging::send_batch::SendBatcher>,
    /// The gateway's presence store, when this process can read it (for the online count of
    /// invite previews); `None` leaves that count out.
    pub presence: Option<Arc<dyn PresenceStore>>,
}

impl AppState {
    /// Builds the state; `mailer` is made from `config.smtp`.
    pub fn new(
        db: PgPool,
        signer: TokenSigner,
        config: ApiConfig,
        node_id: u16,
    ) -> Result<Self, crate::ApiError> {
        let verifier = signer
            .verifier()
            .map_err(|e| crate::ApiError::Internal(e.to_string()))?;
        let mailer = match &config.smtp {
            Some(s) => Some(Mailer::new(s)?),
            None => None,
        };
        Ok(Self {
            db,
            ids: Arc::new(IdGenerator::new(node_id)),
            signer,
            verifier,
            hasher: PasswordHasherPool::new(config.max_concurrent_hashes),
            config: Arc::new(config),
            mailer,
            ip_rules: IpRules::default(),
            metrics: Arc::new(Metrics::default()),
            bus: Arc::new(InProcessBus::new()),
            auth_cache: Arc::default(),
            places: Arc::default(),
            history: Arc::default(),
            sends: Arc::default(),
            presence: None,
        })
    }

    /// The same state publishing on `bus` (Redis across nodes, or the in-process bus the
    /// gateway of this process listens to).
    /// The history cache stays on only when `bus` is in-process (every writer is here); with
    /// Redis, [`crate::messaging::history_sync::start`] turns it on once linked to the others.
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.history.set_enabled(bus.is_local());
        self.bus = bus;
        self
    }

    /// The same state reading presence from `presence` (the gateway's store).
    pub fn with_presence(mut self, presence: Arc<dyn PresenceStore>) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Publishes an event after a change was committed. A bus failure does not undo the
    /// change: it is logged, and clients catch up by refetching on reconnect.
    /// Events that can change permissions first invalidate this node's place cache, and
    /// events that change stored messages its history cache.
    pub async fn publish(&self, event: BusEvent) {
        self.places.observe(&event.event);
        self.history.observe(&event.event);
        if let Err(e) = self.bus.publish(&event).await {
            tracing::warn!(error = %e, "publishing an event on the bus failed");
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
