//! Whose device keys a user may see (and send to-device messages to): themselves, the members
//! of any server they belong to, their friends, and the recipients of any DM or group DM they
//! are in.

use copains_wire::Id;
use sqlx::PgPool;

/// The SQL condition "the user `$u` is visible to the caller `$1`", for a column or
/// expression substituted for `{u}`.
fn condition(u: &str) -> String {
    format!(
        "({u} = $1
          OR EXISTS (SELECT 1 FROM members a JOIN members b ON a.server_id = b.server_id
                      WHERE a.user_id = $1 AND b.user_id = {u})
          OR EXISTS (SELECT 1 FROM relationships r
                      WHERE r.user_id = $1 AND r.other_id = {u} AND r.kind = 'friend')
          OR EXISTS (SELECT 1 FROM dm_recipients a JOIN dm_recipients b ON a.channel_id = b.channel_id
                      WHERE a.user_id = $1 AND b.user_id = {u}))"
    )
}

/// Which of `users` exist and are visible to `caller` (order not kept, duplicates removed).
pub async fn visible_users(db: &PgPool, caller: Id, users: &[Id]) -> Result<Vec<Id>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    let sql = format!(
        "SELECT DISTINCT u.id FROM users u WHERE u.id = ANY($2) AND {}",
        condition("u.id")
    );
    let rows: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(caller.0)
        .bind(&ids)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Id).collect())
}

/// The users whose device keys changed in the stream positions `(since, up_to]` and who are
/// visible to `caller`.
pub async fn changed_since(
    db: &PgPool,
    caller: Id,
    since: i64,
    up_to: i64,
) -> Result<Vec<Id>, sqlx::Error> {
    let sql = format!(
        "SELECT DISTINCT c.user_id FROM device_key_changes c
          WHERE c.position > $2 AND c.position <= $3 AND {}
          ORDER BY c.user_id",
        condition("c.user_id")
    );
    let rows: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(caller.0)
        .bind(since)
        .bind(up_to)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Id).collect())
}
