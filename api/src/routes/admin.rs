//! `/admin`: the instance access policy and account suspension, for instance admins.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AdminAuth, Json, Path};
use crate::policy::{self, RegistrationMode};
use crate::secret;
use crate::state::AppState;
use crate::validate;

/// The `/admin` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, update_policy))
        .routes(routes!(put_email_domain, delete_email_domain))
        .routes(routes!(add_ip_rule))
        .routes(routes!(delete_ip_rule))
        .routes(routes!(create_registration_invite))
        .routes(routes!(suspend_user, unsuspend_user))
        .routes(routes!(user_reset_link))
}

/// An email-domain rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmailDomainRule {
    /// The domain (covers its subdomains).
    pub domain: String,
    /// `allow` or `deny`.
    pub rule: DomainRule,
}

/// Whether a domain is allowed or denied.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DomainRule {
    /// Only allowed domains may register once any allow rule exists.
    Allow,
    /// Denied domains may never register.
    Deny,
}

/// An IP deny rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct IpRule {
    /// Rule id.
    pub id: Id,
    /// Address or range, e.g. `203.0.113.0/24`.
    pub cidr: String,
    /// Why.
    pub reason: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// The whole access policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct Policy {
    /// Who may register.
    pub registration_mode: RegistrationMode,
    /// Email-domain rules.
    pub email_domains: Vec<EmailDomainRule>,
    /// IP deny rules.
    pub ip_rules: Vec<IpRule>,
}

/// `PATCH /admin/policy` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdatePolicy {
    /// New registration mode.
    pub registration_mode: RegistrationMode,
}

/// `PUT /admin/policy/email-domains/{domain}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutDomain {
    /// `allow` or `deny`.
    pub rule: DomainRule,
}

/// `POST /admin/policy/ip-rules` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewIpRule {
    /// Address or CIDR range.
    pub cidr: String,
    /// Why (≤ 512 characters).
    pub reason: Option<String>,
}

/// `POST /admin/registration-invites` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewRegistrationInvite {
    /// How many accounts it may create (absent: unlimited).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_uses: Option<i32>,
    /// Seconds until it expires (absent: never).
    #[schema(minimum = 1, maximum = 31536000)]
    pub max_age_secs: Option<i64>,
}

/// A registration invite.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationInvite {
    /// The code to give to `POST /auth/register` as `invite`.
    pub code: String,
    /// Use limit.
    pub max_uses: Option<i32>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /admin/users/{id}/suspend` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Suspend {
    /// Why (≤ 512 characters).
    #[schema(max_length = 512)]
    pub reason: String,
}

/// A reset link.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetLink {
    /// Open it to choose a new password (single use, one hour).
    pub url: String,
}

async fn load_policy(state: &AppState) -> ApiResult<Policy> {
    let registration_mode = policy::registration_mode(&state.db).await?;
    let domains: Vec<(String, String)> =
        sqlx::query_as("SELECT domain, rule FROM email_domain_rules ORDER BY domain")
            .fetch_all(&state.db)
            .await?;
    let ips: Vec<(i64, String, Option<String>, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, cidr::TEXT, reason, created_at FROM ip_rules ORDER BY id")
            .fetch_all(&state.db)
            .await?;
    Ok(Policy {
        registration_mode,
        email_domains: domains
            .into_iter()
            .map(|(domain, rule)| EmailDomainRule {
                domain,
                rule: if rule == "allow" {
                    DomainRule::Allow
                } else {
                    DomainRule::Deny
                },
            })
            .collect(),
        ip_rules: ips
            .into_iter()
            .map(|(id, cidr, reason, created_at)| IpRule {
                id: Id(id),
                cidr,
                reason,
                created_at,
            })
            .collect(),
    })
}

/// The access policy.
#[utoipa::path(get, path = "/admin/policy", tag = "admin", security(("bearer" = [])), responses((status = 200, body = Policy)))]
pub async fn get_policy(
    State(state): State<AppState>,
    _a: AdminAuth,
) -> ApiResult<axum::Json<Policy>> {
    Ok(axum::Json(load_policy(&state).await?))
}

/// Change the registration mode.
#[utoipa::path(patch, path = "/admin/policy", tag = "admin", security(("bearer" = [])), request_body = UpdatePolicy,
    responses((status = 200, body = Policy)))]
pub async fn update_policy(
    State(state): State<AppState>,
    _a: AdminAuth,
    Json(req): Json<UpdatePolicy>,
) -> ApiResult<axum::Json<Policy>> {
    sqlx::query("UPDATE instance_settings SET registration_mode = $1, updated_at = now()")
        .bind(req.registration_mode.as_str())
        .execute(&state.db)
        .await?;
    Ok(axum::Json(load_policy(&state).await?))
}

fn normalize_domain(d: &str) -> ApiResult<String> {
    let d = d.trim().trim_start_matches('@').to_lowercase();
    // Reuse the email rule on a synthetic address.
    validate::email(&format!("x@{d}"))
        .map_err(|_| ApiError::validation("domain is not a valid domain name"))
}

/// Allow or deny an email domain.
#[utoipa::path(put, path = "/admin/policy/email-domains/{domain}", tag = "admin", security(("bearer" = [])),
    params(("domain" = String, Path, description = "Domain, e.g. example.org")), request_body = PutDomain,
    responses((status = 200, body = EmailDomainRule)))]
pub async fn put_email_domain(
    State(state): State<AppState>,
    _a: AdminAuth,
    Path(domain): Path<String>,
    Json(req): Json<PutDomain>,
) -> ApiResult<axum::Json<EmailDomainRule>> {
    let domain = normalize_domain(&domain)?;
    let rule = if req.rule == DomainRule::Allow {
        "allow"
    } else {
        "deny"
    };
    sqlx::query(
        "INSERT INTO email_domain_rules (domain, rule) VALUES ($1, $2)
         ON CONFLICT (domain) DO UPDATE SET rule = EXCLUDED.rule",
    )
    .bind(&domain)
    .bind(rule)
    .execute(&state.db)
    .await?;
    Ok(axum::Json(EmailDomainRule {
        domain,
        rule: req.rule,
    }))
}

/// Remove an email-domain rule.
#[utoipa::path(delete, path = "/admin/policy/email-domains/{domain}", tag = "admin", security(("bearer" = [])),
    params(("domain" = String, Path, description = "Domain")), responses((status = 204, description = "Removed")))]
pub async fn delete_email_domain(
    State(state): State<AppState>,
    _a: AdminAuth,
    Path(domain): Path<String>,
) -> ApiResult<StatusCode> {
    let r = sqlx::query("DELETE FROM email_domain_rules WHERE domain = $1")
        .bind(domain.trim().to_lowercase())
        .execute(&state.db)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("no rule for this domain"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deny an address or range.
#[utoipa::path(post, path = "/admin/policy/ip-rules", tag = "admin", security(("bearer" = [])), request_body = NewIpRule,
    responses((status = 201, body = IpRule), (status = 409, description = "Range already denied", body = crate::error::ErrorBody)))]
pub async fn add_ip_rule(
    State(state): State<AppState>,
    _a: AdminAuth,
    Json(req): Json<NewIpRule>,
) -> ApiResult<(StatusCode, axum::Json<IpRule>)> {
    let net: ipnet::IpNet = req
        .cidr
        .parse()
        .or_else(|_| req.cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| ApiError::validation("cidr must be an IP address or a CIDR range"))?;
    let net = net.trunc();
    if let Some(r) = &req.reason {
        validate::text("reason", r, 512)?;
    }
    let id = state.ids.next();
    let cidr = sqlx::types::ipnetwork::IpNetwork::new(net.network(), net.prefix_len())
        .map_err(|_| ApiError::validation("bad CIDR range"))?;
    let row: Result<(DateTime<Utc>,), sqlx::Error> = sqlx::query_as(
        "INSERT INTO ip_rules (id, cidr, reason) VALUES ($1, $2, $3) RETURNING created_at",
    )
    .bind(id.0)
    .bind(cidr)
    .bind(&req.reason)
    .fetch_one(&state.db)
    .await;
    let (created_at,) = match row {
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            return Err(ApiError::conflict(
                "ip_rule_exists",
                "this range is already denied",
            ));
        }
        other => other?,
    };
    state.ip_rules.reload(&state.db).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(IpRule {
            id,
            cidr: net.to_string(),
            reason: req.reason,
            created_at,
        }),
    ))
}

/// Remove an IP rule.
#[utoipa::path(delete, path = "/admin/policy/ip-rules/{rule_id}", tag = "admin", security(("bearer" = [])),
    params(("rule_id" = String, Path, description = "Rule id")), responses((status = 204, description = "Removed")))]
pub async fn delete_ip_rule(
    State(state): State<AppState>,
    _a: AdminAuth,
    Path(rule_id): Path<Id>,
) -> ApiResult<StatusCode> {
    let r = sqlx::query("DELETE FROM ip_rules WHERE id = $1")
        .bind(rule_id.0)
        .execute(&state.db)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("unknown rule"));
    }
    state.ip_rules.reload(&state.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a registration invite (for invite-only instances).
#[utoipa::path(post, path = "/admin/registration-invites", tag = "admin", security(("bearer" = [])), request_body = NewRegistrationInvite,
    responses((status = 201, body = RegistrationInvite)))]
pub async fn create_registration_invite(
    State(state): State<AppState>,
    a: AdminAuth,
    Json(req): Json<NewRegistrationInvite>,
) -> ApiResult<(StatusCode, axum::Json<RegistrationInvite>)> {
    if req.max_uses.is_some_and(|m| !(1..=100_000).contains(&m)) {
        return Err(ApiError::validation(
            "max_uses must be between 1 and 100000",
        ));
    }
    if req
        .max_age_secs
        .is_some_and(|s| !(1..=31_536_000).contains(&s))
    {
        return Err(ApiError::validation(
            "max_age_secs must be between 1 and 31536000",
        ));
    }
    let code = secret::new_code();
    let expires_at = req
        .max_age_secs
        .map(|s| Utc::now() + chrono::Duration::seconds(s));
    sqlx::query("INSERT INTO registration_invites (code, created_by, max_uses, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(&code)
        .bind(a.0.user_id.0)
        .bind(req.max_uses)
        .bind(expires_at)
        .execute(&state.db)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(RegistrationInvite {
            code,
            max_uses: req.max_uses,
            expires_at,
        }),
    ))
}

/// Suspend an account instance-wide (its sessions end at once).
#[utoipa::path(post, path = "/admin/users/{user_id}/suspend", tag = "admin", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")), request_body = Suspend,
    responses((status = 204, description = "Suspended")))]
pub async fn suspend_user(
    State(state): State<AppState>,
    a: AdminAuth,
    Path(user_id): Path<Id>,
    Json(req): Json<Suspend>,
) -> ApiResult<StatusCode> {
    validate::text("reason", &req.reason, 512)?;
    if user_id == a.0.user_id {
        return Err(ApiError::validation("admins cannot suspend themselves"));
    }
    accounts::set_suspended(&state, user_id, Some(&req.reason)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a suspension.
#[utoipa::path(delete, path = "/admin/users/{user_id}/suspend", tag = "admin", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")), responses((status = 204, description = "Reinstated")))]
pub async fn unsuspend_user(
    State(state): State<AppState>,
    _a: AdminAuth,
    Path(user_id): Path<Id>,
) -> ApiResult<StatusCode> {
    accounts::set_suspended(&state, user_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a password-reset link for a user (works without SMTP).
#[utoipa::path(post, path = "/admin/users/{user_id}/reset-link", tag = "admin", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id")), responses((status = 201, body = ResetLink)))]
pub async fn user_reset_link(
    State(state): State<AppState>,
    _a: AdminAuth,
    Path(user_id): Path<Id>,
) -> ApiResult<(StatusCode, axum::Json<ResetLink>)> {
    accounts::get_user(&state.db, user_id).await?;
    let url = accounts::issue_reset_link(&state, user_id).await?;
    Ok((StatusCode::CREATED, axum::Json(ResetLink { url })))
}
