//! `/channels/{id}/attachments`: upload a file (raw body, `?filename=`, `Content-Type`),
//! download it. Messages reference uploads with `attachments: [ids]`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use copains_wire::Id;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Path, Query};
use crate::messaging::attachments::{self, Attachment};
use crate::messaging::place::Place;
use crate::state::AppState;

/// The attachment routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload_attachment))
        .routes(routes!(download_attachment))
}

/// `POST /channels/{id}/attachments` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file name to show (1–255 characters, no path separators).
    pub filename: String,
}

/// Upload a file to a place (SEND_MESSAGES + ATTACH_FILES; at most 8 MiB by default, 413
/// beyond). In encrypted places upload the encrypted blob.
#[utoipa::path(post, path = "/channels/{channel_id}/attachments", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Attachment)))]
pub async fn upload_attachment(
    State(state): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<Id>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Attachment>)> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    let max = attachments::max_bytes();
    // A declared length beyond the cap is refused before a byte of the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(max))?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let a = attachments::upload(&state, auth.user_id, &place, &q.filename, media, &bytes).await?;
    Ok((StatusCode::CREATED, axum::Json(a)))
}

/// The image types the web app shows inline (`AttachmentView.svelte`); any other upload is
/// served as `application/octet-stream`, whatever type its uploader claimed.
pub const INLINE_IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Served to readers: an inline image type as stored (parameters dropped), else
/// `application/octet-stream`.
pub fn served_content_type(stored: &str) -> &'static str {
    let essence = stored
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_IMAGE_TYPES
        .iter()
        .find(|t| **t == essence)
        .copied()
        .unwrap_or("application/octet-stream")
}

/// The policy of every attachment answer: nothing may run or load from it, even opened
/// directly (`sandbox` gives it an opaque origin).
pub const ATTACHMENT_CSP: &str =
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox";

/// Download an attachment (READ_HISTORY). Always served as a download
/// (`Content-Disposition: attachment`, `nosniff`, a sandboxing `Content-Security-Policy`), as
/// `application/octet-stream` unless it is an image type the app shows inline (PNG, JPEG,
/// GIF, WebP).
#[utoipa::path(get, path = "/channels/{channel_id}/attachments/{attachment_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path, description = "Channel, thread or DM id"),
           ("attachment_id" = String, Path, description = "Attachment id")),
    responses((status = 200, description = "The bytes", content_type = "application/octet-stream")))]
pub async fn download_attachment(
    State(state): State<AppState>,
    auth: Auth,
    Path((channel_id, attachment_id)): Path<(Id, Id)>,
) -> ApiResult<Response> {
    let place = Place::require(&state.db, auth.user_id, channel_id).await?;
    let (a, bytes) = attachments::download(&state.db, &place, attachment_id).await?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(served_content_type(&a.content_type)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ATTACHMENT_CSP),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}
