//! The gateway's view of the database ([`copains_signaling::Directory`] over PostgreSQL):
//! what a user may see (servers, channels with VIEW_CHANNEL, DMs, friends), the `ready`
//! payload, session liveness and to-device acknowledgements.

use std::collections::HashMap;

use async_trait::async_trait;
use copains_signaling::directory::{Directory, DirectoryError, Visibility, VisibleChannel};
use copains_wire::Id;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::communities::permissions::{self, ChannelOverwrites, Permissions};

/// Servers with at least this many members send member presence only to clients that
/// subscribed to their member list.
pub const LARGE_SERVER_MEMBERS: i64 = 1000;
/// Most co-members whose presence goes into `ready`.
pub const MAX_CO_MEMBERS: i64 = 2000;

/// [`Directory`] backed by the api's tables.
#[derive(Clone, Debug)]
pub struct PgDirectory {
    db: PgPool,
}

impl PgDirectory {
    /// A directory reading `db`.
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }
}

fn err(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError(e.to_string())
}

/// A channel row as the gateway sends it in `ready`.
type ChannelRow = (
    i64,
    String,
    String,
    Option<i64>,
    i32,
    Option<String>,
    i32,
    bool,
);

impl PgDirectory {
    /// The channels of `server_id` that `user_id` may view, with their rows.
    async fn visible_channels(
        &self,
        user_id: Id,
        server_id: Id,
    ) -> Result<Vec<ChannelRow>, DirectoryError> {
        let Some(access) = permissions::server_access(&self.db, user_id, server_id)
            .await
            .map_err(err)?
        else {
            return Ok(Vec::new());
        };
        let channels: Vec<ChannelRow> = sqlx::query_as(
            "SELECT id, kind, name, parent_id, position, topic, slowmode_secs, encrypted
               FROM channels WHERE server_id = $1 ORDER BY position, id",
        )
        .bind(server_id.0)
        .fetch_all(&self.db)
        .await
        .map_err(err)?;
        // All overwrites of the server's channels that apply to this member, in one query.
        let rows: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT o.channel_id, o.target_id, o.target_kind, o.allow, o.deny
               FROM overwrites o JOIN channels c ON c.id = o.channel_id
              WHERE c.server_id = $1 AND (o.target_id = $1 OR o.target_id = $2 OR o.target_id = ANY($3))",
        )
        .bind(server_id.0)
        .bind(user_id.0)
        .bind(&access.role_ids)
        .fetch_all(&self.db)
        .await
        .map_err(err)?;
        let mut by_channel: HashMap<i64, ChannelOverwrites> = HashMap::new();
        for (channel, target, kind, allow, deny) in rows {
            by_channel.entry(channel).or_default().add(
                server_id.0,
                user_id.0,
                target,
                &kind,
                allow,
                deny,
            );
        }
        let none = ChannelOverwrites::default();
        Ok(channels
            .into_iter()
            .filter(|c| {
                let ow = by_channel.get(&c.0).unwrap_or(&none);
                permissions::channel_permissions_for(&access.inputs, ow)
                    .contains(Permissions::VIEW_CHANNEL)
            })
            .collect())
    }

    async fn server_ids(&self, user_id: Id) -> Result<Vec<i64>, DirectoryError> {
        sqlx::query_scalar("SELECT server_id FROM members WHERE user_id = $1 ORDER BY joined_at")
            .bind(user_id.0)
            .fetch_all(&self.db)
            .await
            .map_err(err)
    }

    async fn friend_ids(&self, user_id: Id) -> Result<Vec<i64>, DirectoryError> {
        sqlx::query_scalar(
            "SELECT other_id FROM relationships WHERE user_id = $1 AND kind = 'friend'",
        )
        .bind(user_id.0)
        .fetch_all(&self.db)
        .await
        .map_err(err)
    }

    /// DM and group DM channels of the user.
    async fn dm_ids(&self, user_id: Id) -> Result<Vec<i64>, DirectoryError> {
        sqlx::query_scalar("SELECT channel_id FROM dm_recipients WHERE user_id = $1")
            .bind(user_id.0)
            .fetch_all(&self.db)
            .await
            .map_err(err)
    }
}

fn channel_json(server_id: i64, c: &ChannelRow) -> Value {
    json!({
        "id": c.0.to_string(), "server_id": server_id.to_string(), "kind": c.1, "name": c.2,
        "parent_id": c.3.map(|p| p.to_string()), "position": c.4, "topic": c.5,
        "slowmode_secs": c.6, "encrypted": c.7,
    })
}

#[async_trait]
impl Directory for PgDirectory {
    async fn ready_payload(&self, user_id: Id) -> Result<Value, DirectoryError> {
        let me = crate::accounts::get_user(&self.db, user_id)
            .await
            .map_err(err)?;
        let mut servers = Vec::new();
        for sid in self.server_ids(user_id).await? {
            let row: Option<(String, Option<String>, Option<String>, i64)> = sqlx::query_as(
                "SELECT name, description, icon, owner_id FROM servers WHERE id = $1",
            )
            .bind(sid)
            .fetch_optional(&self.db)
            .await
            .map_err(err)?;
            let Some((name, description, icon, owner_id)) = row else {
                continue;
            };
            let channels: Vec<Value> = self
                .visible_channels(user_id, Id(sid))
                .await?
                .iter()
                .map(|c| channel_json(sid, c))
                .collect();
            let roles: Vec<(i64, String, i32, i32, i64, bool, bool)> = sqlx::query_as(
                "SELECT id, name, color, position, permissions, hoist, mentionable FROM roles
                  WHERE server_id = $1 ORDER BY position",
            )
            .bind(sid)
            .fetch_all(&self.db)
            .await
            .map_err(err)?;
            let roles: Vec<Value> = roles
                .into_iter()
                .map(|r| {
                    json!({"id": r.0.to_string(), "name": r.1, "color": r.2, "position": r.3,
                           "permissions": r.4.to_string(), "hoist": r.5, "mentionable": r.6})
                })
                .collect();
            servers.push(json!({
                "id": sid.to_string(), "name": name, "description": description, "icon": icon,
                "owner_id": owner_id.to_string(), "channels": channels, "roles": roles,
            }));
        }
        let rels: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT r.other_id, r.kind, u.username, u.display_name FROM relationships r
               JOIN users u ON u.id = r.other_id WHERE r.user_id = $1",
        )
        .bind(user_id.0)
        .fetch_all(&self.db)
        .await
        .map_err(err)?;
        let relationships: Vec<Value> = rels
            .into_iter()
            .map(|(id, kind, username, display_name)| {
                json!({"user": {"id": id.to_string(), "username": username, "display_name": display_name}, "kind": kind})
            })
            .collect();
        let dm_channels = crate::messaging::dms::list(&self.db, user_id)
            .await
            .map_err(err)?;
        let dms: Vec<String> = dm_channels.iter().map(|d| d.id.to_string()).collect();
        let read_states = crate::messaging::reads::mine(&self.db, user_id)
            .await
            .map_err(err)?;
        Ok(json!({
            "user": me,
            "servers": servers,
            "relationships": relationships,
            "dm_channel_ids": dms,
            "dm_channels": dm_channels,
            "read_states": read_states,
        }))
    }

    async fn visible(&self, user_id: Id) -> Result<Visibility, DirectoryError> {
        let mut v = Visibility::default();
        for sid in self.server_ids(user_id).await? {
            v.servers.push(Id(sid));
            for c in self.visible_channels(user_id, Id(sid)).await? {
                v.channels.push(VisibleChannel {
                    id: Id(c.0),
                    server_id: Id(sid),
                });
            }
        }
        if !v.servers.is_empty() {
            let ids: Vec<i64> = v.servers.iter().map(|s| s.0).collect();
            let large: Vec<i64> = sqlx::query_scalar(
                "SELECT server_id FROM members WHERE server_id = ANY($1) GROUP BY server_id HAVING count(*) >= $2",
            )
            .bind(&ids)
            .bind(LARGE_SERVER_MEMBERS)
            .fetch_all(&self.db)
            .await
            .map_err(err)?;
            v.large_servers = large.into_iter().map(Id).collect();
        }
        v.dm_channels = self.dm_ids(user_id).await?.into_iter().map(Id).collect();
        let small: Vec<i64> = v
            .servers
            .iter()
            .filter(|s| !v.large_servers.contains(s))
            .map(|s| s.0)
            .collect();
        if !small.is_empty() {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT user_id FROM members WHERE server_id = ANY($1) AND user_id <> $2 LIMIT $3",
            )
            .bind(&small)
            .bind(user_id.0)
            .bind(MAX_CO_MEMBERS)
            .fetch_all(&self.db)
            .await
            .map_err(err)?;
            v.co_members = ids.into_iter().map(Id).collect();
        }
        v.friends = self
            .friend_ids(user_id)
            .await?
            .into_iter()
            .map(Id)
            .collect();
        Ok(v)
    }

    async fn is_session_active(&self, user_id: Id, session_id: Id) -> Result<bool, DirectoryError> {
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT s.revoked_at IS NULL AND s.expires_at > now() AND u.suspended_at IS NULL
               FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.user_id = $2",
        )
        .bind(session_id.0)
        .bind(user_id.0)
        .fetch_optional(&self.db)
        .await
        .map_err(err)?;
        Ok(live.unwrap_or(false))
    }

    async fn ack_to_device(
        &self,
        user_id: Id,
        device_id: &str,
        up_to: i64,
    ) -> Result<(), DirectoryError> {
        sqlx::query("DELETE FROM to_device_messages WHERE recipient_user_id = $1 AND recipient_device_id = $2 AND seq <= $3")
            .bind(user_id.0)
            .bind(device_id)
            .bind(up_to)
            .execute(&self.db)
            .await
            .map_err(err)?;
        Ok(())
    }
}
