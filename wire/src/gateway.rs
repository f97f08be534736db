//! The gateway protocol: JSON text frames on the WebSocket at `/gateway`, tagged by `op`.
//!
//! Flow: server `hello` → client `identify` (or `resume`) → server `ready` (or replayed
//! `dispatch`es then `resumed`) → `dispatch {t, s, d}` with a per-session increasing `s`,
//! client `heartbeat` answered by `heartbeat_ack`. The full reference with limits is in
//! the signaling crate's README (docs/gateway.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Id;
use crate::events::{PresenceStatus, SignalKind};

/// Largest inbound (client → server) message, in bytes. Bigger ones are closed with 1009.
pub const MAX_INBOUND_FRAME: usize = 16 * 1024;

/// A frame sent by the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticate a new session with an access token (only ever here, never in the URL).
    Identify {
        /// The access token (JWT).
        token: String,
        /// This device's id, to receive its to-device messages.
        #[serde(default)]
        device_id: Option<String>,
    },
    /// Take over a session after a dropped connection and receive what was missed.
    Resume {
        /// A fresh access token of the same user.
        token: String,
        /// The `session_id` of `ready`.
        session_id: String,
        /// The last `s` the client received.
        seq: u64,
    },
    /// Keep the connection alive; `seq` is the last `s` received (0 if none).
    Heartbeat {
        /// The last `s` received.
        #[serde(default)]
        seq: u64,
    },
    /// Set this connection's presence.
    PresenceUpdate {
        /// The status (not `offline`).
        status: PresenceStatus,
        /// Custom status text (at most 128 characters), or none.
        #[serde(default)]
        custom_status: Option<String>,
    },
    /// Tell the channel's viewers that I am typing (shown for 10 s).
    TypingStart {
        /// The channel.
        channel_id: Id,
    },
    /// Receive member presence of a large server (only sent to subscribers).
    SubscribeMembers {
        /// The server.
        server_id: Id,
    },
    /// Join, move within, or leave (`channel_id: null`) voice, and set mute/deaf/video/stream.
    /// For a call in a DM or group DM, `server_id` is null and `channel_id` is the DM.
    VoiceStateUpdate {
        /// The server (null for a DM call).
        #[serde(default)]
        server_id: Option<Id>,
        /// The voice channel, or none to leave.
        channel_id: Option<Id>,
        /// Muted.
        #[serde(default)]
        self_mute: bool,
        /// Deafened.
        #[serde(default)]
        self_deaf: bool,
        /// Camera on.
        #[serde(default)]
        self_video: bool,
        /// Sharing the screen.
        #[serde(default)]
        self_stream: bool,
    },
    /// An SDP offer/answer or ICE candidate for the SFU serving a voice channel.
    VoiceSignal {
        /// The voice channel (the client must be in it).
        channel_id: Id,
        /// Offer, answer, ICE…
        kind: SignalKind,
        /// The SDP or candidate.
        data: Value,
    },
    /// Acknowledge to-device messages of this device up to and including `up_to`.
    ToDeviceAck {
        /// The highest to-device message id processed.
        up_to: i64,
    },
}

/// A frame sent by the server (`dispatch` is written directly by the gateway for speed,
/// with the same shape as [`ServerFrame::Dispatch`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Hello {
        /// Send a heartbeat at least this often (milliseconds).
        heartbeat_interval_ms: u64,
    },
    /// The session is established.
    Ready {
        /// The gateway session id, for `resume`.
        session_id: String,
        /// Me, my servers with channels, roles and read states, my DMs, my friends, presence…
        /// (the api's shape, plus `presences`).
        d: Value,
    },
    /// All missed events were replayed after `resume`.
    Resumed {
        /// The session id.
        session_id: String,
    },
    /// An event: `t` its name, `s` the session sequence number, `d` its data.
    Dispatch {
        /// Sequence number (1, 2, 3, … per session).
        s: u64,
        /// Event name.
        t: String,
        /// Event data.
        d: Value,
    },
    /// Answer to `heartbeat`.
    HeartbeatAck,
    /// The session cannot be resumed (`resumable: false`): identify again and refetch.
    InvalidSession {
        /// Whether retrying `resume` later may work.
        resumable: bool,
    },
    /// The server is going away: reconnect (and resume) elsewhere.
    Reconnect,
}

/// WebSocket close codes used by the gateway.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down (after `reconnect`).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame larger than [`super::MAX_INBOUND_FRAME`] bytes.
    pub const FRAME_TOO_BIG: u16 = 1009;
    /// Unknown op.
    pub const UNKNOWN_OP: u16 = 4001;
    /// A frame that is not valid JSON of a known op, or a binary frame.
    pub const DECODE_ERROR: u16 = 4002;
    /// An op other than identify/resume/heartbeat before identifying.
    pub const NOT_AUTHENTICATED: u16 = 4003;
    /// Bad, expired or revoked token (or resume with another user's token), or no identify in time.
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    /// Identify or resume sent twice.
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    /// Resume with a `seq` ahead of the session.
    pub const INVALID_SEQ: u16 = 4007;
    /// Too many ops: the per-connection rate limit was exceeded.
    pub const RATE_LIMITED: u16 = 4008;
    /// No heartbeat in time.
    pub const SESSION_TIMED_OUT: u16 = 4009;
    /// This user already has the maximum number of connections.
    pub const TOO_MANY_CONNECTIONS: u16 = 4010;
    /// The client did not read fast enough; resume to get what was missed.
    pub const SLOW_CONSUMER: u16 = 4011;
    /// The login session was revoked (logout, password change, refresh-token reuse).
    pub const SESSION_REVOKED: u16 = 4012;

    /// The server lost events of this session (router overload, directory outage): identify again.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether a client may `resume` after this close code (otherwise it must identify
    /// again, or stop for 4004 / 4012 until it has a new token). After an abrupt
    /// disconnection (no close frame) a client should always try `resume` first.
    pub fn is_resumable(code: u16) -> bool {
        matches!(
            code,
            GOING_AWAY | SESSION_TIMED_OUT | SLOW_CONSUMER | RATE_LIMITED
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_reject_garbage() {
        let f: ClientFrame = serde_json::from_str(r#"{"op":"identify","token":"abc"}"#).unwrap();
        assert_eq!(
            f,
            ClientFrame::Identify {
                token: "abc".into(),
                device_id: None
            }
        );
        let f: ClientFrame =
            serde_json::from_str(r#"{"op":"typing_start","channel_id":"12"}"#).unwrap();
        assert_eq!(f, ClientFrame::TypingStart { channel_id: Id(12) });
        assert!(serde_json::from_str::<ClientFrame>(r#"{"op":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"op":"heartbeat","seq":-1}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>("[]").is_err());
    }

    #[test]
    fn server_frames_serialize_flat() {
        let s = serde_json::to_string(&ServerFrame::Hello {
            heartbeat_interval_ms: 30000,
        })
        .unwrap();
        assert_eq!(s, r#"{"op":"hello","heartbeat_interval_ms":30000}"#);
        let s = serde_json::to_string(&ServerFrame::HeartbeatAck).unwrap();
        assert_eq!(s, r#"{"op":"heartbeat_ack"}"#);
        let s = serde_json::to_string(&ServerFrame::InvalidSession { resumable: false }).unwrap();
        assert_eq!(s, r#"{"op":"invalid_session","resumable":false}"#);
        assert!(close::is_resumable(close::SLOW_CONSUMER));
        assert!(!close::is_resumable(close::SESSION_REVOKED));
    }
}
