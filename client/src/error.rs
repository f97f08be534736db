//! The client's one error type.

use copains_crypto::backup::BackupError;
use copains_crypto::device::DeviceError;
use copains_crypto::megolm::MegolmError;
use copains_crypto::olm::OlmError;

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP request failed (connection, timeout, unreadable body).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error `{code, message}`.
    #[error("server answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// The message.
        message: String,
    },
    /// A device-key operation failed (bad signature on a peer's keys, invalid ids).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// An Olm operation failed.
    #[error(transparent)]
    Olm(#[from] OlmError),
    /// A Megolm operation failed.
    #[error(transparent)]
    Megolm(#[from] MegolmError),
    /// A key-backup operation failed (wrong recovery key, corrupted blob).
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The server or a peer sent something inconsistent (keys that do not match, a message
    /// claiming another sender...).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, if this is an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if this is an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Shorthand for client results.
pub type ClientResult<T> = Result<T, ClientError>;
