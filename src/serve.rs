//! Starting roles: database (embedded or not), migrations, state, the HTTP server and
//! graceful shutdown.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use copains_api::AppState;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::embedded_pg::EmbeddedPg;

/// Sets up logging from the configuration (idempotent).
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// The database URL, starting the embedded cluster when none is configured.
async fn database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedPg>)> {
    match &config.database_url {
        Some(url) => Ok((url.clone(), None)),
        None => {
            let pg = EmbeddedPg::start(&config.data_dir, config.pg_bin_dir.as_deref())
                .await
                .context("starting the embedded PostgreSQL (set DATABASE_URL to use your own)")?;
            Ok((pg.url.clone(), Some(pg)))
        }
    }
}

/// `copains migrate`.
pub async fn migrate_only(config: Config) -> anyhow::Result<()> {
    let (url, _pg) = database(&config).await?;
    let pool = copains_api::db::connect(&url, 2)
        .await
        .context("connecting to PostgreSQL")?;
    copains_api::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    println!("migrations applied");
    Ok(())
}

/// Connects, migrates and builds the api state (used by `serve`, `api` and `admin`).
pub async fn state(config: &Config) -> anyhow::Result<(AppState, Option<EmbeddedPg>)> {
    let (url, pg) = database(config).await?;
    let pool = copains_api::db::connect(&url, config.db_max_connections)
        .await
        .context("connecting to PostgreSQL")?;
    copains_api::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    let signer = config.signing_key()?;
    let state = AppState::new(pool, signer, config.api.clone(), config.node_id)?;
    state.ip_rules.reload(&state.db).await?;
    Ok((state, pg))
}

/// `copains serve` (`with_web`: every role) and `copains api`.
pub async fn serve(config: Config, with_web: bool) -> anyhow::Result<()> {
    if config.redis_url.is_some() {
        tracing::warn!(
            "COPAINS_REDIS_URL is set, but no role of this build uses Redis yet (the gateway bus will)"
        );
    }
    let (state, _pg) = state(&config).await?;
    spawn_policy_refresh(state.clone());
    let mut app: Router = copains_api::routes::router(state.clone());
    if with_web {
        app = app.merge(crate::web::router(&config.web_dir));
    } else {
        app = app.fallback(copains_api::routes::no_route);
    }
    let app = app.layer(TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("listening on {}", config.http_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, roles = if with_web { "api+web" } else { "api" }, "copains is serving on http://{addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(crate::shutdown::signal())
    .await?;
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the cached IP deny list every 30 s, so changes made on another node apply here.
fn spawn_policy_refresh(state: AppState) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            t.tick().await;
            if let Err(e) = state.ip_rules.reload(&state.db).await {
                tracing::warn!(error = %e, "reloading IP rules");
            }
        }
    });
}
