//! This process's node id: leased in PostgreSQL (api/src/node_lease.rs), or the one set by
//! hand with `COPAINS_NODE_ID` (leased too, so that leasing processes keep off it).
//!
//! The lease is renewed in the background. When it cannot be renewed in time the process
//! stops: [`NodeId::lost`] resolves (the server then shuts down gracefully, while the lease
//! still stands) and, should the process still run when the lease ends, it exits there, so
//! that it never makes an id another process may make too.

use std::time::Duration;

use anyhow::Context;
use copains_api::node_lease::{Held, NodeLease};
use sqlx::PgPool;
use tokio::sync::watch;

/// Exit status of a process that outlived its node id lease (EX_TEMPFAIL: restart it).
const EXIT_LEASE_LOST: i32 = 75;

/// The node id of this process and the task that keeps its lease.
pub struct NodeId {
    /// The node id (0–1023).
    pub id: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Option<NodeLease>>>,
    lost: watch::Receiver<bool>,
}

impl NodeId {
    /// Leases a node id: `explicit` (`COPAINS_NODE_ID`) when set, waiting up to one lease
    /// time for a stale lease on it to expire; else any free one.
    pub async fn obtain(
        pool: &PgPool,
        explicit: Option<u16>,
        ttl: Duration,
    ) -> anyhow::Result<NodeId> {
        let lease = match explicit {
            Some(id) => NodeLease::acquire_id(pool, id, ttl, ttl + Duration::from_secs(1))
                .await
                .with_context(|| {
                    format!(
                        "COPAINS_NODE_ID={id} is in use by another running process of this \
                         instance: give each process its own, or unset COPAINS_NODE_ID to lease a free one"
                    )
                })?,
            None => NodeLease::acquire(pool, ttl)
                .await
                .context("leasing a node id")?,
        };
        let id = lease.id();
        tracing::info!(
            node_id = id,
            lease_secs = ttl.as_secs(),
            source = if explicit.is_some() {
                "COPAINS_NODE_ID"
            } else {
                "leased"
            },
            "node id {id}"
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (lost_tx, lost_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut lease = lease;
            match lease
                .hold(async {
                    let _ = stop_rx.await;
                })
                .await
            {
                Held::Stopped => Some(lease),
                Held::Lost { valid_until } => {
                    tracing::error!(
                        node_id = id,
                        "lost the lease of node id {id} (taken over, or not renewed in time): \
                         stopping, so that no id is made twice"
                    );
                    let _ = lost_tx.send(true);
                    tokio::time::sleep_until(valid_until).await;
                    tracing::error!(
                        node_id = id,
                        "the lease of node id {id} has ended: exiting now"
                    );
                    std::process::exit(EXIT_LEASE_LOST);
                }
            }
        });
        Ok(NodeId {
            id,
            stop: Some(stop_tx),
            task: Some(task),
            lost: lost_rx,
        })
    }

    /// Resolves when the lease is lost (never, while it is renewed).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.lost.clone();
        async move {
            if rx.wait_for(|lost| *lost).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether the lease was lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Stops renewing and gives the id back (a clean stop). After a loss there is nothing
    /// to give back (the process exits when the lease ends, if it still runs then).
    pub async fn release(mut self) {
        if self.is_lost() {
            return;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Ok(Some(lease)) = task.await
        {
            lease.release().await;
        }
    }
}
