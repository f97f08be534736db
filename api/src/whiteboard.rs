//! Whiteboards (seed 000's "collaborative whiteboard per room"): one board per place (server
//! text channel, thread, DM or group DM), made of strokes kept in the order the server accepted
//! them. Routes live in `routes/whiteboard.rs`; the rules here; the design in
//! `docs/messaging.md` ("Whiteboards").
//!
//! - Rights are those of messages: reading the board needs READ_HISTORY, drawing needs
//!   SEND_MESSAGES (and not being timed out; nobody draws in a DM with someone who blocked
//!   them), clearing needs MANAGE_MESSAGES (every recipient of a DM has it). An invisible place
//!   answers 404.
//! - Plaintext places take `{tool, color, size, points}`, checked here; encrypted places (DMs,
//!   group DMs, encrypted channels) take only an opaque `encrypted` envelope, whose plaintext is
//!   that same JSON object (checked by the clients that decrypt it).
//! - Everything is bounded: [`MAX_POINTS`] points per stroke (clients split longer lines),
//!   [`MAX_STROKES`] strokes per board (then 409 `whiteboard_full` until someone clears it),
//!   [`MAX_STROKE_CIPHERTEXT_BYTES`] per encrypted stroke, [`MAX_PAGE`] strokes per page.
//! - Ordering: each insert upserts the board's `whiteboards` row first (a row lock held until
//!   commit) and takes `max(generated id, last id + 1)`, so a reader paging with `after` never
//!   skips a late commit, and a clear removes exactly the strokes up to the id it announces.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use copains_wire::Id;
use copains_wire::events::Event;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::communities::events::value;
use crate::communities::permissions::Permissions;
use crate::error::{ApiError, ApiResult};
use crate::messaging::Envelope;
use crate::messaging::messages::{check_can_send, publish};
use crate::messaging::place::{Place, PlaceKind};
use crate::state::AppState;

/// Board width in board units (x runs from 0 to this, left to right).
pub const BOARD_WIDTH: i32 = 3200;
/// Board height in board units (y runs from 0 to this, top to bottom).
pub const BOARD_HEIGHT: i32 = 1800;
/// Most points in one stroke.
pub const MAX_POINTS: usize = 1000;
/// Thinnest and thickest line, in board units.
pub const SIZES: std::ops::RangeInclusive<i16> = 1..=200;
/// Most strokes on one board (then it must be cleared).
pub const MAX_STROKES: i32 = 5000;
/// Largest decoded ciphertext of an encrypted stroke, in bytes.
pub const MAX_STROKE_CIPHERTEXT_BYTES: usize = 32 * 1024;
/// Largest page of strokes.
pub const MAX_PAGE: i64 = 500;
/// Default page of strokes.
pub const DEFAULT_PAGE: i64 = 200;

/// What a stroke does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// Draws in `color`.
    Pen,
    /// Erases what was drawn before it under its path (`color` is kept but not drawn).
    Eraser,
}

impl Tool {
    fn as_str(self) -> &'static str {
        match self {
            Tool::Pen => "pen",
            Tool::Eraser => "eraser",
        }
    }
}

/// `POST /channels/{id}/whiteboard/strokes` body: the stroke's fields in plaintext places, or
/// only `encrypted` (and `nonce`) in encrypted places.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStroke {
    /// `pen` or `eraser` (plaintext places).
    pub tool: Option<Tool>,
    /// `#rrggbb` (plaintext places).
    pub color: Option<String>,
    /// Line width in board units, 1–200 (plaintext places).
    pub size: Option<i16>,
    /// Flat `[x0, y0, x1, y1, …]`, 1–1000 points, x in 0–3200 and y in 0–1800 (plaintext
    /// places). One point draws a dot.
    pub points: Option<Vec<i64>>,
    /// The encrypted stroke (encrypted places only); its plaintext is the JSON object
    /// `{tool, color, size, points}` with the same rules.
    pub encrypted: Option<Envelope>,
    /// Client nonce (1–64 printable ASCII): a retry with the same nonce on this board answers
    /// the stroke already stored (200) instead of adding another (201).
    pub nonce: Option<String>,
}

/// A stroke as the API renders it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stroke {
    /// Stroke id; a board's strokes are drawn in id order.
    pub id: Id,
    /// The place whose board it is.
    pub channel_id: Id,
    /// The author, `null` once their account is deleted.
    pub author_id: Option<Id>,
    /// `pen` or `eraser` (plaintext places).
    pub tool: Option<Tool>,
    /// `#rrggbb` (plaintext places).
    pub color: Option<String>,
    /// Line width in board units (plaintext places).
    pub size: Option<i16>,
    /// Flat `[x0, y0, x1, y1, …]` in board units (plaintext places).
    pub points: Option<Vec<i32>>,
    /// The envelope (encrypted places).
    pub encrypted: Option<Envelope>,
    /// The client nonce it was sent with, if any.
    pub nonce: Option<String>,
    /// When the server accepted it.
    pub created_at: DateTime<Utc>,
}

/// A page of a board, oldest stroke first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrokePage {
    /// Board width in board units (3200).
    pub width: i32,
    /// Board height in board units (1800).
    pub height: i32,
    /// The strokes, in id (drawing) order.
    pub strokes: Vec<Stroke>,
    /// More strokes follow: ask again with `after` = the last id of this page.
    pub has_more: bool,
}

/// `GET /channels/{id}/whiteboard` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Strokes newer than this id (the last id of the previous page).
    #[param(value_type = Option<String>)]
    pub after: Option<Id>,
    /// Page size, 1–500 (default 200).
    pub limit: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct StrokeRow {
    id: i64,
    channel_id: i64,
    author_id: Option<i64>,
    tool: Option<String>,
    color: Option<String>,
    size: Option<i16>,
    points: Option<Vec<i32>>,
    enc_algorithm: Option<String>,
    enc_sender_device: Option<String>,
    enc_session_id: Option<String>,
    enc_ciphertext: Option<String>,
    nonce: Option<String>,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, channel_id, author_id, tool, color, size, points, enc_algorithm, \
     enc_sender_device, enc_session_id, enc_ciphertext, nonce, created_at";

impl StrokeRow {
    fn render(self) -> Stroke {
        let encrypted = Envelope::from_columns(
            self.enc_algorithm,
            self.enc_sender_device,
            self.enc_session_id,
            self.enc_ciphertext,
        );
        Stroke {
            id: Id(self.id),
            channel_id: Id(self.channel_id),
            author_id: self.author_id.map(Id),
            tool: self.tool.as_deref().map(|t| {
                if t == "eraser" {
                    Tool::Eraser
                } else {
                    Tool::Pen
                }
            }),
            color: self.color,
            size: self.size,
            points: self.points,
            encrypted,
            nonce: self.nonce,
            created_at: self.created_at,
        }
    }
}

/// A checked plaintext stroke.
#[derive(Debug, PartialEq)]
struct Plain {
    tool: Tool,
    color: String,
    size: i16,
    points: Vec<i32>,
}

/// Checks a `#rrggbb` colour; returns it in lower case.
fn color(c: &str) -> ApiResult<String> {
    let ok = c.len() == 7 && c.starts_with('#') && c.bytes().skip(1).all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(c.to_ascii_lowercase())
    } else {
        Err(ApiError::validation("color must be #rrggbb (hexadecimal)"))
    }
}

/// Checks the points of a stroke: an even count, 1 to [`MAX_POINTS`] points, on the board.
fn points(p: &[i64]) -> ApiResult<Vec<i32>> {
    if p.is_empty() || !p.len().is_multiple_of(2) || p.len() > 2 * MAX_POINTS {
        return Err(ApiError::validation(format!(
            "points must be a flat list of 1 to {MAX_POINTS} [x, y] pairs"
        )));
    }
    let mut out = Vec::with_capacity(p.len());
    for pair in p.chunks_exact(2) {
        let (x, y) = (pair[0], pair[1]);
        if !(0..=i64::from(BOARD_WIDTH)).contains(&x) || !(0..=i64::from(BOARD_HEIGHT)).contains(&y)
        {
            return Err(ApiError::validation(format!(
                "points must lie on the board: x in 0–{BOARD_WIDTH}, y in 0–{BOARD_HEIGHT}"
            )));
        }
        // In range of i32 by the checks above.
        out.push(x as i32);
        out.push(y as i32);
    }
    Ok(out)
}

/// Checks a plaintext body (no envelope).
fn plain(req: &NewStroke) -> ApiResult<Plain> {
    if req.encrypted.is_some() {
        return Err(ApiError::validation(
            "this channel is not encrypted: send the stroke, not `encrypted`",
        ));
    }
    let tool = req
        .tool
        .ok_or_else(|| ApiError::validation("`tool` is required"))?;
    let c = color(
        req.color
            .as_deref()
            .ok_or_else(|| ApiError::validation("`color` is required"))?,
    )?;
    let size = req
        .size
        .ok_or_else(|| ApiError::validation("`size` is required"))?;
    if !SIZES.contains(&size) {
        return Err(ApiError::validation(format!(
            "size must be between {} and {}",
            SIZES.start(),
            SIZES.end()
        )));
    }
    let pts = points(
        req.points
            .as_deref()
            .ok_or_else(|| ApiError::validation("`points` is required"))?,
    )?;
    Ok(Plain {
        tool,
        color: c,
        size,
        points: pts,
    })
}

/// Checks an encrypted body: only the envelope (no plaintext field), at most
/// [`MAX_STROKE_CIPHERTEXT_BYTES`].
fn sealed(req: &NewStroke) -> ApiResult<Envelope> {
    if req.tool.is_some() || req.color.is_some() || req.size.is_some() || req.points.is_some() {
        return Err(ApiError::validation(
            "this place is end-to-end encrypted: send `encrypted`, never the stroke in plaintext",
        ));
    }
    let env = req.encrypted.clone().ok_or_else(|| {
        ApiError::validation("this place is end-to-end encrypted: `encrypted` is required")
    })?;
    env.validate()?;
    let len = base64::engine::general_purpose::STANDARD
        .decode(&env.ciphertext)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if len > MAX_STROKE_CIPHERTEXT_BYTES {
        return Err(ApiError::validation(format!(
            "encrypted.ciphertext of a stroke must be at most {MAX_STROKE_CIPHERTEXT_BYTES} bytes"
        )));
    }
    Ok(env)
}

/// 422 unless `place` holds a board (a text place).
fn require_board(place: &Place) -> ApiResult<()> {
    if place.is_text {
        Ok(())
    } else {
        Err(ApiError::validation(
            "whiteboards live only in text channels, threads and DMs",
        ))
    }
}

/// A page of the board, oldest first (needs READ_HISTORY).
pub async fn page(db: &PgPool, place: &Place, q: PageQuery) -> ApiResult<StrokePage> {
    require_board(place)?;
    place.require_perm(Permissions::READ_HISTORY)?;
    let limit = crate::communities::limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let mut rows: Vec<StrokeRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM whiteboard_strokes
          WHERE channel_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(place.id.0)
    .bind(q.after.map_or(0, |a| a.0))
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(StrokePage {
        width: BOARD_WIDTH,
        height: BOARD_HEIGHT,
        strokes: rows.into_iter().map(StrokeRow::render).collect(),
        has_more,
    })
}

/// Most attempts at a fresh id when inserts collide on the primary key.
const MAX_ID_ATTEMPTS: usize = 8;

/// The stroke `author` already stored on this board with `nonce`, if any.
async fn by_nonce<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    place: Id,
    author: Id,
    nonce: &str,
) -> ApiResult<Option<Stroke>> {
    let row: Option<StrokeRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM whiteboard_strokes
          WHERE channel_id = $1 AND author_id = $2 AND nonce = $3"
    ))
    .bind(place.0)
    .bind(author.0)
    .bind(nonce)
    .fetch_optional(db)
    .await?;
    Ok(row.map(StrokeRow::render))
}

/// Adds a stroke (needs SEND_MESSAGES); returns it and whether it is new (`false`: a nonce
/// retry). Publishes `whiteboard_stroke` to those who see the place.
pub async fn add(
    state: &AppState,
    author: Id,
    place: &Place,
    req: NewStroke,
) -> ApiResult<(Stroke, bool)> {
    require_board(place)?;
    check_can_send(place)?;
    if place.kind == PlaceKind::Dm {
        crate::messaging::dms::check_not_blocked(&state.db, place.id, author).await?;
    }
    let nonce = req
        .nonce
        .as_deref()
        .map(crate::messaging::nonce)
        .transpose()?;
    let (body, env) = if place.encrypted {
        (None, Some(sealed(&req)?))
    } else {
        (Some(plain(&req)?), None)
    };
    if let Some(n) = nonce.as_deref()
        && let Some(s) = by_nonce(&state.db, place.id, author, n).await?
    {
        return Ok((s, false));
    }

    for _ in 0..MAX_ID_ATTEMPTS {
        let generated = state.ids.next();
        let mut tx = state.db.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO whiteboards (channel_id, stroke_count, last_stroke_id) VALUES ($1, 1, $2)
             ON CONFLICT (channel_id) DO UPDATE
                SET stroke_count = whiteboards.stroke_count + 1,
                    last_stroke_id = GREATEST(whiteboards.last_stroke_id + 1, EXCLUDED.last_stroke_id),
                    updated_at = now()
              WHERE whiteboards.stroke_count < $3
             RETURNING last_stroke_id",
        )
        .bind(place.id.0)
        .bind(generated.0)
        .bind(MAX_STROKES)
        .fetch_optional(&mut *tx)
        .await?;
        // The board row is locked from here on: a concurrent retry with the same nonce waits.
        if let Some(n) = nonce.as_deref()
            && let Some(s) = by_nonce(&mut *tx, place.id, author, n).await?
        {
            tx.rollback().await?;
            return Ok((s, false));
        }
        let Some(id) = id else {
            tx.rollback().await?;
            return Err(ApiError::conflict(
                "whiteboard_full",
                format!("this whiteboard holds {MAX_STROKES} strokes: clear it to draw again"),
            ));
        };
        let b = body.as_ref();
        let e = env.as_ref();
        let r: Result<StrokeRow, sqlx::Error> = sqlx::query_as(&format!(
            "INSERT INTO whiteboard_strokes (id, channel_id, author_id, tool, color, size, points,
                    enc_algorithm, enc_sender_device, enc_session_id, enc_ciphertext, nonce)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(place.id.0)
        .bind(author.0)
        .bind(b.map(|b| b.tool.as_str()))
        .bind(b.map(|b| &b.color))
        .bind(b.map(|b| b.size))
        .bind(b.map(|b| &b.points))
        .bind(e.map(|e| &e.algorithm))
        .bind(e.map(|e| &e.sender_device_id))
        .bind(e.map(|e| &e.session_id))
        .bind(e.map(|e| &e.ciphertext))
        .bind(nonce.as_deref())
        .fetch_one(&mut *tx)
        .await;
        let row = match r {
            Err(sqlx::Error::Database(d)) if d.constraint() == Some("whiteboard_strokes_pkey") => {
                // The id bumped past the board's head collided with another board's: retry.
                tx.rollback().await?;
                continue;
            }
            r => r?,
        };
        tx.commit().await?;
        let stroke = row.render();
        publish(
            state,
            place,
            Event::WhiteboardStroke {
                stroke: value(&stroke),
            },
        )
        .await?;
        return Ok((stroke, true));
    }
    Err(ApiError::Unavailable)
}

/// Clears the board (needs MANAGE_MESSAGES; every recipient of a DM has it). Publishes
/// `whiteboard_clear` with the newest id removed.
pub async fn clear(state: &AppState, user: Id, place: &Place) -> ApiResult<()> {
    require_board(place)?;
    place.require_perm(Permissions::MANAGE_MESSAGES)?;
    let mut tx = state.db.begin().await?;
    let up_to: Option<i64> = sqlx::query_scalar(
        "UPDATE whiteboards SET stroke_count = 0, cleared_at = now(), cleared_by = $2,
                updated_at = now()
          WHERE channel_id = $1 RETURNING last_stroke_id",
    )
    .bind(place.id.0)
    .bind(user.0)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM whiteboard_strokes WHERE channel_id = $1")
        .bind(place.id.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    publish(
        state,
        place,
        Event::WhiteboardClear {
            channel_id: place.id,
            up_to: Id(up_to.unwrap_or(0)),
            user_id: user,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stroke(tool: Tool, c: &str, size: i16, pts: Vec<i64>) -> NewStroke {
        NewStroke {
            tool: Some(tool),
            color: Some(c.into()),
            size: Some(size),
            points: Some(pts),
            ..Default::default()
        }
    }

    #[test]
    fn plaintext_strokes_are_bounded() {
        let ok = plain(&stroke(Tool::Pen, "#FF00aa", 4, vec![0, 0, 3200, 1800])).unwrap();
        assert_eq!(ok.color, "#ff00aa");
        assert_eq!(ok.points, vec![0, 0, 3200, 1800]);
        assert!(plain(&stroke(Tool::Eraser, "#000000", 200, vec![5, 5])).is_ok());
        for bad in [
            stroke(Tool::Pen, "red", 4, vec![1, 1]),
            stroke(Tool::Pen, "#12345", 4, vec![1, 1]),
            stroke(Tool::Pen, "#12345g", 4, vec![1, 1]),
            stroke(Tool::Pen, "#123456", 0, vec![1, 1]),
            stroke(Tool::Pen, "#123456", 201, vec![1, 1]),
            stroke(Tool::Pen, "#123456", 4, vec![]),
            stroke(Tool::Pen, "#123456", 4, vec![1]),
            stroke(Tool::Pen, "#123456", 4, vec![-1, 1]),
            stroke(Tool::Pen, "#123456", 4, vec![1, 1801]),
            stroke(Tool::Pen, "#123456", 4, vec![3201, 0]),
            stroke(Tool::Pen, "#123456", 4, vec![i64::MAX, 0]),
            stroke(Tool::Pen, "#123456", 4, vec![1; 2 * MAX_POINTS + 2]),
            NewStroke::default(),
        ] {
            assert!(plain(&bad).is_err(), "{bad:?}");
        }
        assert!(plain(&stroke(Tool::Pen, "#123456", 4, vec![1; 2 * MAX_POINTS])).is_ok());
    }

    #[test]
    fn encrypted_strokes_carry_only_the_envelope() {
        let env = Envelope {
            algorithm: "m.megolm.v1.aes-sha2".into(),
            sender_device_id: "D".into(),
            session_id: "S".into(),
            ciphertext: "aGk=".into(),
        };
        let only = NewStroke {
            encrypted: Some(env.clone()),
            ..Default::default()
        };
        assert_eq!(sealed(&only).unwrap(), env);
        let mut leaky = stroke(Tool::Pen, "#000000", 2, vec![1, 1]);
        leaky.encrypted = Some(env.clone());
        assert!(sealed(&leaky).is_err());
        assert!(plain(&leaky).is_err());
        let big = NewStroke {
            encrypted: Some(Envelope {
                ciphertext: base64::engine::general_purpose::STANDARD.encode(vec![
                    0u8;
                    MAX_STROKE_CIPHERTEXT_BYTES
                        + 1
                ]),
                ..env
            }),
            ..Default::default()
        };
        assert!(sealed(&big).is_err());
    }
}
