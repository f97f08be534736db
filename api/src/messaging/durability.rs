//! Waiting for the WAL flush of commits made with `synchronous_commit = off`, shared between
//! concurrent requests of this node (group commit, the way PostgreSQL groups its own flushes).
//!
//! A *barrier* is a tiny transactional WAL record (`pg_logical_emit_message`) committed with
//! the session's `synchronous_commit` (on by default): its commit flushes the WAL up to
//! itself, so every commit that finished before the barrier was sent is durable (and, with
//! synchronous replication, replicated) once it returns. One barrier runs at a time on a node;
//! a request whose commit finished before the running barrier started is covered by it,
//! otherwise it runs the next one — which then covers every request that queued meanwhile.
//! So under load most sends cost no extra round trip, and none waits for more than two
//! flushes.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;

const BARRIER: &str = "SELECT pg_logical_emit_message(true, 'copains', '')";

/// The node's flush coordinator (one per [`crate::AppState`]).
#[derive(Debug, Default)]
pub struct WalBarrier {
    /// Barriers started (a ticket each).
    started: AtomicU64,
    /// The highest ticket whose barrier has returned.
    done: AtomicU64,
    /// One barrier at a time.
    running: tokio::sync::Mutex<()>,
}

impl WalBarrier {
    /// Returns once everything this task committed before the call is flushed.
    pub async fn wait(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        // Any barrier whose ticket is at least `need` is sent after this point, hence after
        // the caller's commit, and covers it.
        let need = self.started.load(Ordering::SeqCst) + 1;
        let _one = self.running.lock().await;
        if self.done.load(Ordering::SeqCst) >= need {
            return Ok(());
        }
        let ticket = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        sqlx::query(BARRIER).execute(db).await?;
        // Tickets complete in order: barriers run one at a time.
        self.done.store(ticket, Ordering::SeqCst);
        Ok(())
    }
}
