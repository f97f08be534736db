//! Group sends: concurrent messages to one place are inserted together, in one statement and
//! one commit, by a short-lived worker task per place.
//!
//! Inserts into a place are ordered by its `channel_heads` row lock, held until the commit is
//! durable; one insert per commit would cap a busy place at one message per disk flush. Here
//! the sends that arrive while a batch is being written wait and form the next batch (at most
//! [`MAX_BATCH`]), so a busy place writes many messages per flush and an idle one writes each
//! message at once, alone. Within a batch, ids follow arrival order and are all above the
//! previous head, so ids still become visible in increasing order (gap-free `after` paging).
//!
//! The worker, not the request, runs the statement, invalidates the history cache and
//! publishes `message_create` (in id order): a request cancelled after submitting its message
//! does not leave it unannounced. Nonces keep their semantics: a claim is made per row in the
//! same statement, a row whose nonce is freshly claimed is not inserted, and the request
//! answers the original. Two sends with the same `(author, nonce)` in one batch go in one at a
//! time (the second finds the first's claim). If a batch fails for another reason than an id
//! collision (retried with fresh ids), its rows are retried alone, so one bad row fails only
//! its own request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use copains_wire::Id;
use copains_wire::events::{BusEvent, Event};
use tokio::sync::oneshot;

use super::history_cache::Change;
use super::place::{Place, PlaceKind};
use super::{MESSAGE_COLUMNS, MessageRow, NONCE_WINDOW_SECS};
use crate::communities::events::value;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Most messages written by one statement.
pub const MAX_BATCH: usize = 64;
/// Most sends waiting for one place (more: 503, the client retries).
pub const MAX_QUEUED: usize = 4096;
/// Most attempts at fresh ids when a batch collides on the primary key.
const MAX_ID_ATTEMPTS: usize = 8;

/// One message to insert, validated.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// Author.
    pub author: Id,
    /// Plaintext.
    pub content: Option<String>,
    /// Envelope: algorithm, sender device, session, ciphertext.
    pub envelope: Option<super::Envelope>,
    /// Client nonce.
    pub nonce: Option<String>,
    /// Reply target (checked to be of the place).
    pub reply_to: Option<Id>,
    /// @everyone.
    pub mention_everyone: bool,
    /// Mentioned users.
    pub mention_users: Vec<i64>,
    /// Mentioned roles.
    pub mention_roles: Vec<i64>,
}

/// What became of a submitted row.
#[derive(Debug)]
pub enum Outcome {
    /// Inserted (and published).
    Created(Box<MessageRow>),
    /// Not inserted: the author's nonce was claimed in the last 10 minutes.
    NonceTaken,
}

struct Pending {
    row: NewRow,
    reply: oneshot::Sender<ApiResult<Outcome>>,
}

struct Queue {
    /// Which worker owns it.
    worker: u64,
    place: Arc<Place>,
    pending: Vec<Pending>,
}

/// The node's send queues, one per place with sends in flight.
#[derive(Default)]
pub struct SendBatcher {
    queues: Mutex<HashMap<i64, Queue>>,
    workers: std::sync::atomic::AtomicU64,
    statements: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SendBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatcher").finish_non_exhaustive()
    }
}

impl SendBatcher {
    /// How many insert statements the batches ran so far (fewer than messages when sends
    /// were grouped).
    pub fn statements(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `row` for `place` and waits for its outcome.
    pub async fn submit(state: &AppState, place: &Place, row: NewRow) -> ApiResult<Outcome> {
        let (reply, rx) = oneshot::channel();
        let start = {
            let mut queues = state.sends.queues.lock().unwrap_or_else(|p| p.into_inner());
            let mut start = None;
            let q = queues.entry(place.id.0).or_insert_with(|| {
                let worker = state
                    .sends
                    .workers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                start = Some(worker);
                Queue {
                    worker,
                    place: Arc::new(place.clone()),
                    pending: Vec::new(),
                }
            });
            if q.pending.len() >= MAX_QUEUED {
                return Err(ApiError::Unavailable);
            }
            q.pending.push(Pending { row, reply });
            start
        };
        if let Some(id) = start {
            tokio::spawn(worker(state.clone(), place.id.0, id));
        }
        rx.await
            .map_err(|_| ApiError::Internal("the send worker stopped".into()))?
    }
}

/// Writes the place's queue batch after batch until it is empty, then retires.
async fn worker(state: AppState, channel: i64, id: u64) {
    // Should this task end abnormally (a panic, the runtime shutting down), its queue goes
    // with it: the waiting requests get an error instead of waiting forever, and the next
    // send starts a new worker.
    let _retire = Retire {
        state: state.clone(),
        channel,
        id,
    };
    loop {
        let (place, batch) = {
            let mut queues = state.sends.queues.lock().unwrap_or_else(|p| p.into_inner());
            let Some(q) = queues.get_mut(&channel) else {
                return;
            };
            if q.pending.is_empty() {
                queues.remove(&channel);
                return;
            }
            let n = q.pending.len().min(MAX_BATCH);
            (q.place.clone(), q.pending.drain(..n).collect::<Vec<_>>())
        };
        write(&state, &place, batch).await;
    }
}

/// Removes a worker's queue (if still its own) when the worker ends.
struct Retire {
    state: AppState,
    channel: i64,
    id: u64,
}

impl Drop for Retire {
    fn drop(&mut self) {
        let mut queues = self
            .state
            .sends
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if queues
            .get(&self.channel)
            .is_some_and(|q| q.worker == self.id)
        {
            queues.remove(&self.channel);
        }
    }
}

/// Writes one batch and answers its requests.
async fn write(state: &AppState, place: &Place, batch: Vec<Pending>) {
    // Same (author, nonce) twice: the later ones wait for the next batch.
    let mut seen = HashSet::new();
    let (now, later): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| {
        p.row
            .nonce
            .as_ref()
            .is_none_or(|n| seen.insert((p.row.author.0, n.clone())))
    });
    if !later.is_empty() {
        let mut queues = state.sends.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get_mut(&place.id.0) {
            q.pending.splice(0..0, later);
        }
    }
    let rows: Vec<&NewRow> = now.iter().map(|p| &p.row).collect();
    let result = insert_retrying(state, place, &rows).await;
    let outcomes: Vec<ApiResult<Outcome>> = match result {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(_) if rows.len() > 1 => {
            // Isolate the row at fault: each alone.
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(
                    insert_retrying(state, place, &[*r])
                        .await
                        .and_then(|mut o| {
                            o.pop()
                                .ok_or_else(|| ApiError::Internal("empty batch result".into()))
                        }),
                );
            }
            out
        }
        Err(e) => vec![Err(e)],
    };
    // Whatever was committed: the place's cached open span closes, then the events go out.
    state.history.invalidate(Change::Create(place.id.0));
    let audience = match place.audience(&state.db).await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "resolving a place's audience failed; events not published");
            None
        }
    };
    for (p, outcome) in now.into_iter().zip(outcomes) {
        if let (Some(audience), Ok(Outcome::Created(row))) = (&audience, &outcome) {
            let mut msg = value(&(**row).clone().render(Vec::new(), Vec::new()));
            super::reader_neutral(&mut msg);
            state
                .publish(BusEvent::new(
                    audience.clone(),
                    Event::MessageCreate { message: msg },
                ))
                .await;
        }
        let _ = p.reply.send(outcome);
    }
}

/// [`insert`], again with fresh ids while the ids collide.
async fn insert_retrying(
    state: &AppState,
    place: &Place,
    rows: &[&NewRow],
) -> ApiResult<Vec<Outcome>> {
    for _ in 0..MAX_ID_ATTEMPTS {
        match insert(state, place, rows).await {
            Err(e) if id_collision(&e) => continue,
            r => return Ok(r?),
        }
    }
    Err(ApiError::Unavailable)
}

/// Whether `e` is a primary-key collision of `messages` (retry with other ids).
fn id_collision(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some("messages_pkey"))
}

/// The batch statement (built once: statements are cached by their text). The head moves to
/// `max(old head + n, newest generated id)` and the rows take the `n` ids ending there, so
/// every id is above the old head and they increase in arrival order.
static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH h AS (
            INSERT INTO channel_heads (channel_id, last_message_id) VALUES ($1, $2)
            ON CONFLICT (channel_id) DO UPDATE
               SET last_message_id = GREATEST(channel_heads.last_message_id + $3, EXCLUDED.last_message_id)
            RETURNING last_message_id AS last
         ), r AS (
            SELECT h.last - $3 + u.ord AS id, u.* FROM h,
                   unnest($4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[],
                          $10::TEXT[], $11::BIGINT[], $12::BOOLEAN[], $13::TEXT[], $14::TEXT[])
                   WITH ORDINALITY AS u(author, content, alg, dev, sess, ct, nonce, reply_to,
                                        everyone, users, roles, ord)
         ), n AS (
            INSERT INTO message_nonces (author_id, nonce, message_id, channel_id)
            SELECT r.author, r.nonce, r.id, $1 FROM r WHERE r.nonce IS NOT NULL
            ON CONFLICT (author_id, nonce) DO UPDATE
               SET message_id = EXCLUDED.message_id, channel_id = EXCLUDED.channel_id, created_at = now()
             WHERE message_nonces.created_at < now() - make_interval(secs => $16)
            RETURNING message_id
         ), m AS (
            INSERT INTO messages (id, channel_id, server_id, author_id, content, enc_algorithm,
                   enc_sender_device, enc_session_id, enc_ciphertext, nonce, reply_to,
                   mention_everyone, mention_users, mention_roles)
            SELECT r.id, $1, $15, r.author, r.content, r.alg, r.dev, r.sess, r.ct, r.nonce,
                   r.reply_to, r.everyone, r.users::BIGINT[], r.roles::BIGINT[] FROM r
             WHERE r.nonce IS NULL OR r.id IN (SELECT message_id FROM n)
            RETURNING *
         ), t AS (
            UPDATE threads SET last_activity_at = now()
             WHERE id = $1 AND $17 AND EXISTS (SELECT 1 FROM m)
         )
         SELECT {MESSAGE_COLUMNS}, r.ord FROM m JOIN r ON r.id = m.id ORDER BY m.id"
    )
});

/// A PostgreSQL array literal of ids (`{1,2,3}`).
fn array_literal(ids: &[i64]) -> String {
    let inner: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Inserts `rows` into `place` in one statement (committed synchronously, so each answer is
/// durable); one outcome per row, in order.
async fn insert(
    state: &AppState,
    place: &Place,
    rows: &[&NewRow],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let n = rows.len();
    state
        .sends
        .statements
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A block of fresh ids: the rows take exactly these unless the head is already past them.
    let newest = state.ids.next_block(n as u64).0;
    let col = |f: fn(&NewRow) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|r| f(r)).collect()
    };
    let inserted: Vec<Inserted> = sqlx::query_as(&INSERT)
        .bind(place.id.0)
        .bind(newest)
        .bind(n as i64)
        .bind(rows.iter().map(|r| r.author.0).collect::<Vec<_>>())
        .bind(col(|r| r.content.clone()))
        .bind(col(|r| r.envelope.as_ref().map(|e| e.algorithm.clone())))
        .bind(col(|r| {
            r.envelope.as_ref().map(|e| e.sender_device_id.clone())
        }))
        .bind(col(|r| r.envelope.as_ref().map(|e| e.session_id.clone())))
        .bind(col(|r| r.envelope.as_ref().map(|e| e.ciphertext.clone())))
        .bind(col(|r| r.nonce.clone()))
        .bind(
            rows.iter()
                .map(|r| r.reply_to.map(|x| x.0))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.mention_everyone).collect::<Vec<_>>())
        .bind(col(|r| Some(array_literal(&r.mention_users))))
        .bind(col(|r| Some(array_literal(&r.mention_roles))))
        .bind(place.server_id.map(|s| s.0))
        .bind(NONCE_WINDOW_SECS as f64)
        .bind(place.kind == PlaceKind::Thread)
        .fetch_all(&state.db)
        .await?;
    // A row is missing when its nonce was already claimed.
    let mut by_ord: HashMap<i64, MessageRow> =
        inserted.into_iter().map(|i| (i.ord, i.row)).collect();
    Ok((1..=n as i64)
        .map(|ord| match by_ord.remove(&ord) {
            Some(m) => Outcome::Created(Box::new(m)),
            None => Outcome::NonceTaken,
        })
        .collect())
}

/// A row of the batch statement: the message and its position in the batch (from 1).
#[derive(sqlx::FromRow)]
struct Inserted {
    #[sqlx(flatten)]
    row: MessageRow,
    ord: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&[1, -2, 30]), "{1,-2,30}");
    }
}
