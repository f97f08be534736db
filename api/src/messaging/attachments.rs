//! Attachments: a file is uploaded to a place first (`POST /channels/{id}/attachments`, raw
//! body, size-capped), then claimed by one message of the same place by the same user
//! (`attachments: [ids]` when sending). Bytes go to a [`Storage`] backend — [`LocalDisk`] by
//! default, under `$COPAINS_DATA_DIR/attachments` (or `data/attachments`), keyed by the
//! attachment id, so a client-chosen file name never reaches the file system. In encrypted
//! places the client uploads an encrypted blob and the server serves it as
//! `application/octet-stream`.
//!
//! The api's `AppState` has no storage field, so the backend is process-wide: the binary may
//! [`install`] one at startup (tests install a temporary directory); otherwise the default is
//! made on first use. Settings: `COPAINS_DATA_DIR`, `COPAINS_MAX_ATTACHMENT_BYTES`
//! (default 8 MiB).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use copains_wire::Id;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::place::Place;
use crate::communities::permissions::Permissions;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Most attachments on one message.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;
/// Default upload cap, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// A boxed, sendable future (keeps [`Storage`] object-safe without a macro).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where attachment bytes are kept.
pub trait Storage: Send + Sync + 'static {
    /// Stores `bytes` under `key` (overwrites).
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, std::io::Result<()>>;
    /// Reads the bytes under `key` (`NotFound` when absent).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Vec<u8>>>;
}

/// Files in one directory, named by key.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    dir: PathBuf,
}

impl LocalDisk {
    /// Files under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "storage keys are alphanumeric",
            ));
        }
        Ok(self.dir.join(key))
    }
}

impl Storage for LocalDisk {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            tokio::fs::create_dir_all(&self.dir).await?;
            // Write then rename, so a reader never sees a half-written file.
            let tmp = self.dir.join(format!("{key}.part"));
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Vec<u8>>> {
        Box::pin(async move { tokio::fs::read(self.path(key)?).await })
    }
}

struct Installed {
    storage: Arc<dyn Storage>,
    max_bytes: usize,
}

static STORAGE: OnceLock<Installed> = OnceLock::new();

/// Installs the process-wide backend and upload cap; `false` if one was already in use.
pub fn install(storage: Arc<dyn Storage>, max_bytes: usize) -> bool {
    STORAGE.set(Installed { storage, max_bytes }).is_ok()
}

fn installed() -> &'static Installed {
    STORAGE.get_or_init(|| {
        let dir = std::env::var_os("COPAINS_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("data"))
            .join("attachments");
        let max_bytes = std::env::var("COPAINS_MAX_ATTACHMENT_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        Installed {
            storage: Arc::new(LocalDisk::new(dir)),
            max_bytes,
        }
    })
}

/// The upload cap in bytes.
pub fn max_bytes() -> usize {
    installed().max_bytes
}

/// An attachment as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attachment {
    /// Attachment id.
    pub id: Id,
    /// The place it was uploaded to.
    pub channel_id: Id,
    /// The message that claimed it, if any yet.
    pub message_id: Option<Id>,
    /// File name as given by the uploader (1–255 characters, no path separators); always
    /// `encrypted` in encrypted places (the real name travels inside the encrypted message).
    pub filename: String,
    /// Media type as given (`application/octet-stream` in encrypted places).
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// An encrypted blob (uploaded to an encrypted place).
    pub encrypted: bool,
    /// Where to download it (relative to the instance).
    pub url: String,
    /// Upload time.
    pub created_at: DateTime<Utc>,
}

type Row = (
    i64,
    i64,
    Option<i64>,
    String,
    String,
    i64,
    bool,
    DateTime<Utc>,
);

const COLUMNS: &str =
    "id, channel_id, message_id, filename, content_type, size, encrypted, created_at";

fn from_row(r: Row) -> Attachment {
    Attachment {
        id: Id(r.0),
        channel_id: Id(r.1),
        message_id: r.2.map(Id),
        url: format!("/api/v1/channels/{}/attachments/{}", r.1, r.0),
        filename: r.3,
        content_type: r.4,
        size: r.5,
        encrypted: r.6,
        created_at: r.7,
    }
}

/// A file name: 1–255 characters, no path separators or control characters.
pub fn filename(s: &str) -> ApiResult<String> {
    let n = s.chars().count();
    if n == 0
        || n > 255
        || s == "."
        || s == ".."
        || s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(ApiError::validation(
            "filename must be 1 to 255 characters without path separators",
        ));
    }
    Ok(s.to_owned())
}

fn content_type(s: Option<&str>) -> String {
    match s {
        Some(t)
            if !t.is_empty()
                && t.len() <= 255
                && t.contains('/')
                && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            t.to_owned()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

/// Stores an upload to `place` (SEND_MESSAGES and ATTACH_FILES; at most [`max_bytes`]).
pub async fn upload(
    state: &AppState,
    me: Id,
    place: &Place,
    name: &str,
    media_type: Option<&str>,
    bytes: &[u8],
) -> ApiResult<Attachment> {
    super::messages::check_can_send(place)?;
    place.require_perm(Permissions::ATTACH_FILES)?;
    let name = filename(name)?;
    // In encrypted places the real name belongs inside the encrypted message; the server keeps
    // no client-chosen plaintext about the file.
    let name = if place.encrypted {
        "encrypted".to_owned()
    } else {
        name
    };
    if bytes.len() > max_bytes() {
        return Err(ApiError::PayloadTooLarge(max_bytes()));
    }
    let media = if place.encrypted {
        "application/octet-stream".to_owned()
    } else {
        content_type(media_type)
    };
    let id = state.ids.next();
    installed()
        .storage
        .put(&id.0.to_string(), bytes)
        .await
        .map_err(|e| ApiError::Internal(format!("storing an attachment: {e}")))?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO attachments (id, channel_id, uploader_id, filename, content_type, size, encrypted)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .bind(place.id.0)
    .bind(me.0)
    .bind(&name)
    .bind(&media)
    .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
    .bind(place.encrypted)
    .fetch_one(&state.db)
    .await?;
    Ok(from_row(row))
}

/// An attachment's metadata and bytes (READ_HISTORY in its place; 404 otherwise).
pub async fn download(db: &PgPool, place: &Place, id: Id) -> ApiResult<(Attachment, Vec<u8>)> {
    place.require_perm(Permissions::READ_HISTORY)?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM attachments WHERE id = $1 AND channel_id = $2"
    ))
    .bind(id.0)
    .bind(place.id.0)
    .fetch_optional(db)
    .await?;
    let a = from_row(row.ok_or_else(|| ApiError::not_found("unknown attachment"))?);
    let bytes = installed()
        .storage
        .get(&id.0.to_string())
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ApiError::not_found("attachment content is gone"),
            _ => ApiError::Internal(format!("reading an attachment: {e}")),
        })?;
    Ok((a, bytes))
}

/// Claims `ids` for `message` inside the message's transaction: each must be an unclaimed
/// upload of `uploader` to the same place (422 otherwise).
pub async fn claim(
    tx: &mut sqlx::PgConnection,
    place: Id,
    uploader: Id,
    message: i64,
    ids: &[i64],
) -> ApiResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let n = sqlx::query(
        "UPDATE attachments SET message_id = $1
          WHERE id = ANY($2) AND channel_id = $3 AND uploader_id = $4 AND message_id IS NULL",
    )
    .bind(message)
    .bind(ids)
    .bind(place.0)
    .bind(uploader.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n as usize != ids.len() {
        return Err(ApiError::validation(
            "attachments must be your own unused uploads to this channel",
        ));
    }
    Ok(())
}

/// The attachments of `messages`, by message id.
pub async fn of_messages(
    db: &PgPool,
    messages: &[i64],
) -> ApiResult<std::collections::HashMap<i64, Vec<Attachment>>> {
    let mut out: std::collections::HashMap<i64, Vec<Attachment>> = Default::default();
    if messages.is_empty() {
        return Ok(out);
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM attachments WHERE message_id = ANY($1) ORDER BY id"
    ))
    .bind(messages)
    .fetch_all(db)
    .await?;
    for r in rows {
        if let Some(m) = r.2 {
            out.entry(m).or_default().push(from_row(r));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert!(filename("photo.png").is_ok());
        for bad in ["", "..", "a/b", "a\\b", "x\u{0}"] {
            assert!(filename(bad).is_err(), "{bad:?}");
        }
        assert_eq!(content_type(Some("image/png")), "image/png");
        assert_eq!(content_type(Some("garbage")), "application/octet-stream");
        assert_eq!(content_type(None), "application/octet-stream");
    }

    #[tokio::test]
    async fn local_disk_roundtrip_and_key_check() {
        let dir = std::env::temp_dir().join(format!("copains-att-{}", rand::random::<u64>()));
        let d = LocalDisk::new(&dir);
        d.put("123", b"bytes").await.unwrap();
        assert_eq!(d.get("123").await.unwrap(), b"bytes");
        assert!(d.put("../x", b"no").await.is_err());
        assert_eq!(
            d.get("999").await.unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
