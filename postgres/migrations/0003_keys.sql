-- End-to-end encryption keys (issue 6): devices and their identity keys, signed one-time and
-- fallback keys (the prekey bundle), the key-change log, the to-device queue and key backup.
-- The server stores public keys and ciphertext only; see docs/e2ee.md.

-- A device is chosen by the client: `device_id` is 1-64 characters of [A-Za-z0-9_-], unique per
-- user (it is bound into every signature the device makes, so it cannot be a server id made
-- after the keys are signed). Its identity keys never change: a new key pair needs a new id.
CREATE TABLE devices (
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id      TEXT NOT NULL CHECK (device_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    display_name   TEXT CHECK (display_name IS NULL OR char_length(display_name) <= 64),
    curve25519     TEXT NOT NULL CHECK (char_length(curve25519) <= 64),
    ed25519        TEXT NOT NULL CHECK (char_length(ed25519) <= 64),
    signature      TEXT NOT NULL CHECK (char_length(signature) <= 128),
    -- Next position of this device's to-device queue (taken under the row lock, so positions
    -- become visible in order and an acknowledgement never skips an uncommitted message).
    to_device_seq  BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);

-- Each one-time key is handed out once: claiming deletes the row.
CREATE TABLE one_time_keys (
    user_id     BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    key_id      TEXT NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 16),
    key         TEXT NOT NULL CHECK (char_length(key) <= 64),
    signature   TEXT NOT NULL CHECK (char_length(signature) <= 128),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- One current fallback key per device, handed out (and marked used) when no one-time key is left.
CREATE TABLE fallback_keys (
    user_id     BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    key_id      TEXT NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 16),
    key         TEXT NOT NULL CHECK (char_length(key) <= 64),
    signature   TEXT NOT NULL CHECK (char_length(signature) <= 128),
    used        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Device added / removed / updated, for `GET /keys/changes?since=`. Writers take a transaction
-- advisory lock before inserting, so positions commit in increasing order.
CREATE TABLE device_key_changes (
    position    BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id   TEXT NOT NULL,
    change      TEXT NOT NULL CHECK (change IN ('added', 'removed', 'updated')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX device_key_changes_user ON device_key_changes (user_id, position);

-- The to-device queue: one row per recipient device, deleted when acknowledged.
CREATE TABLE to_device_messages (
    recipient_user_id    BIGINT NOT NULL,
    recipient_device_id  TEXT NOT NULL,
    seq                  BIGINT NOT NULL,
    sender_user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sender_device_id     TEXT NOT NULL,
    msg_type             TEXT NOT NULL CHECK (char_length(msg_type) BETWEEN 1 AND 64),
    -- The JSON content as sent (serialized by the api), opaque to the server.
    content              TEXT NOT NULL CHECK (octet_length(content) <= 65536),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (recipient_user_id, recipient_device_id, seq),
    FOREIGN KEY (recipient_user_id, recipient_device_id)
        REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Idempotency of `PUT /to-device/{txn_id}` per sending device; kept after the messages are
-- acknowledged (pruned after a day).
CREATE TABLE to_device_txns (
    sender_user_id    BIGINT NOT NULL,
    sender_device_id  TEXT NOT NULL,
    txn_id            TEXT NOT NULL CHECK (char_length(txn_id) BETWEEN 1 AND 64),
    queued            INTEGER NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sender_user_id, sender_device_id, txn_id),
    FOREIGN KEY (sender_user_id, sender_device_id)
        REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX to_device_txns_created ON to_device_txns (created_at);

-- Key backup: one current version per user; `auth_data` is opaque client data (for example
-- a public check value of the recovery key). Creating a new version deletes the old sessions.
CREATE TABLE key_backups (
    user_id     BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    auth_data   TEXT NOT NULL CHECK (char_length(auth_data) <= 4096),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Encrypted session keys, one blob per (channel, Megolm session); opaque to the server.
CREATE TABLE key_backup_sessions (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES key_backups (user_id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    channel_id  TEXT NOT NULL CHECK (char_length(channel_id) BETWEEN 1 AND 128),
    session_id  TEXT NOT NULL CHECK (char_length(session_id) BETWEEN 1 AND 128),
    data        TEXT NOT NULL CHECK (char_length(data) <= 16384),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, channel_id, session_id)
);
