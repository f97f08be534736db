//! The PostgreSQL pool and the migrations embedded from `postgres/migrations`.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};
use std::str::FromStr;
use std::time::Duration;

/// The schema, embedded at build time from `postgres/migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../postgres/migrations");

/// Connects a pool of at most `max_connections` to `url`.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let opts = PgConnectOptions::from_str(url)?.application_name("copains");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
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
