//! Shared state handed to every handler.

use std::sync::Arc;

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
        })
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
