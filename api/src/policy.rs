//! The instance access policy (seed 004): registration open / invite-only / closed,
//! email-domain allow and deny lists, and an IP/CIDR deny list checked on every request.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Who may create an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    /// Anyone (subject to the email and IP rules).
    Open,
    /// Only with a registration invite code from an admin.
    InviteOnly,
    /// Nobody; admins create accounts with `copains admin create-user`.
    Closed,
}

impl RegistrationMode {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::InviteOnly => "invite_only",
            Self::Closed => "closed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "invite_only" => Self::InviteOnly,
            "closed" => Self::Closed,
            _ => Self::Open,
        }
    }
}

/// The current registration mode.
pub async fn registration_mode(db: &PgPool) -> Result<RegistrationMode, ApiError> {
    let (m,): (String,) = sqlx::query_as("SELECT registration_mode FROM instance_settings")
        .fetch_one(db)
        .await?;
    Ok(RegistrationMode::parse(&m))
}

/// Refuses an email domain that is denied, or not allowed when an allow list exists.
/// Rules match the domain itself and its parent domains (`example.org` covers `mail.example.org`).
pub async fn check_email_domain(db: &PgPool, domain: &str) -> Result<(), ApiError> {
    let rules: Vec<(String, String)> =
        sqlx::query_as("SELECT domain, rule FROM email_domain_rules")
            .fetch_all(db)
            .await?;
    let covers =
        |rule_domain: &str| domain == rule_domain || domain.ends_with(&format!(".{rule_domain}"));
    if rules.iter().any(|(d, r)| r == "deny" && covers(d)) {
        return Err(ApiError::forbidden(
            "email_domain_denied",
            "accounts with this email domain are not accepted here",
        ));
    }
    let allows: Vec<&String> = rules
        .iter()
        .filter(|(_, r)| r == "allow")
        .map(|(d, _)| d)
        .collect();
    if !allows.is_empty() && !allows.iter().any(|d| covers(d)) {
        return Err(ApiError::forbidden(
            "email_domain_not_allowed",
            "this instance only accepts accounts from allowed email domains",
        ));
    }
    Ok(())
}

/// The IP deny list, cached in memory and reloaded after every change and periodically.
#[derive(Clone, Debug, Default)]
pub struct IpRules {
    nets: Arc<RwLock<Arc<Vec<IpNet>>>>,
}

impl IpRules {
    /// Reloads the list from the database.
    pub async fn reload(&self, db: &PgPool) -> Result<(), ApiError> {
        let rows: Vec<(sqlx::types::ipnetwork::IpNetwork,)> =
            sqlx::query_as("SELECT cidr FROM ip_rules")
                .fetch_all(db)
                .await?;
        let nets = rows
            .into_iter()
            .filter_map(|(n,)| IpNet::new(n.network(), n.prefix()).ok())
            .collect::<Vec<_>>();
        let mut w = self.nets.write().unwrap_or_else(|p| p.into_inner());
        *w = Arc::new(nets);
        Ok(())
    }

    /// Whether `ip` falls in a denied range.
    pub fn denies(&self, ip: IpAddr) -> bool {
        let nets = self.nets.read().unwrap_or_else(|p| p.into_inner()).clone();
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        nets.iter().any(|n| n.contains(&ip))
    }
}

/// Middleware: a request from a denied IP is answered 403 before it reaches a handler.
pub async fn deny_listed_ips(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let ip = crate::extract::peer_ip(&parts, &state.config.trusted_proxies);
    if state.ip_rules.denies(ip) {
        return ApiError::forbidden("ip_denied", "requests from this address are not accepted")
            .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
