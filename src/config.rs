//! Settings: flags, `COPAINS_*` variables and an optional TOML file, resolved into [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory};
use copains_api::config::{ApiConfig, SmtpConfig};
use serde::Deserialize;

/// Every setting, as given (all optional: defaults are applied by [`Config::load`]).
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings (keys like `http_addr = "0.0.0.0:8080"`).
    #[arg(long, env = "COPAINS_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL. Unset: `serve` starts a private cluster under the data folder.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address the HTTP server listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "COPAINS_HTTP_ADDR", global = true)]
    pub http_addr: Option<String>,
    /// Redis URL for the bus and presence across nodes. Unset: one node, no Redis.
    #[arg(long, env = "COPAINS_REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Folder for local state: the embedded PostgreSQL, the token signing key [default: ./data].
    #[arg(long, env = "COPAINS_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Public URL of the web app, used in links sent to users [default: http://localhost:8080].
    #[arg(long, env = "COPAINS_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Folder of the built web app served at `/` [default: frontend/build].
    #[arg(long, env = "COPAINS_WEB_DIR", global = true)]
    pub web_dir: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM) signing access tokens; created if missing
    /// [default: <data_dir>/jwt-ed25519.pem]. Every API node of an instance needs the same key.
    #[arg(long, env = "COPAINS_JWT_KEY_FILE", global = true)]
    pub jwt_key_file: Option<PathBuf>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "COPAINS_BODY_LIMIT", global = true)]
    pub body_limit: Option<usize>,
    /// Comma-separated proxies (IPs or CIDRs) whose X-Forwarded-For is believed [default: none].
    #[arg(long, env = "COPAINS_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// Burst of requests per client IP on login, register, refresh and forgot [default: 10].
    #[arg(long, env = "COPAINS_AUTH_RATE_BURST", global = true)]
    pub auth_rate_burst: Option<u32>,
    /// Milliseconds to earn back one auth request [default: 6000].
    #[arg(long, env = "COPAINS_AUTH_RATE_PERIOD_MS", global = true)]
    pub auth_rate_period_ms: Option<u64>,
    /// SMTP URL for password-reset mail, e.g. smtps://user:pass@mail.example.org [default: none].
    #[arg(long, env = "COPAINS_SMTP_URL", global = true, hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// From address of mail [default: Copains <noreply@localhost>].
    #[arg(long, env = "COPAINS_SMTP_FROM", global = true)]
    pub smtp_from: Option<String>,
    /// Largest number of database connections of this process [default: 20].
    #[arg(long, env = "COPAINS_DB_MAX_CONNECTIONS", global = true)]
    pub db_max_connections: Option<u32>,
    /// Seconds a starting process waits for PostgreSQL to answer, saying so every 2 s, before
    /// it exits with an error (a container's restart policy then starts it again) [default: 30].
    #[arg(long, env = "COPAINS_DB_WAIT_SECS", global = true)]
    pub db_wait_secs: Option<u64>,
    /// This process's node number (0–1023), part of every id it makes; unique per running
    /// process of an instance [default: leased: a free one, held in PostgreSQL while the process runs].
    #[arg(long, env = "COPAINS_NODE_ID", global = true)]
    pub node_id: Option<u16>,
    /// Seconds a node id lease lasts unless renewed (renewed every third of it); a process that
    /// cannot renew it in time stops, and a killed process's id is free again after it [default: 30].
    #[arg(long, env = "COPAINS_NODE_LEASE_SECS", global = true)]
    pub node_lease_secs: Option<u64>,
    /// Mark the refresh cookie `Secure` (turn off only for plain-HTTP tests on a LAN) [default: true].
    #[arg(long, env = "COPAINS_COOKIE_SECURE", global = true)]
    pub cookie_secure: Option<bool>,
    /// Log filter, e.g. `info` or `copains_api=debug` [default: info].
    #[arg(long, env = "COPAINS_LOG", global = true)]
    pub log: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "COPAINS_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Comma-separated Origins allowed to open the gateway WebSocket
    /// [default: the origin of COPAINS_PUBLIC_URL plus http://localhost:PORT and http://127.0.0.1:PORT].
    #[arg(long, env = "COPAINS_ALLOWED_ORIGINS", global = true)]
    pub allowed_origins: Option<String>,
    /// Comma-separated STUN URLs handed to clients, e.g. `stun:turn.example.org:3478` [default: none].
    #[arg(long, env = "COPAINS_STUN_URLS", global = true)]
    pub stun_urls: Option<String>,
    /// Comma-separated TURN URLs, e.g. `turn:turn.example.org:3478?transport=udp` [default: none].
    #[arg(long, env = "COPAINS_TURN_URLS", global = true)]
    pub turn_urls: Option<String>,
    /// The secret shared with coturn (`static-auth-secret`) to mint TURN credentials [default: none].
    #[arg(
        long,
        env = "COPAINS_TURN_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Seconds minted TURN credentials stay valid [default: 43200].
    #[arg(long, env = "COPAINS_TURN_TTL_SECS", global = true)]
    pub turn_ttl_secs: Option<u64>,
    /// Largest attachment upload in bytes [default: 8388608].
    #[arg(long, env = "COPAINS_MAX_ATTACHMENT_BYTES", global = true)]
    pub max_attachment_bytes: Option<usize>,
    /// UDP port range of the SFU, e.g. `50000-50100` [default: 50000-50100].
    #[arg(long, env = "COPAINS_SFU_PORTS", global = true)]
    pub sfu_ports: Option<String>,
    /// Address the SFU's UDP sockets bind to [default: 127.0.0.1; use 0.0.0.0 on a server].
    #[arg(long, env = "COPAINS_SFU_BIND_IP", global = true)]
    pub sfu_bind_ip: Option<String>,
    /// Address announced to clients in ICE candidates (the public IP behind a 1:1 NAT)
    /// [default: the bind address].
    #[arg(long, env = "COPAINS_SFU_ANNOUNCED_IP", global = true)]
    pub sfu_announced_ip: Option<String>,
    /// Address of a separate listener serving only `/metrics` (and the other operational
    /// endpoints), e.g. `127.0.0.1:9100`; keep it off the public network [default: none].
    #[arg(long, env = "COPAINS_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<String>,
    /// Bearer token that opens `/metrics` on the public listener (`Authorization: Bearer …`);
    /// without it `/metrics` answers 404 there [default: none].
    #[arg(
        long,
        env = "COPAINS_METRICS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Milliseconds a client has to send a request's headers, counted from when the connection
    /// starts waiting for them (so also the idle timeout of a keep-alive connection) [default: 10000].
    #[arg(long, env = "COPAINS_HEADER_TIMEOUT_MS", global = true)]
    pub header_timeout_ms: Option<u64>,
    /// Longest wait in milliseconds for the next chunk of a request body [default: 30000].
    #[arg(long, env = "COPAINS_BODY_TIMEOUT_MS", global = true)]
    pub body_timeout_ms: Option<u64>,
    /// Most HTTP connections one client IP may hold at once; trusted proxies are exempt
    /// (0: no cap) [default: 256].
    #[arg(long, env = "COPAINS_MAX_CONNECTIONS_PER_IP", global = true)]
    pub max_connections_per_ip: Option<usize>,
    /// Folder of the PostgreSQL programs for the embedded cluster [default: newest /usr/lib/postgresql/*/bin].
    #[arg(long, env = "COPAINS_PG_BIN_DIR", global = true)]
    pub pg_bin_dir: Option<PathBuf>,
}

macro_rules! merge {
    ($a:expr, $b:expr, $($f:ident),*) => { $( if $a.$f.is_none() { $a.$f = $b.$f.clone(); } )* };
}

/// The resolved configuration of a process.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL URL; `None`: embedded cluster.
    pub database_url: Option<String>,
    /// Listen address.
    pub http_addr: SocketAddr,
    /// Redis URL.
    pub redis_url: Option<String>,
    /// Local state folder.
    pub data_dir: PathBuf,
    /// Web app folder.
    pub web_dir: PathBuf,
    /// Token signing key file.
    pub jwt_key_file: PathBuf,
    /// Pool size.
    pub db_max_connections: u32,
    /// How long a start waits for PostgreSQL.
    pub db_wait: std::time::Duration,
    /// Node number set by hand; `None`: leased.
    pub node_id: Option<u16>,
    /// Node id lease time.
    pub node_lease: Duration,
    /// Log filter.
    pub log: String,
    /// JSON logs.
    pub log_json: bool,
    /// PostgreSQL programs for the embedded cluster.
    pub pg_bin_dir: Option<PathBuf>,
    /// Origins allowed on the gateway WebSocket.
    pub allowed_origins: Vec<String>,
    /// The SFU's sockets and announced address.
    pub sfu: copains_sfu::SfuConfig,
    /// Largest attachment upload, bytes.
    pub max_attachment_bytes: usize,
    /// The separate metrics listener, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Connection-level limits of the HTTP listener.
    pub conn: crate::listen::ConnLimits,
    /// The api role's settings.
    pub api: ApiConfig,
}

impl Config {
    /// Applies the TOML file under the flags/variables, then the defaults, and checks values.
    pub fn load(mut s: Settings) -> anyhow::Result<Self> {
        if let Some(path) = s.config.clone() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: Settings =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            merge!(
                s,
                file,
                database_url,
                http_addr,
                redis_url,
                data_dir,
                public_url,
                web_dir,
                jwt_key_file,
                body_limit,
                trusted_proxies,
                auth_rate_burst,
                auth_rate_period_ms,
                smtp_url,
                smtp_from,
                db_max_connections,
                db_wait_secs,
                node_id,
                node_lease_secs,
                cookie_secure,
                log,
                log_format,
                metrics_addr,
                metrics_token,
                header_timeout_ms,
                body_timeout_ms,
                max_connections_per_ip,
                pg_bin_dir
            );
        }
        // An empty value (`COPAINS_REDIS_URL=` in a .env) means unset.
        for f in [
            &mut s.database_url,
            &mut s.http_addr,
            &mut s.redis_url,
            &mut s.public_url,
            &mut s.trusted_proxies,
            &mut s.smtp_url,
            &mut s.smtp_from,
            &mut s.log,
            &mut s.log_format,
            &mut s.allowed_origins,
            &mut s.stun_urls,
            &mut s.turn_urls,
            &mut s.turn_secret,
            &mut s.sfu_ports,
            &mut s.sfu_bind_ip,
            &mut s.sfu_announced_ip,
            &mut s.metrics_addr,
            &mut s.metrics_token,
        ] {
            if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *f = None;
            }
        }
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        let http_addr: SocketAddr = s
            .http_addr
            .as_deref()
            .unwrap_or("127.0.0.1:8080")
            .parse()
            .context("COPAINS_HTTP_ADDR must be an address like 127.0.0.1:8080")?;
        let trusted_proxies = match s.trusted_proxies.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    p.parse::<ipnet::IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .with_context(|| {
                            format!("COPAINS_TRUSTED_PROXIES: {p:?} is not an IP or CIDR")
                        })
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let node_id = s.node_id;
        if node_id.is_some_and(|n| n > copains_api::node_lease::MAX_NODE_ID) {
            bail!("COPAINS_NODE_ID must be between 0 and 1023");
        }
        let node_lease = match s.node_lease_secs.unwrap_or(30) {
            n @ 3..=3600 => Duration::from_secs(n),
            _ => bail!("COPAINS_NODE_LEASE_SECS must be between 3 and 3600"),
        };
        let smtp = s.smtp_url.clone().map(|url| SmtpConfig {
            url,
            from: s
                .smtp_from
                .clone()
                .unwrap_or_else(|| "Copains <noreply@localhost>".into()),
        });
        let defaults = ApiConfig::default();
        let api = ApiConfig {
            public_url: s.public_url.clone().unwrap_or(defaults.public_url),
            body_limit: s.body_limit.unwrap_or(defaults.body_limit),
            trusted_proxies,
            auth_rate_burst: s.auth_rate_burst.unwrap_or(defaults.auth_rate_burst),
            auth_rate_period: s
                .auth_rate_period_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.auth_rate_period),
            cookie_secure: s.cookie_secure.unwrap_or(true),
            smtp,
            ice: copains_api::config::IceConfig {
                stun_urls: split_list(s.stun_urls.as_deref()),
                turn_urls: split_list(s.turn_urls.as_deref()),
                turn_secret: s.turn_secret.clone().filter(|t| !t.is_empty()),
                turn_ttl: Duration::from_secs(
                    s.turn_ttl_secs
                        .unwrap_or(12 * 3600)
                        .clamp(60, 7 * 24 * 3600),
                ),
            },
            metrics_token: s.metrics_token.clone(),
            ..defaults
        };
        if api.metrics_token.as_deref().is_some_and(|t| t.len() < 16) {
            bail!("COPAINS_METRICS_TOKEN must be at least 16 characters");
        }
        let metrics_addr = match s.metrics_addr.as_deref() {
            Some(a) => Some(
                a.parse()
                    .context("COPAINS_METRICS_ADDR must be an address like 127.0.0.1:9100")?,
            ),
            None => None,
        };
        if api.body_limit < 1024 {
            bail!("COPAINS_BODY_LIMIT must be at least 1024 bytes");
        }
        let allowed_origins = match s.allowed_origins.as_deref() {
            Some(list) => list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            None => {
                let public = api.public_url.trim_end_matches('/');
                // The origin of the public URL: scheme://host[:port], without a path.
                let origin = match public.find("://") {
                    Some(i) => match public[i + 3..].find('/') {
                        Some(j) => public[..i + 3 + j].to_owned(),
                        None => public.to_owned(),
                    },
                    None => public.to_owned(),
                };
                let port = http_addr.port();
                vec![
                    origin,
                    format!("http://localhost:{port}"),
                    format!("http://127.0.0.1:{port}"),
                ]
            }
        };
        let sfu = copains_sfu::SfuConfig {
            ports: s
                .sfu_ports
                .as_deref()
                .unwrap_or("50000-50100")
                .parse()
                .map_err(|e| anyhow::anyhow!("COPAINS_SFU_PORTS: {e}"))?,
            bind_ip: s
                .sfu_bind_ip
                .as_deref()
                .unwrap_or("127.0.0.1")
                .parse()
                .context("COPAINS_SFU_BIND_IP must be an IP address")?,
            announced_ip: match s.sfu_announced_ip.as_deref() {
                Some(ip) => Some(
                    ip.parse()
                        .context("COPAINS_SFU_ANNOUNCED_IP must be an IP address")?,
                ),
                None => None,
            },
            ..copains_sfu::SfuConfig::default()
        };
        let conn = crate::listen::ConnLimits {
            header_timeout: Duration::from_millis(s.header_timeout_ms.unwrap_or(10_000).max(100)),
            body_timeout: Duration::from_millis(s.body_timeout_ms.unwrap_or(30_000).max(100)),
            max_per_ip: s.max_connections_per_ip.unwrap_or(256),
            exempt: api.trusted_proxies.clone(),
        };
        Ok(Config {
            conn,
            metrics_addr,
            max_attachment_bytes: s.max_attachment_bytes.unwrap_or(8 * 1024 * 1024).max(1024),
            sfu,
            allowed_origins,
            database_url: s.database_url,
            http_addr,
            redis_url: s.redis_url,
            jwt_key_file: s
                .jwt_key_file
                .unwrap_or_else(|| data_dir.join("jwt-ed25519.pem")),
            web_dir: s.web_dir.unwrap_or_else(|| PathBuf::from("frontend/build")),
            data_dir,
            db_max_connections: s.db_max_connections.unwrap_or(20).max(2),
            db_wait: std::time::Duration::from_secs(s.db_wait_secs.unwrap_or(30)),
            node_id,
            node_lease,
            log: s.log.unwrap_or_else(|| "info".into()),
            log_json: s.log_format.as_deref() == Some("json"),
            pg_bin_dir: s.pg_bin_dir,
            api,
        })
    }

    /// Reads the signing key, creating it (mode 0600) if missing.
    pub fn signing_key(&self) -> anyhow::Result<copains_wire::TokenSigner> {
        let path: &Path = &self.jwt_key_file;
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let pem = copains_wire::TokenSigner::generate_pem()?;
            write_private(path, &pem)?;
            tracing::info!(path = %path.display(), "created a new token signing key");
        }
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(copains_wire::TokenSigner::from_pem(&pem)?)
    }
}

fn split_list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// The configuration reference in Markdown, generated from [`Settings`].
pub fn reference() -> String {
    let cmd = crate::cli::Cli::command();
    let mut out = String::from(
        "# Configuration reference\n\nGenerated by `copains config-reference` from the settings struct. \
         Each setting is a flag, an environment variable, or a key of the TOML file named by `--config` \
         (flags beat variables, which beat the file).\n\n| flag | variable | TOML key | meaning |\n|---|---|---|---|\n",
    );
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let help = arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('|', "\\|");
        let key = if long == "config" {
            "—".to_owned()
        } else {
            long.replace('-', "_")
        };
        out.push_str(&format!("| `--{long}` | `{env}` | `{key}` | {help} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_settings_sit_under_flags_and_defaults_apply() {
        let dir = std::env::temp_dir().join(format!("copains-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "http_addr = \"0.0.0.0:9000\"\nbody_limit = 4096\nnode_id = 7\n",
        )
        .unwrap();
        let s = Settings {
            config: Some(file),
            node_id: Some(3),
            ..Default::default()
        };
        let c = Config::load(s).unwrap();
        assert_eq!(c.http_addr.port(), 9000);
        assert_eq!(c.api.body_limit, 4096);
        assert_eq!(c.node_id, Some(3), "the flag beats the file");
        assert_eq!(c.node_lease, Duration::from_secs(30));
        assert!(c.database_url.is_none());
        let empty = Settings {
            redis_url: Some(String::new()),
            sfu_announced_ip: Some(" ".into()),
            ..Default::default()
        };
        let c = Config::load(empty).unwrap();
        assert!(c.redis_url.is_none(), "an empty value means unset");
        assert_eq!(c.node_id, None, "no node id: leased");
        for bad in [0, 2, 3601] {
            let s = Settings {
                node_lease_secs: Some(bad),
                ..Default::default()
            };
            assert!(Config::load(s).is_err(), "lease of {bad} s");
        }
        assert!(
            Config::load(Settings {
                node_id: Some(1024),
                ..Default::default()
            })
            .is_err()
        );
        assert!(c.sfu.announced_ip.is_none());
        let bad = Settings {
            trusted_proxies: Some("nope".into()),
            ..Default::default()
        };
        assert!(Config::load(bad).is_err());
        let unknown = dir.join("u.toml");
        std::fs::write(&unknown, "htp_addr = 1\n").unwrap();
        assert!(
            Config::load(Settings {
                config: Some(unknown),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn reference_lists_every_setting() {
        let r = reference();
        for v in [
            "DATABASE_URL",
            "COPAINS_HTTP_ADDR",
            "COPAINS_REDIS_URL",
            "COPAINS_TRUSTED_PROXIES",
        ] {
            assert!(r.contains(v), "{v} missing from the reference");
        }
    }
}
