//! Starting roles: database (embedded or not), migrations, state, the HTTP server and
//! graceful shutdown.

use anyhow::Context;
use axum::Router;
use std::sync::Arc;

use copains_api::AppState;
use copains_signaling::EventBus;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::embedded_pg::EmbeddedPg;
use crate::node_id::NodeId;

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
    let pool = connect_waiting(&url, 2, config.db_wait).await?;
    copains_api::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    println!("migrations applied");
    Ok(())
}

/// Connects to PostgreSQL, waiting up to `wait` for it to answer (a database container may
/// start after this one): every failed attempt logs where it tried (never the password), and
/// the last one becomes the error the process exits with.
async fn connect_waiting(
    url: &str,
    max_connections: u32,
    wait: std::time::Duration,
) -> anyhow::Result<sqlx::PgPool> {
    let place = database_place(url);
    let deadline = std::time::Instant::now() + wait;
    loop {
        match copains_api::db::connect(url, max_connections).await {
            Ok(pool) => return Ok(pool),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!("PostgreSQL at {place} is not reachable yet ({e}); retrying in 2 s");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => {
                tracing::error!(
                    "PostgreSQL at {place} is not reachable ({e}); gave up after {} s (COPAINS_DB_WAIT_SECS)",
                    wait.as_secs()
                );
                return Err(anyhow::anyhow!(
                    "PostgreSQL at {place} is not reachable: {e} (waited {} s)",
                    wait.as_secs()
                ));
            }
        }
    }
}

/// `host:port/database` of a database URL, for messages (no user, no password).
fn database_place(url: &str) -> String {
    use std::str::FromStr;
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or_default()
        ),
        Err(_) => "DATABASE_URL (unparsable)".into(),
    }
}

/// Connects, migrates, leases this process's node id (`node_id` if set, else a free one)
/// and builds the api state (used by `serve`, `api`, `gateway`, `sfu` and `admin`). Release
/// the [`NodeId`] at a clean stop.
pub async fn state(
    config: &Config,
    node_id: Option<u16>,
) -> anyhow::Result<(AppState, Option<EmbeddedPg>, NodeId)> {
    let (url, pg) = database(config).await?;
    let pool = connect_waiting(&url, config.db_max_connections, config.db_wait).await?;
    copains_api::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    let node = NodeId::obtain(&pool, node_id, config.node_lease).await?;
    let signer = config.signing_key()?;
    let state = AppState::new(pool, signer, config.api.clone(), node.id)?;
    state.ip_rules.reload(&state.db).await?;
    Ok((state, pg, node))
}

/// Which roles one process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The REST API.
    pub api: bool,
    /// The WebSocket gateway.
    pub gateway: bool,
    /// The web app's static files.
    pub web: bool,
    /// The SFU and its voice bridge.
    pub sfu: bool,
}

impl Roles {
    /// `copains serve`.
    pub const ALL: Roles = Roles {
        api: true,
        gateway: true,
        web: true,
        sfu: true,
    };
    /// `copains api`.
    pub const API: Roles = Roles {
        api: true,
        gateway: false,
        web: false,
        sfu: false,
    };
    /// `copains sfu`.
    pub const SFU: Roles = Roles {
        api: false,
        gateway: false,
        web: false,
        sfu: true,
    };
    /// `copains gateway`.
    pub const GATEWAY: Roles = Roles {
        api: false,
        gateway: true,
        web: false,
        sfu: false,
    };

    fn names(self) -> String {
        let mut v = Vec::new();
        if self.api {
            v.push("api");
        }
        if self.gateway {
            v.push("gateway");
        }
        if self.web {
            v.push("web");
        }
        if self.sfu {
            v.push("sfu");
        }
        v.join("+")
    }
}

/// The bus and presence store: Redis when configured (many nodes), else in-process.
async fn bus_and_presence(
    config: &Config,
) -> anyhow::Result<(Arc<dyn EventBus>, Arc<dyn copains_signaling::PresenceStore>)> {
    match &config.redis_url {
        Some(url) => {
            let bus = copains_signaling::RedisBus::connect(url, "copains")
                .await
                .context("connecting the Redis event bus")?;
            let presence = copains_signaling::RedisPresence::connect(
                url,
                "copains",
                std::time::Duration::from_secs(90),
            )
            .await
            .context("connecting the Redis presence store")?;
            tracing::info!("event bus: Redis pub/sub (multi-node)");
            Ok((Arc::new(bus), Arc::new(presence)))
        }
        None => {
            tracing::info!("event bus: in-process (single node, no Redis)");
            Ok((
                Arc::new(copains_signaling::InProcessBus::new()),
                Arc::new(copains_signaling::MemoryPresence::new()),
            ))
        }
    }
}

/// Runs the given roles until SIGTERM/SIGINT, then drains gateway connections and stops.
pub async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    crate::listen::raise_open_file_limit();
    if roles.gateway && !roles.api && config.redis_url.is_none() {
        tracing::warn!(
            "a gateway without COPAINS_REDIS_URL hears no api node: set it when running roles apart"
        );
    }
    let (bus, presence) = bus_and_presence(&config).await?;
    let (state, _pg, node) = state(&config, config.node_id).await?;
    let state = state.with_bus(bus.clone()).with_presence(presence.clone());
    if let Some(url) = &config.redis_url {
        // Several api nodes: their history caches stay coherent through Redis.
        copains_api::messaging::history_sync::start(state.history.clone(), url, "copains")
            .await
            .context("connecting the history cache to the other nodes (Redis)")?;
    }
    copains_api::messaging::attachments::install(
        Arc::new(copains_api::messaging::attachments::LocalDisk::new(
            config.data_dir.join("attachments"),
        )),
        config.max_attachment_bytes,
    );
    spawn_policy_refresh(state.clone());

    let mut app: Router = if roles.api {
        copains_api::routes::router(state.clone())
    } else {
        copains_api::routes::ops_router(state.clone())
    };
    let gateway = if roles.gateway {
        let gs = copains_signaling::GatewayState {
            verifier: state.verifier.clone(),
            bus: bus.clone(),
            directory: Arc::new(copains_api::directory::PgDirectory::new(state.db.clone())),
            presence,
            config: copains_signaling::GatewayConfig {
                allowed_origins: Some(config.allowed_origins.clone()),
                ..Default::default()
            },
        };
        let gw = Arc::new(copains_signaling::Gateway::start(gs));
        app = app.merge(gw.router());
        Some(gw)
    } else {
        None
    };
    let _sfu = if roles.sfu {
        if !roles.gateway && config.redis_url.is_none() {
            tracing::warn!(
                "an SFU without COPAINS_REDIS_URL hears no gateway: set it when running roles apart"
            );
        }
        let (sfu, events) =
            copains_sfu::SfuHandle::start(config.sfu.clone()).context("starting the SFU")?;
        tracing::info!(addrs = ?sfu.local_addrs(), "SFU listening (UDP)");
        let placement = match &config.redis_url {
            Some(url) => {
                let node = format!(
                    "{}-{}-{:08x}",
                    node.id,
                    std::process::id(),
                    rand::random::<u32>()
                );
                tracing::info!(%node, "SFU node registers in Redis");
                crate::voice::Placement::redis(url, node)
                    .await
                    .context("connecting the SFU placement to Redis")?
            }
            None => crate::voice::Placement::Local,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let bridge = tokio::spawn(crate::voice::run(
            bus.clone(),
            sfu.clone(),
            events,
            state.db.clone(),
            placement,
            stop_rx,
        ));
        Some((sfu, stop_tx, bridge))
    } else {
        None
    };
    if roles.web {
        app = app.merge(crate::web::router(&config.web_dir));
    } else {
        app = app.fallback(copains_api::routes::no_route);
    }
    let app = app.layer(TraceLayer::new_for_http());
    if let Some(maddr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(maddr)
            .await
            .with_context(|| format!("listening on {maddr} (COPAINS_METRICS_ADDR)"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics listener on http://{maddr}/metrics");
        let metrics_app = copains_api::routes::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, metrics_app).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("listening on {}", config.http_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, roles = %roles.names(), "copains is serving on http://{addr}");
    let drain = gateway.clone();
    let voice_drain = _sfu.as_ref().map(|(_, stop, _)| stop.clone());
    let lease_lost = node.lost();
    let shutdown = async move {
        // Asked to stop, or the node id lease is lost (no id may be made past it).
        tokio::select! {
            _ = crate::shutdown::signal() => {}
            _ = lease_lost => {}
        }
        // Voice participants are told to rejoin first (through the gateway, still open)...
        if let Some(stop) = voice_drain {
            let _ = stop.send(true);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        // ...then gateway clients are told to reconnect (elsewhere) before the listener closes.
        if let Some(gw) = drain {
            gw.shutdown(std::time::Duration::from_secs(5)).await;
        }
    };
    crate::listen::serve(
        listener,
        app,
        config.conn.clone(),
        shutdown,
        std::time::Duration::from_secs(10),
    )
    .await?;
    let lost = node.is_lost();
    node.release().await;
    state.db.close().await;
    if lost {
        anyhow::bail!("stopped: the node id lease was lost (see the log above)");
    }
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
