//! The HTTP layer: an authenticated session on a Copains server and one method per route this
//! client uses. Bodies are the JSON shapes of `docs/e2ee.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use copains_crypto::device::{ClaimedKey, IdentityKeys, KeysUpload};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ClientError, ClientResult};

/// The header naming the caller's device on the to-device routes.
pub const DEVICE_HEADER: &str = "X-Copains-Device";

/// An authenticated session on a server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
    user_id: String,
}

/// `POST /keys/upload` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct UploadResult {
    /// Unclaimed one-time keys on the server, by algorithm (`curve25519`).
    pub one_time_key_counts: BTreeMap<String, i64>,
    /// Whether the fallback key is still unused.
    pub fallback_key_unused: bool,
}

/// A device as `POST /keys/query` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceKeys {
    /// Owner.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
    /// Identity keys.
    pub identity_keys: IdentityKeys,
    /// The device's self-signature.
    pub signature: String,
}

/// A queued to-device message.
#[derive(Debug, Clone, Deserialize)]
pub struct ToDeviceMessage {
    /// Queue position.
    pub id: i64,
    /// Sender user.
    pub sender_user_id: String,
    /// Sender device.
    pub sender_device_id: String,
    /// Message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Content.
    pub content: Value,
}

/// A page of the to-device queue.
#[derive(Debug, Clone, Deserialize)]
pub struct ToDevicePage {
    /// Messages, oldest first.
    pub messages: Vec<ToDeviceMessage>,
    /// Pass as `since` next.
    pub next_since: i64,
}

/// `GET /keys/changes` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyChanges {
    /// Users whose devices changed.
    pub changed: Vec<String>,
    /// Pass as `since` next.
    pub next: i64,
}

/// An encrypted key-backup blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupSession {
    /// Channel.
    pub channel_id: String,
    /// Megolm session id.
    pub session_id: String,
    /// Opaque encrypted data.
    pub data: String,
}

/// An encrypted message body as the messaging routes carry it (opaque to the server).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// `copains.megolm.v1` for Megolm channel messages.
    pub algorithm: String,
    /// The sending device.
    pub sender_device_id: String,
    /// The Megolm session id.
    pub session_id: String,
    /// Standard base64 (padded) of the Megolm message.
    pub ciphertext: String,
}

/// A message of a place's history, as far as this client reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelMessage {
    /// Message id.
    pub id: String,
    /// Author (`None` once their account is deleted).
    pub author_id: Option<String>,
    /// The encrypted envelope (encrypted places).
    pub encrypted: Option<Envelope>,
    /// Plaintext (plaintext places).
    pub content: Option<String>,
}

#[derive(Deserialize)]
struct AuthAnswer {
    user: UserRef,
    access_token: String,
}

#[derive(Deserialize)]
struct UserRef {
    id: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    code: String,
    message: String,
}

fn http_client() -> ClientResult<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

impl ApiClient {
    /// Registers an account on the server at `base` (e.g. `http://127.0.0.1:8080`) and logs in.
    pub async fn register(
        base: &str,
        username: &str,
        email: &str,
        password: &str,
    ) -> ClientResult<Self> {
        let http = http_client()?;
        let body = json!({"username": username, "email": email, "password": password});
        let a: AuthAnswer = Self::send(
            &http,
            base,
            Method::POST,
            "/auth/register",
            None,
            None,
            Some(&body),
        )
        .await?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: a.access_token,
            user_id: a.user.id,
        })
    }

    /// Logs in with a username or email and a password.
    pub async fn login(base: &str, login: &str, password: &str) -> ClientResult<Self> {
        let http = http_client()?;
        let body = json!({"login": login, "password": password});
        let a: AuthAnswer = Self::send(
            &http,
            base,
            Method::POST,
            "/auth/login",
            None,
            None,
            Some(&body),
        )
        .await?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: a.access_token,
            user_id: a.user.id,
        })
    }

    /// My user id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The access token.
    pub fn token(&self) -> &str {
        &self.token
    }

    async fn send<T: DeserializeOwned>(
        http: &reqwest::Client,
        base: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        device: Option<&str>,
        body: Option<&Value>,
    ) -> ClientResult<T> {
        let url = format!("{}/api/v1{path}", base.trim_end_matches('/'));
        let mut rb = http.request(method, url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(d) = device {
            rb = rb.header(DEVICE_HEADER, d);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorAnswer>(&bytes) {
                Ok(e) => (e.code, e.message),
                Err(_) => (
                    "unknown".to_owned(),
                    String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                ),
            };
            return Err(ClientError::Api {
                status: status.as_u16(),
                code,
                message,
            });
        }
        let slice: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(slice)
            .map_err(|e| ClientError::Protocol(format!("unexpected answer to {path}: {e}")))
    }

    /// An authenticated request to `/api/v1{path}`, optionally naming a device.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        device: Option<&str>,
        body: Option<&Value>,
    ) -> ClientResult<T> {
        Self::send(
            &self.http,
            &self.base,
            method,
            path,
            Some(&self.token),
            device,
            body,
        )
        .await
    }

    /// `POST /keys/upload`.
    pub async fn upload_keys(
        &self,
        keys: &KeysUpload,
        display_name: Option<&str>,
    ) -> ClientResult<UploadResult> {
        let mut body =
            serde_json::to_value(keys).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let (Some(obj), Some(name)) = (body.as_object_mut(), display_name) {
            obj.insert("display_name".into(), Value::String(name.to_owned()));
        }
        self.request(Method::POST, "/keys/upload", None, Some(&body))
            .await
    }

    /// `POST /keys/query`: devices by user id, then device id.
    pub async fn query_keys(
        &self,
        users: &[String],
    ) -> ClientResult<BTreeMap<String, BTreeMap<String, DeviceKeys>>> {
        #[derive(Deserialize)]
        struct A {
            devices: BTreeMap<String, BTreeMap<String, DeviceKeys>>,
        }
        let a: A = self
            .request(
                Method::POST,
                "/keys/query",
                None,
                Some(&json!({ "user_ids": users })),
            )
            .await?;
        Ok(a.devices)
    }

    /// `GET /keys/places/{id}`: the users who may read a place under the server's permission
    /// rules (members with VIEW_CHANNEL, a thread's parent deciding; a DM's recipients), by id.
    pub async fn place_readers(&self, place_id: &str) -> ClientResult<Vec<String>> {
        #[derive(Deserialize)]
        struct A {
            user_ids: Vec<String>,
        }
        let a: A = self
            .request(Method::GET, &format!("/keys/places/{place_id}"), None, None)
            .await?;
        Ok(a.user_ids)
    }

    /// `POST /keys/claim`: one key per requested device, by user id then device id.
    pub async fn claim_keys(
        &self,
        wanted: &BTreeMap<String, Vec<String>>,
    ) -> ClientResult<BTreeMap<String, BTreeMap<String, ClaimedKey>>> {
        #[derive(Deserialize)]
        struct A {
            one_time_keys: BTreeMap<String, BTreeMap<String, ClaimedKey>>,
        }
        let a: A = self
            .request(
                Method::POST,
                "/keys/claim",
                None,
                Some(&json!({ "device_keys": wanted })),
            )
            .await?;
        Ok(a.one_time_keys)
    }

    /// `GET /keys/changes?since=`.
    pub async fn key_changes(&self, since: i64) -> ClientResult<KeyChanges> {
        self.request(
            Method::GET,
            &format!("/keys/changes?since={since}"),
            None,
            None,
        )
        .await
    }

    /// `GET /devices`: my devices (raw JSON).
    pub async fn list_devices(&self) -> ClientResult<Vec<Value>> {
        self.request(Method::GET, "/devices", None, None).await
    }

    /// `DELETE /devices/{id}`.
    pub async fn delete_device(&self, device_id: &str) -> ClientResult<()> {
        let _: Value = self
            .request(Method::DELETE, &format!("/devices/{device_id}"), None, None)
            .await?;
        Ok(())
    }

    /// `PUT /to-device/{txn_id}` from `device_id`: `messages` by user id then device id.
    /// Returns how many were queued.
    pub async fn send_to_device(
        &self,
        device_id: &str,
        txn_id: &str,
        kind: &str,
        messages: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> ClientResult<i64> {
        #[derive(Deserialize)]
        struct A {
            queued: i64,
        }
        let a: A = self
            .request(
                Method::PUT,
                &format!("/to-device/{txn_id}"),
                Some(device_id),
                Some(&json!({ "type": kind, "messages": messages })),
            )
            .await?;
        Ok(a.queued)
    }

    /// `GET /to-device?since=&limit=` for `device_id`.
    pub async fn fetch_to_device(
        &self,
        device_id: &str,
        since: i64,
        limit: u32,
    ) -> ClientResult<ToDevicePage> {
        self.request(
            Method::GET,
            &format!("/to-device?since={since}&limit={limit}"),
            Some(device_id),
            None,
        )
        .await
    }

    /// `POST /to-device/ack {up_to}` for `device_id`; returns how many were deleted.
    pub async fn ack_to_device(&self, device_id: &str, up_to: i64) -> ClientResult<u64> {
        #[derive(Deserialize)]
        struct A {
            deleted: u64,
        }
        let a: A = self
            .request(
                Method::POST,
                "/to-device/ack",
                Some(device_id),
                Some(&json!({ "up_to": up_to })),
            )
            .await?;
        Ok(a.deleted)
    }

    /// `PUT /keys/backup`: starts a new backup version; returns it.
    pub async fn create_backup(&self, auth_data: &str) -> ClientResult<i64> {
        #[derive(Deserialize)]
        struct A {
            version: i64,
        }
        let a: A = self
            .request(
                Method::PUT,
                "/keys/backup",
                None,
                Some(&json!({ "auth_data": auth_data })),
            )
            .await?;
        Ok(a.version)
    }

    /// `GET /keys/backup`: `(version, auth_data)` of my current backup.
    pub async fn get_backup(&self) -> ClientResult<(i64, String)> {
        #[derive(Deserialize)]
        struct A {
            version: i64,
            auth_data: String,
        }
        let a: A = self
            .request(Method::GET, "/keys/backup", None, None)
            .await?;
        Ok((a.version, a.auth_data))
    }

    /// `PUT /keys/backup/sessions`.
    pub async fn put_backup_sessions(
        &self,
        version: i64,
        sessions: &[BackupSession],
    ) -> ClientResult<()> {
        let _: Value = self
            .request(
                Method::PUT,
                "/keys/backup/sessions",
                None,
                Some(&json!({ "version": version, "sessions": sessions })),
            )
            .await?;
        Ok(())
    }

    /// `GET /keys/backup/sessions`: every blob of my current backup (all pages).
    pub async fn get_backup_sessions(&self) -> ClientResult<Vec<BackupSession>> {
        #[derive(Deserialize)]
        struct Page {
            sessions: Vec<BackupSession>,
            next: i64,
        }
        let mut out = Vec::new();
        let mut since = 0;
        loop {
            let p: Page = self
                .request(
                    Method::GET,
                    &format!("/keys/backup/sessions?since={since}"),
                    None,
                    None,
                )
                .await?;
            if p.sessions.is_empty() || p.next <= since {
                return Ok(out);
            }
            out.extend(p.sessions);
            since = p.next;
        }
    }

    /// `POST /users/@me/channels`: opens (or finds) the DM with `recipients` (one user) or
    /// creates a group DM (two to nine); returns the DM place's id.
    pub async fn open_dm(&self, recipients: &[String]) -> ClientResult<String> {
        #[derive(Deserialize)]
        struct A {
            id: String,
        }
        let a: A = self
            .request(
                Method::POST,
                "/users/@me/channels",
                None,
                Some(&json!({ "recipients": recipients })),
            )
            .await?;
        Ok(a.id)
    }

    /// `POST /channels/{id}/messages` with an encrypted envelope (DMs, group DMs and
    /// encrypted channels); `nonce` makes a retry idempotent. Returns the message id.
    pub async fn post_encrypted_message(
        &self,
        channel_id: &str,
        envelope: &Envelope,
        nonce: &str,
    ) -> ClientResult<String> {
        #[derive(Deserialize)]
        struct A {
            id: String,
        }
        let a: A = self
            .request(
                Method::POST,
                &format!("/channels/{channel_id}/messages"),
                None,
                Some(&json!({ "encrypted": envelope, "nonce": nonce })),
            )
            .await?;
        Ok(a.id)
    }

    /// `GET /channels/{id}/messages?limit=100`: the newest 100 messages, oldest first.
    pub async fn channel_messages(&self, channel_id: &str) -> ClientResult<Vec<ChannelMessage>> {
        self.request(
            Method::GET,
            &format!("/channels/{channel_id}/messages?limit=100"),
            None,
            None,
        )
        .await
    }
}
