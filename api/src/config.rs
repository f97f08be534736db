//! The settings the api role reads. The binary fills them from flags, `COPAINS_*`
//! variables and the TOML file; tests build them directly.

use std::time::Duration;

use ipnet::IpNet;

/// Settings of the api role.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Public base URL of the web app, used in password-reset links (no trailing slash).
    pub public_url: String,
    /// Largest request body accepted, in bytes (larger: 413).
    pub body_limit: usize,
    /// Peers whose `X-Forwarded-For` is believed (e.g. the Caddy container). Empty: none.
    pub trusted_proxies: Vec<IpNet>,
    /// Requests allowed in a burst on each rate-limited auth route, per client IP.
    pub auth_rate_burst: u32,
    /// Time to earn back one request on the rate-limited auth routes.
    pub auth_rate_period: Duration,
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Absolute lifetime of a session (its refresh tokens die with it).
    pub session_ttl: Duration,
    /// Lifetime of a password-reset token.
    pub reset_ttl: Duration,
    /// Whether the refresh cookie carries `Secure` (on unless explicitly turned off for plain-HTTP dev on a LAN).
    pub cookie_secure: bool,
    /// SMTP settings; `None`: no mail, admins issue reset links with `copains admin reset-link`.
    pub smtp: Option<SmtpConfig>,
    /// Most argon2 computations run at once (each takes ~19 MiB and tens of ms).
    pub max_concurrent_hashes: usize,
    /// ICE servers handed to clients for calls (STUN and TURN).
    pub ice: IceConfig,
    /// Bearer token that opens `/metrics` (and `/version`'s build details) on the public
    /// listener; `None`: `/metrics` answers 404 there (scrape the metrics listener instead).
    pub metrics_token: Option<String>,
}

/// STUN/TURN servers for calls. TURN credentials are minted per user with coturn's
/// `use-auth-secret` scheme (seed 001): username `expiry:user_id`, password
/// base64(HMAC-SHA1(secret, username)).
#[derive(Clone, Debug, Default)]
pub struct IceConfig {
    /// STUN URLs (`stun:host:port`).
    pub stun_urls: Vec<String>,
    /// TURN URLs (`turn:host:3478?transport=udp`, `turns:host:5349`...).
    pub turn_urls: Vec<String>,
    /// The secret shared with coturn (`static-auth-secret`); `None`: no TURN.
    pub turn_secret: Option<String>,
    /// Lifetime of minted TURN credentials.
    pub turn_ttl: Duration,
}

/// Where password-reset mail is sent from.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// SMTP URL as lettre reads it, e.g. `smtps://user:pass@mail.example.org` or `smtp://127.0.0.1:1025`.
    pub url: String,
    /// The From address.
    pub from: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            public_url: "http://localhost:8080".into(),
            body_limit: 1024 * 1024,
            trusted_proxies: Vec::new(),
            auth_rate_burst: 10,
            auth_rate_period: Duration::from_secs(6),
            access_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            cookie_secure: true,
            smtp: None,
            max_concurrent_hashes: 4,
            ice: IceConfig {
                turn_ttl: Duration::from_secs(12 * 3600),
                ..IceConfig::default()
            },
            metrics_token: None,
        }
    }
}
