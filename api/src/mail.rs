//! Password-reset mail over SMTP (lettre), when configured. Without SMTP, admins print
//! reset links with `copains admin reset-link USER`: a reset is never impossible.

use lettre::message::{Mailbox, Message, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::SmtpConfig;
use crate::error::ApiError;

/// Sends mail through one SMTP relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `cfg` (the connection is opened on first send).
    pub fn new(cfg: &SmtpConfig) -> Result<Self, ApiError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.url)
            .map_err(|e| ApiError::Internal(format!("bad SMTP URL: {e}")))?
            .build();
        let from = cfg
            .from
            .parse()
            .map_err(|e| ApiError::Internal(format!("bad SMTP from: {e}")))?;
        Ok(Self { transport, from })
    }

    /// Sends the reset link to `to`.
    pub async fn send_reset(&self, to: &str, username: &str, link: &str) -> Result<(), ApiError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| ApiError::Internal(format!("bad recipient: {e}")))?;
        let body = format!(
            "Hello {username},\n\nSomeone asked to reset the password of your Copains account.\n\
             If it was you, open this link within the hour:\n\n{link}\n\n\
             If it was not you, ignore this message: your password stays as it is.\n"
        );
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Reset your Copains password")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| ApiError::Internal(format!("building mail: {e}")))?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::Internal(format!("sending mail: {e}")))
    }
}
