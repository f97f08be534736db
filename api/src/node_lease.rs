//! Node ids leased in PostgreSQL, so that no two running processes of an instance make ids
//! with the same node bits (issue 14 item 5).
//!
//! Every id ([`copains_wire::Id`]) carries 10 bits of node id (0–1023). Each copains process
//! holds one row of `node_leases` (migration 0009) while it runs: it takes a free id with
//! one `INSERT … ON CONFLICT (id) DO UPDATE … WHERE expires_at <= now()` (a row whose lease
//! has expired is taken over; a live one never is, since PostgreSQL re-checks that condition
//! against the committed row when two processes race for one id), renews it every third of
//! the lease time ([`NodeLease::hold`]) and deletes it at a clean stop
//! ([`NodeLease::release`]). A process that could not renew before its lease ends must stop
//! making ids: [`NodeLease::hold`] says so ([`Held::Lost`]) early enough for the caller to
//! stop while the lease still stands. Only the database's clock decides expiry.

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

/// The largest node id (10 bits).
pub const MAX_NODE_ID: u16 = 1023;

/// How many times [`NodeLease::acquire`] tries again after losing a race for a free id.
const ATTEMPTS: usize = 64;

/// Why no node id could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Every id of 0–1023 is held by a live process.
    #[error("every node id (0-1023) is leased by a running process")]
    NoFreeId,
    /// The asked-for id stayed held by another live process.
    #[error("node id {0} is leased by another running process")]
    Taken(u16),
    /// The database failed.
    #[error("leasing a node id: {0}")]
    Db(#[from] sqlx::Error),
}

/// How a [`NodeLease::hold`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Asked to stop; the lease is still held (release it).
    Stopped,
    /// The lease could not be renewed: stop making ids. It stands until `valid_until`
    /// at the latest (already past when another process has taken the id over).
    Lost {
        /// When the lease ends, as far as this process can tell.
        valid_until: Instant,
    },
}

/// One node id held by this process.
#[derive(Debug)]
pub struct NodeLease {
    pool: PgPool,
    id: u16,
    holder: String,
    ttl: Duration,
    /// When the lease ends at the latest: the start of the last successful (re)newal + ttl.
    valid_until: Instant,
}

/// A random UUID (v4) as text, the lease's holder.
fn new_holder() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl NodeLease {
    /// Leases a free node id (a random one of those not held by a live process) for `ttl`.
    pub async fn acquire(pool: &PgPool, ttl: Duration) -> Result<NodeLease, LeaseError> {
        let holder = new_holder();
        for _ in 0..ATTEMPTS {
            let started = Instant::now();
            let free: Option<i16> = sqlx::query_scalar(
                "SELECT g::smallint FROM generate_series(0, $1::int) g \
                 WHERE NOT EXISTS (SELECT 1 FROM node_leases l WHERE l.id = g AND l.expires_at > now()) \
                 ORDER BY random() LIMIT 1",
            )
            .bind(i32::from(MAX_NODE_ID))
            .fetch_optional(pool)
            .await?;
            let Some(id) = free else {
                return Err(LeaseError::NoFreeId);
            };
            // Another process may take it between the two statements: then this one
            // returns no row and the loop picks again.
            if let Some(lease) = Self::claim(pool, id, &holder, ttl, started).await? {
                return Ok(lease);
            }
        }
        Err(LeaseError::NoFreeId)
    }

    /// Leases exactly `id` (an id set by hand), waiting up to `wait` for a lease another
    /// process holds on it to expire (a process killed without releasing it). Fails with
    /// [`LeaseError::Taken`] while a live process keeps renewing it.
    pub async fn acquire_id(
        pool: &PgPool,
        id: u16,
        ttl: Duration,
        wait: Duration,
    ) -> Result<NodeLease, LeaseError> {
        let holder = new_holder();
        let give_up = Instant::now() + wait;
        let id16 = i16::try_from(id.min(MAX_NODE_ID)).unwrap_or(0);
        loop {
            let started = Instant::now();
            if let Some(lease) = Self::claim(pool, id16, &holder, ttl, started).await? {
                return Ok(lease);
            }
            if Instant::now() >= give_up {
                return Err(LeaseError::Taken(id));
            }
            tokio::time::sleep(Duration::from_millis(500).min(ttl)).await;
        }
    }

    /// Inserts the lease of `id`, or takes over an expired one; `None` when a live one stands.
    async fn claim(
        pool: &PgPool,
        id: i16,
        holder: &str,
        ttl: Duration,
        started: Instant,
    ) -> Result<Option<NodeLease>, sqlx::Error> {
        let got: Option<i16> = sqlx::query_scalar(
            "INSERT INTO node_leases (id, holder, expires_at) \
             VALUES ($1, $2::uuid, now() + make_interval(secs => $3)) \
             ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE node_leases.expires_at <= now() \
             RETURNING id",
        )
        .bind(id)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        Ok(got.map(|id| NodeLease {
            pool: pool.clone(),
            id: u16::try_from(id).unwrap_or(0),
            holder: holder.to_owned(),
            ttl,
            valid_until: started + ttl,
        }))
    }

    /// The leased node id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The lease time.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When the lease ends unless renewed (an upper bound: this process's clock started
    /// counting before the database did).
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Extends the lease by the lease time. `Ok(false)`: it is no longer this process's
    /// (it expired and another process took the id, or the row was deleted).
    pub async fn renew(&mut self) -> Result<bool, sqlx::Error> {
        let started = Instant::now();
        let renewed = sqlx::query(
            "UPDATE node_leases SET expires_at = now() + make_interval(secs => $3) \
             WHERE id = $1 AND holder = $2::uuid AND expires_at > now()",
        )
        .bind(i16::try_from(self.id).unwrap_or(0))
        .bind(&self.holder)
        .bind(self.ttl.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if renewed {
            self.valid_until = started + self.ttl;
        }
        Ok(renewed)
    }

    /// Renews the lease every third of the lease time (retrying every second after a
    /// failure) until `stop` resolves ([`Held::Stopped`]) or the lease is lost
    /// ([`Held::Lost`]): taken over, or not renewed while at least a third of it was left.
    pub async fn hold(&mut self, stop: impl std::future::Future<Output = ()>) -> Held {
        let every = self.ttl / 3;
        let retry = Duration::from_secs(1).min(every);
        let mut next = Instant::now() + every;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Held::Stopped,
                _ = tokio::time::sleep_until(next) => {}
            }
            let left = self.valid_until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.renew()).await {
                Ok(Ok(true)) => next = Instant::now() + every,
                Ok(Ok(false)) => {
                    tracing::error!(node_id = self.id, "the node id lease was taken over");
                    return Held::Lost {
                        valid_until: Instant::now(),
                    };
                }
                Ok(Err(e)) => {
                    tracing::warn!(node_id = self.id, error = %e, "renewing the node id lease failed");
                    next = Instant::now() + retry;
                }
                Err(_) => {
                    tracing::warn!(node_id = self.id, "renewing the node id lease timed out");
                    next = Instant::now() + retry;
                }
            }
            // Keep a third of the lease to stop in: past that, give up.
            if next + every > self.valid_until {
                tracing::error!(
                    node_id = self.id,
                    "the node id lease could not be renewed in time"
                );
                return Held::Lost {
                    valid_until: self.valid_until,
                };
            }
        }
    }

    /// Gives the id back (a clean stop): another process may lease it at once.
    pub async fn release(self) {
        let r = sqlx::query("DELETE FROM node_leases WHERE id = $1 AND holder = $2::uuid")
            .bind(i16::try_from(self.id).unwrap_or(0))
            .bind(&self.holder)
            .execute(&self.pool)
            .await;
        if let Err(e) = r {
            tracing::warn!(node_id = self.id, error = %e, "releasing the node id lease failed (it expires by itself)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_v4_uuids() {
        let a = new_holder();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, new_holder());
    }
}
