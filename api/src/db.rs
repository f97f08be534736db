//! The PostgreSQL pool and the migrations embedded from `postgres/migrations`.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};
use std::str::FromStr;
use std::time::Duration;

/// The schema, embedded at build time from `postgres/migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../postgres/migrations");

/// A pooled connection idle for longer than this is pinged before it is handed out.
pub const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Connects a pool of at most `max_connections` to `url`.
///
/// sqlx already pings every connection when it goes back to the pool (a broken one is closed
/// there); its default second ping on every acquire cost one more round trip per query. Here
/// only connections idle for [`IDLE_CHECK`] or more (which may have broken while idle, e.g.
/// across a database restart) are pinged when acquired.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let opts = PgConnectOptions::from_str(url)?.application_name("copains");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_CHECK {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await
}

/// Applies every migration not yet applied (they take an advisory lock, so
/// several nodes starting at once are safe). Migrations applied by a newer version are
/// tolerated, so a node of the previous version still starts during a rolling upgrade
/// (migrations are written to stay compatible with the previous version: see
/// docs/upgrading.md).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut m = sqlx::migrate!("../postgres/migrations");
    m.set_ignore_missing(true);
    m.run(pool).await
}
