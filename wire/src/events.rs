//! Events on the internal bus, defined once for the api (which publishes most of them) and
//! the gateway (which delivers them to exactly the connections allowed to see them).
//!
//! A [`BusEvent`] is an [`Event`] (serialized as `{"t": "<name>", "d": {...}}`, the same
//! shape a client sees inside a `dispatch` frame) plus the [`Audience`]s it is meant for.
//! Payloads whose shape the api owns (a message, a channel, a member) are carried as
//! [`serde_json::Value`]; fields the gateway itself needs (ids, presence, typing) are typed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Id;

/// Who may receive an event. A connection receives an event when it matches at least one
/// of the event's audiences (and receives it once even if it matches several).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every connection of one user.
    User(Id),
    /// Every connection of each of these users.
    Users(Vec<Id>),
    /// One gateway session of one user (voice signalling answers from the SFU, for example).
    Session {
        /// The user owning the session.
        user_id: Id,
        /// The gateway session id (the `session_id` of `ready`).
        session_id: String,
    },
    /// Every member of a server.
    Server(Id),
    /// Those who may view a channel: members with VIEW_CHANNEL in a server channel, the
    /// recipients of a DM or group DM (`server_id: None`).
    Channel {
        /// The server owning the channel; `None` for DMs and group DMs.
        server_id: Option<Id>,
        /// The channel.
        channel_id: Id,
    },
    /// Members of a (large) server whose client subscribed to its member list
    /// (`subscribe_members`): member presence in large servers goes only there.
    MemberList(Id),
    /// The SFU node serving a voice channel (it subscribes to this channel's voice topic).
    Voice(Id),
}

/// Presence status as chosen by a user. `Invisible` is shown to others as `Offline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Connected and active.
    #[default]
    Online,
    /// Connected, away from keyboard.
    Idle,
    /// Do not disturb.
    Dnd,
    /// Connected but shown as offline to others (only ever sent to the user's own sessions).
    Invisible,
    /// Not connected (never chosen by a client; what others see of an invisible user).
    Offline,
}

/// The kind of a voice signalling message relayed between a client and the SFU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// A trickled ICE candidate (or end of candidates).
    Ice,
    /// Anything else the SFU and client agree on (layer choice, renegotiation hints…).
    Other,
}

/// What a moderator did to the user told by [`Event::ModerationNotice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    /// Removed from the server (an invite lets them back).
    Kick,
    /// Removed and refused until unbanned.
    Ban,
    /// Timed out (cannot send, react or speak) until `timeout_until`.
    Timeout,
}

/// What happened. Serialized adjacently tagged: `{"t": "message_create", "d": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "d", rename_all = "snake_case")]
pub enum Event {
    // ---- sessions and scope (consumed by the gateway, not dispatched) ----
    /// A login session (refresh-token family) was revoked: every gateway connection that
    /// identified with an access token of this session is closed with 4012.
    SessionRevoked {
        /// The user.
        user_id: Id,
        /// The revoked session (the `sid` claim of the access token).
        session_id: Id,
    },
    /// The user's permissions or memberships changed: the gateway recomputes what this
    /// user's connections may see (and subscribes or unsubscribes accordingly).
    ScopeChanged {
        /// The user whose scope changed.
        user_id: Id,
    },

    // ---- servers, channels, roles, members ----
    /// A server became visible to the audience (created, or joined).
    ServerCreate {
        /// The server object as the api renders it.
        server: Value,
    },
    /// A server's settings changed.
    ServerUpdate {
        /// The server object as the api renders it.
        server: Value,
    },
    /// A server was deleted, or the audience left or was removed from it.
    ServerDelete {
        /// The server.
        server_id: Id,
    },
    /// A channel was created (or a thread started: its object has `kind: "thread"`).
    ChannelCreate {
        /// The channel object as the api renders it (a thread object for threads).
        channel: Value,
    },
    /// A channel changed (name, topic, position, overwrites…).
    ChannelUpdate {
        /// The channel object as the api renders it.
        channel: Value,
    },
    /// A channel was deleted.
    ChannelDelete {
        /// The server, `None` for DMs.
        server_id: Option<Id>,
        /// The channel.
        channel_id: Id,
    },
    /// A role was created.
    RoleCreate {
        /// The server.
        server_id: Id,
        /// The role object as the api renders it.
        role: Value,
    },
    /// A role changed.
    RoleUpdate {
        /// The server.
        server_id: Id,
        /// The role object as the api renders it.
        role: Value,
    },
    /// A role was deleted.
    RoleDelete {
        /// The server.
        server_id: Id,
        /// The role.
        role_id: Id,
    },
    /// A member joined a server.
    MemberAdd {
        /// The server.
        server_id: Id,
        /// The member object as the api renders it.
        member: Value,
    },
    /// A member changed (nickname, roles, timeout).
    MemberUpdate {
        /// The server.
        server_id: Id,
        /// The member object as the api renders it.
        member: Value,
    },
    /// A member left, was kicked or banned.
    MemberRemove {
        /// The server.
        server_id: Id,
        /// The user who is no longer a member.
        user_id: Id,
    },
    /// The audience (one user) was kicked, banned or timed out: what, where and why, so the
    /// client can say so instead of showing a server that vanished.
    ModerationNotice {
        /// The server.
        server_id: Id,
        /// The server's name at the time.
        server_name: String,
        /// What was done.
        action: ModerationAction,
        /// The reason the moderator gave, if any.
        reason: Option<String>,
        /// For a timeout: when it ends (RFC 3339).
        timeout_until: Option<String>,
    },
    /// A friend request, acceptance, removal, block or unblock concerning the audience.
    RelationshipUpdate {
        /// The relationship object as the api renders it.
        relationship: Value,
    },

    // ---- messages ----
    /// A message was created.
    MessageCreate {
        /// The message object as the api renders it (ciphertext envelope in encrypted places),
        /// reader-neutral: its reactions carry no `me`.
        message: Value,
    },
    /// A message was edited or (un)pinned.
    MessageUpdate {
        /// The message object as the api renders it, reader-neutral: its reactions carry
        /// `emoji` and `count` but no `me` (the event goes to every reader).
        message: Value,
    },
    /// A message was deleted.
    MessageDelete {
        /// The channel.
        channel_id: Id,
        /// The message.
        message_id: Id,
    },
    /// A reaction was added.
    ReactionAdd {
        /// The channel.
        channel_id: Id,
        /// The message.
        message_id: Id,
        /// Who reacted.
        user_id: Id,
        /// The emoji (unicode, or a custom emoji id).
        emoji: String,
    },
    /// A reaction was removed.
    ReactionRemove {
        /// The channel.
        channel_id: Id,
        /// The message.
        message_id: Id,
        /// Whose reaction.
        user_id: Id,
        /// The emoji.
        emoji: String,
    },
    /// The user's read state of a channel moved (sent to the user's other sessions).
    ReadStateUpdate {
        /// The channel.
        channel_id: Id,
        /// The last message read.
        last_read_id: Id,
    },

    // ---- whiteboards ----
    /// A stroke was added to a place's whiteboard.
    WhiteboardStroke {
        /// The stroke object as the api renders it (an envelope in encrypted places).
        stroke: Value,
    },
    /// A place's whiteboard was cleared: every stroke with an id up to `up_to` is gone.
    WhiteboardClear {
        /// The place.
        channel_id: Id,
        /// The newest stroke id removed (`0` when the board had none).
        up_to: Id,
        /// Who cleared it.
        user_id: Id,
    },

    // ---- liveness ----
    /// A user started typing in a channel. Clients hide it at `expires_at_ms`; the gateway
    /// never delivers (nor replays) it after that.
    TypingStart {
        /// The channel.
        channel_id: Id,
        /// The server, `None` for DMs.
        server_id: Option<Id>,
        /// Who is typing.
        user_id: Id,
        /// When the gateway accepted it, Unix milliseconds.
        timestamp_ms: u64,
        /// When it stops being true, Unix milliseconds (`timestamp_ms` + 10 s).
        expires_at_ms: u64,
    },
    /// A user's aggregated presence changed.
    PresenceUpdate {
        /// The user.
        user_id: Id,
        /// The status others see (`invisible` is published as `offline`).
        status: PresenceStatus,
        /// Custom status text, if any (at most 128 characters).
        custom_status: Option<String>,
    },

    // ---- voice ----
    /// A user's voice state changed (join, leave, mute, deaf, video, screen share), in a
    /// server's voice channel or in a DM call (then `server_id` is `None`: the other
    /// recipients see it, which is how a DM call rings).
    VoiceStateUpdate {
        /// The server (`None` for a DM call).
        server_id: Option<Id>,
        /// The voice channel, `None` when the user left voice.
        channel_id: Option<Id>,
        /// The user.
        user_id: Id,
        /// The gateway session holding the voice connection.
        session_id: String,
        /// Muted by themselves.
        self_mute: bool,
        /// Deafened by themselves.
        self_deaf: bool,
        /// Camera on.
        self_video: bool,
        /// Sharing their screen.
        self_stream: bool,
    },
    /// An SDP offer/answer or ICE candidate relayed between a client session and the SFU.
    /// Published with audience [`Audience::Voice`] towards the SFU and
    /// [`Audience::Session`] towards the client.
    VoiceSignal {
        /// The voice channel.
        channel_id: Id,
        /// The client's user.
        user_id: Id,
        /// The client's gateway session.
        session_id: String,
        /// Offer, answer, ICE…
        kind: SignalKind,
        /// The SDP or candidate, opaque to the gateway (size-capped by the gateway).
        data: Value,
    },

    // ---- end-to-end encryption ----
    /// A to-device message (an Olm-encrypted key share, for example), queued by the api
    /// until the recipient device acknowledges it with `to_device_ack`.
    ToDevice {
        /// The recipient device.
        device_id: String,
        /// Position in that device's queue; acknowledgements are "up to" this number.
        id: i64,
        /// Sender user.
        sender_user_id: Id,
        /// Sender device.
        sender_device_id: String,
        /// The (encrypted) content, opaque to the server.
        message: Value,
    },
    /// A user's device list or device keys changed: re-query their keys.
    DeviceKeysChanged {
        /// The user whose devices changed.
        user_id: Id,
    },
}

impl Event {
    /// Whether the gateway consumes this event itself instead of dispatching it to clients.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Event::SessionRevoked { .. } | Event::ScopeChanged { .. }
        )
    }

    /// The event name (`t`), as written on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SessionRevoked { .. } => "session_revoked",
            Event::ScopeChanged { .. } => "scope_changed",
            Event::ServerCreate { .. } => "server_create",
            Event::ServerUpdate { .. } => "server_update",
            Event::ServerDelete { .. } => "server_delete",
            Event::ChannelCreate { .. } => "channel_create",
            Event::ChannelUpdate { .. } => "channel_update",
            Event::ChannelDelete { .. } => "channel_delete",
            Event::RoleCreate { .. } => "role_create",
            Event::RoleUpdate { .. } => "role_update",
            Event::RoleDelete { .. } => "role_delete",
            Event::MemberAdd { .. } => "member_add",
            Event::MemberUpdate { .. } => "member_update",
            Event::MemberRemove { .. } => "member_remove",
            Event::ModerationNotice { .. } => "moderation_notice",
            Event::RelationshipUpdate { .. } => "relationship_update",
            Event::MessageCreate { .. } => "message_create",
            Event::MessageUpdate { .. } => "message_update",
            Event::MessageDelete { .. } => "message_delete",
            Event::ReactionAdd { .. } => "reaction_add",
            Event::ReactionRemove { .. } => "reaction_remove",
            Event::ReadStateUpdate { .. } => "read_state_update",
            Event::WhiteboardStroke { .. } => "whiteboard_stroke",
            Event::WhiteboardClear { .. } => "whiteboard_clear",
            Event::TypingStart { .. } => "typing_start",
            Event::PresenceUpdate { .. } => "presence_update",
            Event::VoiceStateUpdate { .. } => "voice_state_update",
            Event::VoiceSignal { .. } => "voice_signal",
            Event::ToDevice { .. } => "to_device",
            Event::DeviceKeysChanged { .. } => "device_keys_changed",
        }
    }
}

/// An event with its audiences, as carried on the bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    /// Random id, used by gateway nodes to drop a copy received through a second topic.
    pub id: u64,
    /// Who may receive it (at least one).
    pub audience: Vec<Audience>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

impl BusEvent {
    /// An event for several audiences, with a fresh random id.
    pub fn new(audience: Vec<Audience>, event: Event) -> Self {
        Self {
            id: rand::random(),
            audience,
            event,
        }
    }

    /// An event for one audience, with a fresh random id.
    pub fn to(audience: Audience, event: Event) -> Self {
        Self::new(vec![audience], event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_roundtrip_with_t_and_d() {
        let ev = BusEvent::to(
            Audience::Channel {
                server_id: Some(Id(1)),
                channel_id: Id(2),
            },
            Event::MessageCreate {
                message: serde_json::json!({"id": "3", "content": "hi"}),
            },
        );
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["t"], "message_create");
        assert_eq!(v["d"]["message"]["content"], "hi");
        assert_eq!(v["audience"][0]["channel"]["channel_id"], "2");
        let back: BusEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
        assert_eq!(ev.event.name(), "message_create");
        let t = serde_json::to_value(&Event::ScopeChanged { user_id: Id(5) }).unwrap();
        assert_eq!(t["t"], Event::ScopeChanged { user_id: Id(5) }.name());
    }

    #[test]
    fn unknown_event_is_an_error_not_a_panic() {
        assert!(
            serde_json::from_str::<BusEvent>(r#"{"id":1,"audience":[],"t":"nope","d":{}}"#)
                .is_err()
        );
    }
}
