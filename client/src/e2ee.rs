//! One end-to-end encrypted device driving a real server: publish keys, open Olm sessions to
//! every device of the people you talk to, send DMs and Megolm room keys over the to-device
//! queue, receive and decrypt them, and encrypt/decrypt channel messages with Megolm.
//!
//! Every Olm plaintext is a JSON object naming its sender and recipient (user, device and
//! ed25519 key), checked on receipt against the to-device metadata and the keys published by
//! `keys/query`, so the server cannot redirect or re-attribute a message:
//!
//! ```json
//! { "type": "copains.dm" | "copains.room_key",
//!   "sender": "<user id>", "sender_device": "<device id>", "sender_ed25519": "<b64>",
//!   "recipient": "<user id>", "recipient_device": "<device id>", "recipient_ed25519": "<b64>",
//!   "content": { ... } }
//! ```
//!
//! A DM's content is `{"body": "<text>"}`; a room key's is the `RoomKey` JSON of
//! `copains_crypto::megolm`.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use copains_crypto::backup::RecoveryKey;
use copains_crypto::device::{Device, IdentityKeys, KeysUpload};
use copains_crypto::megolm::{
    Decrypted, ExportedRoomKey, GroupMessage, InboundGroup, InboundGroupStore, OutboundGroup,
    RoomKey,
};
use copains_crypto::olm::{OlmEnvelope, OlmSession, OlmSessions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{ApiClient, BackupSession, ChannelMessage, Envelope, UploadResult};
use crate::error::{ClientError, ClientResult};

/// `algorithm` of a Megolm channel message envelope.
pub const MEGOLM_ALGORITHM: &str = "copains.megolm.v1";
/// To-device type of an Olm envelope.
pub const OLM_TYPE: &str = "copains.olm";
/// To-device type of a Megolm-encrypted channel message carried over the to-device queue
/// (used until the messaging routes exist, and by tests).
pub const MEGOLM_TYPE: &str = "copains.megolm";
/// Inner type of a DM.
pub const DM_TYPE: &str = "copains.dm";
/// Inner type of a room key.
pub const ROOM_KEY_TYPE: &str = copains_crypto::megolm::ROOM_KEY_TYPE;
/// One-time keys kept published on the server.
pub const TARGET_ONE_TIME_KEYS: i64 = 50;

/// A device id and its owner.
pub type DeviceRef = (String, String);

/// What [`E2eeClient::sync`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A direct message.
    Dm {
        /// Sender user.
        sender: String,
        /// Sender device.
        sender_device: String,
        /// The text.
        body: String,
    },
    /// A Megolm room key was received and imported.
    RoomKey {
        /// Sender user.
        sender: String,
        /// Sender device.
        sender_device: String,
        /// Channel.
        channel_id: String,
        /// Megolm session.
        session_id: String,
    },
    /// A channel message (Megolm), decrypted.
    Group {
        /// Sender user.
        sender: String,
        /// Sender device.
        sender_device: String,
        /// Channel.
        channel_id: String,
        /// Plaintext.
        plaintext: Vec<u8>,
        /// Megolm message index.
        message_index: u32,
    },
    /// Something that could not be decrypted or failed a check.
    Undecryptable {
        /// Sender user (as the server says).
        sender: String,
        /// Sender device (as the server says).
        sender_device: String,
        /// To-device type.
        kind: String,
        /// Why.
        error: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct OlmPayload {
    #[serde(rename = "type")]
    kind: String,
    sender: String,
    sender_device: String,
    sender_ed25519: String,
    recipient: String,
    recipient_device: String,
    recipient_ed25519: String,
    content: Value,
}

/// What one key-backup blob holds once decrypted: the exported session key and the device
/// that shared it (so a restored session is still only accepted from that device).
#[derive(Debug, Serialize, Deserialize)]
struct BackedUpKey {
    key: ExportedRoomKey,
    sender: String,
    sender_device: String,
}

/// `auth_data` of backups made by this client.
pub const BACKUP_AUTH_DATA: &str = "copains.backup.v1";

#[derive(Debug, Serialize, Deserialize)]
struct MegolmCarrier {
    channel_id: String,
    message: GroupMessage,
}

/// Where [`E2eeClient::send_group`] sends a channel message.
#[derive(Debug, Clone, Copy)]
pub enum GroupTransport<'a> {
    /// To every device of these users (and my other devices) over the to-device queue.
    ToDevice(&'a [String]),
    /// `POST /channels/{id}/messages` (the place must be encrypted).
    ChannelMessages,
}

/// One encrypted device of a logged-in user.
pub struct E2eeClient {
    api: ApiClient,
    device: Device,
    olm: OlmSessions,
    /// Verified identity keys of known devices.
    known: HashMap<DeviceRef, IdentityKeys>,
    outbound: HashMap<String, OutboundGroup>,
    inbound: InboundGroupStore,
    /// Who shared each inbound Megolm session (only they may send with it).
    inbound_senders: HashMap<String, DeviceRef>,
    since: i64,
}

impl std::fmt::Debug for E2eeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eeClient")
            .field("user_id", &self.api.user_id())
            .field("device_id", &self.device.device_id())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn txn_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn protocol(msg: impl Into<String>) -> ClientError {
    ClientError::Protocol(msg.into())
}

impl E2eeClient {
    /// Creates a new device `device_id` with fresh identity keys, publishes its keys (up to
    /// `one_time_keys` one-time keys, capped at 50 by vodozemac, and a fallback key).
    pub async fn create_device(
        api: ApiClient,
        device_id: &str,
        one_time_keys: usize,
    ) -> ClientResult<Self> {
        let mut device = Device::new(api.user_id(), device_id)?;
        device.generate_one_time_keys(one_time_keys);
        device.generate_fallback_key();
        let mut me = Self {
            api,
            device,
            olm: OlmSessions::new(),
            known: HashMap::new(),
            outbound: HashMap::new(),
            inbound: InboundGroupStore::new(),
            inbound_senders: HashMap::new(),
            since: 0,
        };
        me.upload_keys().await?;
        let own = (me.user_id().to_owned(), me.device_id().to_owned());
        me.known.insert(own, me.device.identity_keys());
        Ok(me)
    }

    /// The HTTP session.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// My user id.
    pub fn user_id(&self) -> &str {
        self.api.user_id()
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        self.device.device_id()
    }

    /// This device's identity keys.
    pub fn identity_keys(&self) -> IdentityKeys {
        self.device.identity_keys()
    }

    /// The crypto device (to build custom bundles in tests).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Uploads the unpublished keys and marks them published.
    pub async fn upload_keys(&mut self) -> ClientResult<UploadResult> {
        let r = self
            .api
            .upload_keys(&self.device.keys_for_upload(), None)
            .await?;
        self.device.mark_keys_as_published();
        Ok(r)
    }

    /// Tops the server's one-time keys up to [`TARGET_ONE_TIME_KEYS`] (and publishes a new
    /// fallback key once the current one was handed out).
    pub async fn replenish_keys(&mut self) -> ClientResult<UploadResult> {
        let r = self.upload_keys().await?;
        let have = r
            .one_time_key_counts
            .get("curve25519")
            .copied()
            .unwrap_or(0);
        let missing = usize::try_from(TARGET_ONE_TIME_KEYS - have).unwrap_or(0);
        if missing == 0 && r.fallback_key_unused {
            return Ok(r);
        }
        self.device.generate_one_time_keys(missing);
        if !r.fallback_key_unused {
            self.device.generate_fallback_key();
        }
        self.upload_keys().await
    }

    /// Queries the devices of `users`, checks each device's self-signature, and remembers
    /// their identity keys (trust on first use: a known device whose keys changed is an
    /// error). Returns the devices found.
    pub async fn refresh_devices(&mut self, users: &[String]) -> ClientResult<Vec<DeviceRef>> {
        let listed = self.api.query_keys(users).await?;
        let mut out = Vec::new();
        for (user, devices) in listed {
            for (device_id, d) in devices {
                if d.user_id != user || d.device_id != device_id {
                    return Err(protocol("keys/query answered a device under another name"));
                }
                KeysUpload {
                    user_id: d.user_id.clone(),
                    device_id: d.device_id.clone(),
                    identity_keys: d.identity_keys.clone(),
                    signature: d.signature.clone(),
                    one_time_keys: BTreeMap::new(),
                    fallback_key: None,
                }
                .verify()?;
                let key = (user.clone(), device_id);
                if self
                    .known
                    .get(&key)
                    .is_some_and(|old| *old != d.identity_keys)
                {
                    return Err(protocol(format!(
                        "the identity keys of {}/{} changed",
                        key.0, key.1
                    )));
                }
                self.known.insert(key.clone(), d.identity_keys);
                out.push(key);
            }
        }
        Ok(out)
    }

    /// The devices to send a DM (or a room key) to: every device of `users` and my own other
    /// devices.
    async fn targets(&mut self, users: &[String]) -> ClientResult<Vec<DeviceRef>> {
        let mut all: Vec<String> = users.to_vec();
        all.push(self.user_id().to_owned());
        all.sort();
        all.dedup();
        let me = (self.user_id().to_owned(), self.device_id().to_owned());
        Ok(self
            .refresh_devices(&all)
            .await?
            .into_iter()
            .filter(|d| *d != me)
            .collect())
    }

    /// Opens Olm sessions to the `targets` that have none, claiming one key each. Devices
    /// with no key left are skipped (they are not returned).
    async fn ensure_sessions(&mut self, targets: &[DeviceRef]) -> ClientResult<Vec<DeviceRef>> {
        let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (u, d) in targets {
            let Some(keys) = self.known.get(&(u.clone(), d.clone())) else {
                continue;
            };
            if self.olm.session_for(&keys.curve25519).is_none() {
                wanted.entry(u.clone()).or_default().push(d.clone());
            }
        }
        if !wanted.is_empty() {
            let claimed = self.api.claim_keys(&wanted).await?;
            for (user, devices) in claimed {
                for (device_id, key) in devices {
                    let known = self
                        .known
                        .get(&(user.clone(), device_id.clone()))
                        .ok_or_else(|| protocol("claimed a key for an unknown device"))?;
                    if key.user_id != user
                        || key.device_id != device_id
                        || key.identity_keys != *known
                    {
                        return Err(protocol(
                            "a claimed key does not match the device's published identity",
                        ));
                    }
                    let session = OlmSession::outbound(&self.device, &key)?;
                    self.olm.insert(session);
                }
            }
        }
        Ok(targets
            .iter()
            .filter(|t| {
                self.known
                    .get(*t)
                    .is_some_and(|k| self.olm.session_for(&k.curve25519).is_some())
            })
            .cloned()
            .collect())
    }

    /// Encrypts `content` of inner type `kind` with Olm for each target and sends it all in
    /// one to-device transaction. Returns how many devices it was queued for.
    async fn send_olm(
        &mut self,
        targets: &[DeviceRef],
        kind: &str,
        content: &Value,
    ) -> ClientResult<usize> {
        let reachable = self.ensure_sessions(targets).await?;
        let me_ed = self.device.identity_keys().ed25519;
        let mut messages: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (user, device_id) in &reachable {
            let Some(keys) = self.known.get(&(user.clone(), device_id.clone())).cloned() else {
                continue;
            };
            let payload = OlmPayload {
                kind: kind.to_owned(),
                sender: self.user_id().to_owned(),
                sender_device: self.device_id().to_owned(),
                sender_ed25519: me_ed.clone(),
                recipient: user.clone(),
                recipient_device: device_id.clone(),
                recipient_ed25519: keys.ed25519.clone(),
                content: content.clone(),
            };
            let plaintext = serde_json::to_vec(&payload).map_err(|e| protocol(e.to_string()))?;
            let session = self
                .olm
                .session_for(&keys.curve25519)
                .ok_or_else(|| protocol("Olm session vanished"))?;
            let envelope = session.encrypt(&plaintext)?;
            let v = serde_json::to_value(&envelope).map_err(|e| protocol(e.to_string()))?;
            messages
                .entry(user.clone())
                .or_default()
                .insert(device_id.clone(), v);
        }
        if messages.is_empty() {
            return Ok(0);
        }
        let device_id = self.device_id().to_owned();
        let queued = self
            .api
            .send_to_device(&device_id, &txn_id(), OLM_TYPE, &messages)
            .await?;
        Ok(usize::try_from(queued).unwrap_or(0))
    }

    /// Sends an encrypted DM to every device of `recipient` and to my own other devices.
    /// Returns how many devices it was queued for.
    pub async fn send_dm(&mut self, recipient: &str, body: &str) -> ClientResult<usize> {
        let targets = self.targets(&[recipient.to_owned()]).await?;
        self.send_olm(&targets, DM_TYPE, &json!({ "body": body }))
            .await
    }

    /// Starts a new outbound Megolm session for `channel_id` (replacing any previous one:
    /// this is the rotation). Share it with [`E2eeClient::share_group_session`].
    pub fn create_group_session(&mut self, channel_id: &str) -> ClientResult<String> {
        let out = OutboundGroup::new(channel_id, now_ms())?;
        let id = out.session_id();
        // Keep an inbound copy so my own messages stay readable on this device.
        let key = out.room_key();
        let inbound = InboundGroup::from_room_key(&key)?;
        self.inbound_senders.insert(
            id.clone(),
            (self.user_id().to_owned(), self.device_id().to_owned()),
        );
        self.inbound.insert(inbound);
        self.outbound.insert(channel_id.to_owned(), out);
        Ok(id)
    }

    /// Sends the current outbound session key of `channel_id` over Olm to every device of
    /// `members` and my other devices. Returns how many devices it was queued for.
    pub async fn share_group_session(
        &mut self,
        channel_id: &str,
        members: &[String],
    ) -> ClientResult<usize> {
        let key: RoomKey = self
            .outbound
            .get(channel_id)
            .ok_or_else(|| protocol("no outbound session for this channel"))?
            .room_key();
        let content = serde_json::to_value(&key).map_err(|e| protocol(e.to_string()))?;
        let targets = self.targets(members).await?;
        self.send_olm(&targets, ROOM_KEY_TYPE, &content).await
    }

    /// Shares the current outbound session of `place_id` with exactly the users the server
    /// says may read it ([`ApiClient::place_readers`]) and my other devices.
    pub async fn share_group_session_with_readers(
        &mut self,
        place_id: &str,
    ) -> ClientResult<usize> {
        let readers = self.api.place_readers(place_id).await?;
        self.share_group_session(place_id, &readers).await
    }

    /// Rotates the channel's session (a member left or was removed, or the rotation policy
    /// says so): a new session shared only with `remaining_members`.
    pub async fn rotate_group_session(
        &mut self,
        channel_id: &str,
        remaining_members: &[String],
    ) -> ClientResult<String> {
        let id = self.create_group_session(channel_id)?;
        self.share_group_session(channel_id, remaining_members)
            .await?;
        Ok(id)
    }

    /// Encrypts a channel message with the channel's outbound session.
    pub fn encrypt_group(
        &mut self,
        channel_id: &str,
        plaintext: &[u8],
    ) -> ClientResult<GroupMessage> {
        Ok(self
            .outbound
            .get_mut(channel_id)
            .ok_or_else(|| protocol("no outbound session for this channel"))?
            .encrypt(plaintext)?)
    }

    /// Decrypts a channel message sent by `(sender, sender_device)`: the session must have
    /// been shared by that very device.
    pub fn decrypt_group(
        &mut self,
        sender: &str,
        sender_device: &str,
        message: &GroupMessage,
    ) -> ClientResult<Decrypted> {
        match self.inbound_senders.get(&message.session_id) {
            Some((u, d)) if u == sender && d == sender_device => {}
            Some(_) => return Err(protocol("this session was shared by another device")),
            None => {
                return Err(ClientError::Megolm(
                    copains_crypto::megolm::MegolmError::UnknownSession(message.session_id.clone()),
                ));
            }
        }
        Ok(self.inbound.decrypt(message)?)
    }

    /// Encrypts and sends a channel message. With [`GroupTransport::ToDevice`], the Megolm
    /// ciphertext goes to every device of the given users (and my other devices).
    pub async fn send_group(
        &mut self,
        channel_id: &str,
        plaintext: &[u8],
        transport: GroupTransport<'_>,
    ) -> ClientResult<usize> {
        let message = self.encrypt_group(channel_id, plaintext)?;
        match transport {
            GroupTransport::ChannelMessages => {
                self.post_group_message(channel_id, &message).await?;
                Ok(1)
            }
            GroupTransport::ToDevice(users) => {
                self.send_group_ciphertext(channel_id, &message, users)
                    .await
            }
        }
    }

    /// Posts an already-encrypted channel message to `POST /channels/{id}/messages` (the
    /// place must be encrypted: a DM, group DM or encrypted channel). Returns its id.
    pub async fn post_group_message(
        &self,
        channel_id: &str,
        message: &GroupMessage,
    ) -> ClientResult<String> {
        // vodozemac writes unpadded base64; the messaging routes want it padded.
        let mut ciphertext = message.ciphertext.clone();
        while !ciphertext.len().is_multiple_of(4) {
            ciphertext.push('=');
        }
        let envelope = Envelope {
            algorithm: MEGOLM_ALGORITHM.to_owned(),
            sender_device_id: self.device_id().to_owned(),
            session_id: message.session_id.clone(),
            ciphertext,
        };
        self.api
            .post_encrypted_message(channel_id, &envelope, &txn_id())
            .await
    }

    /// Decrypts a message of a place's history (Megolm envelope), checking that its session
    /// was shared by the author's named device.
    pub fn decrypt_channel_message(&mut self, message: &ChannelMessage) -> ClientResult<Decrypted> {
        let envelope = message
            .encrypted
            .as_ref()
            .ok_or_else(|| protocol("not an encrypted message"))?;
        if envelope.algorithm != MEGOLM_ALGORITHM {
            return Err(protocol(format!(
                "unsupported algorithm {:?}",
                envelope.algorithm
            )));
        }
        let author = message
            .author_id
            .as_deref()
            .ok_or_else(|| protocol("a message without an author"))?;
        let group = GroupMessage {
            session_id: envelope.session_id.clone(),
            ciphertext: envelope.ciphertext.trim_end_matches('=').to_owned(),
        };
        self.decrypt_group(author, &envelope.sender_device_id, &group)
    }

    /// Sends an already-encrypted channel message over the to-device queue to every device
    /// of `users` (and my other devices).
    pub async fn send_group_ciphertext(
        &mut self,
        channel_id: &str,
        message: &GroupMessage,
        users: &[String],
    ) -> ClientResult<usize> {
        let targets = self.targets(users).await?;
        let content = serde_json::to_value(MegolmCarrier {
            channel_id: channel_id.to_owned(),
            message: message.clone(),
        })
        .map_err(|e| protocol(e.to_string()))?;
        let mut messages: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (u, d) in targets {
            messages.entry(u).or_default().insert(d, content.clone());
        }
        if messages.is_empty() {
            return Ok(0);
        }
        let device_id = self.device_id().to_owned();
        let queued = self
            .api
            .send_to_device(&device_id, &txn_id(), MEGOLM_TYPE, &messages)
            .await?;
        Ok(usize::try_from(queued).unwrap_or(0))
    }

    /// Fetches my device's to-device queue, decrypts everything, acknowledges it, and
    /// returns what arrived (in order). Failures are returned as [`Incoming::Undecryptable`].
    pub async fn sync(&mut self) -> ClientResult<Vec<Incoming>> {
        let mut out = Vec::new();
        loop {
            let device_id = self.device_id().to_owned();
            let page = self
                .api
                .fetch_to_device(&device_id, self.since, 100)
                .await?;
            if page.messages.is_empty() {
                break;
            }
            for m in page.messages {
                let incoming = match self
                    .handle(&m.sender_user_id, &m.sender_device_id, &m.kind, &m.content)
                    .await
                {
                    Ok(i) => i,
                    Err(e) => Incoming::Undecryptable {
                        sender: m.sender_user_id.clone(),
                        sender_device: m.sender_device_id.clone(),
                        kind: m.kind.clone(),
                        error: e.to_string(),
                    },
                };
                out.push(incoming);
            }
            self.api.ack_to_device(&device_id, page.next_since).await?;
            self.since = page.next_since;
        }
        Ok(out)
    }

    /// Every Megolm session key this device holds, exported from its first known index.
    pub fn export_room_keys(&self) -> Vec<ExportedRoomKey> {
        self.inbound.export_all()
    }

    /// Backs every Megolm session key this device holds up to the server, each encrypted
    /// under `recovery` (the server stores opaque blobs). Creates a backup version when there
    /// is none. Returns how many keys were backed up.
    pub async fn backup_room_keys(&self, recovery: &RecoveryKey) -> ClientResult<usize> {
        let version = match self.api.get_backup().await {
            Ok((v, _)) => v,
            Err(e) if e.status() == Some(404) => self.api.create_backup(BACKUP_AUTH_DATA).await?,
            Err(e) => return Err(e),
        };
        let mut blobs = Vec::new();
        for key in self.inbound.export_all() {
            let Some((sender, sender_device)) = self.inbound_senders.get(&key.session_id).cloned()
            else {
                continue;
            };
            let (channel_id, session_id) = (key.channel_id.clone(), key.session_id.clone());
            let plain = serde_json::to_vec(&BackedUpKey {
                key,
                sender,
                sender_device,
            })
            .map_err(|e| protocol(e.to_string()))?;
            let data = copains_crypto::base64_encode(recovery.encrypt(&plain)?);
            blobs.push(BackupSession {
                channel_id,
                session_id,
                data,
            });
        }
        for chunk in blobs.chunks(500) {
            self.api.put_backup_sessions(version, chunk).await?;
        }
        Ok(blobs.len())
    }

    /// Restores Megolm session keys from the server's backup with `recovery`. Returns how
    /// many were imported; a wrong recovery key is an error.
    pub async fn restore_room_keys(&mut self, recovery: &RecoveryKey) -> ClientResult<usize> {
        let blobs = self.api.get_backup_sessions().await?;
        let mut n = 0;
        for b in blobs {
            let sealed = copains_crypto::base64_decode(&b.data)
                .map_err(|e| protocol(format!("backup blob: {e}")))?;
            let plain = recovery.decrypt(&sealed)?;
            let k: BackedUpKey = serde_json::from_slice(&plain)
                .map_err(|e| protocol(format!("backup blob: {e}")))?;
            let inbound = InboundGroup::from_exported(&k.key)?;
            self.inbound_senders
                .insert(k.key.session_id.clone(), (k.sender, k.sender_device));
            self.inbound.insert(inbound);
            n += 1;
        }
        Ok(n)
    }

    async fn handle(
        &mut self,
        sender: &str,
        sender_device: &str,
        kind: &str,
        content: &Value,
    ) -> ClientResult<Incoming> {
        match kind {
            OLM_TYPE => self.handle_olm(sender, sender_device, content).await,
            MEGOLM_TYPE => {
                let c: MegolmCarrier = serde_json::from_value(content.clone())
                    .map_err(|e| protocol(format!("malformed Megolm carrier: {e}")))?;
                let d = self.decrypt_group(sender, sender_device, &c.message)?;
                Ok(Incoming::Group {
                    sender: sender.to_owned(),
                    sender_device: sender_device.to_owned(),
                    channel_id: c.channel_id,
                    plaintext: d.plaintext,
                    message_index: d.message_index,
                })
            }
            other => Err(protocol(format!("unknown to-device type {other:?}"))),
        }
    }

    async fn handle_olm(
        &mut self,
        sender: &str,
        sender_device: &str,
        content: &Value,
    ) -> ClientResult<Incoming> {
        let envelope: OlmEnvelope = serde_json::from_value(content.clone())
            .map_err(|e| protocol(format!("malformed Olm envelope: {e}")))?;
        let key = (sender.to_owned(), sender_device.to_owned());
        if !self.known.contains_key(&key) {
            self.refresh_devices(&[sender.to_owned()]).await?;
        }
        let keys = self
            .known
            .get(&key)
            .cloned()
            .ok_or_else(|| protocol("message from a device with no published keys"))?;
        if keys.curve25519 != envelope.sender_key {
            return Err(protocol(
                "the Olm sender key is not the sending device's key",
            ));
        }
        let plaintext = self.olm.decrypt(&mut self.device, &envelope)?;
        let payload: OlmPayload = serde_json::from_slice(&plaintext)
            .map_err(|e| protocol(format!("malformed Olm payload: {e}")))?;
        let me = self.identity_keys();
        if payload.sender != sender
            || payload.sender_device != sender_device
            || payload.sender_ed25519 != keys.ed25519
            || payload.recipient != self.user_id()
            || payload.recipient_device != self.device_id()
            || payload.recipient_ed25519 != me.ed25519
        {
            return Err(protocol(
                "the Olm payload names another sender or recipient",
            ));
        }
        match payload.kind.as_str() {
            DM_TYPE => {
                let body = payload
                    .content
                    .get("body")
                    .and_then(Value::as_str)
                    .ok_or_else(|| protocol("a DM without a body"))?
                    .to_owned();
                Ok(Incoming::Dm {
                    sender: key.0,
                    sender_device: key.1,
                    body,
                })
            }
            ROOM_KEY_TYPE => {
                let room_key = RoomKey::from_json(&payload.content.to_string())?;
                let inbound = InboundGroup::from_room_key(&room_key)?;
                if self
                    .inbound_senders
                    .get(&room_key.session_id)
                    .is_some_and(|prev| *prev != key)
                {
                    return Err(protocol("a room key already shared by another device"));
                }
                self.inbound_senders
                    .insert(room_key.session_id.clone(), key.clone());
                self.inbound.insert(inbound);
                Ok(Incoming::RoomKey {
                    sender: key.0,
                    sender_device: key.1,
                    channel_id: room_key.channel_id,
                    session_id: room_key.session_id,
                })
            }
            other => Err(protocol(format!("unknown Olm payload type {other:?}"))),
        }
    }
}
