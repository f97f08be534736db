-- Messaging (issue 4): DM and group DM channels, threads, messages (plaintext or an opaque
-- end-to-end encrypted envelope), client nonces, reactions, read states, attachments.
-- See docs/messaging.md.
--
-- A message's `channel_id` names a "place": a server text channel (`channels`), a thread
-- (`threads`) or a DM / group DM (`dm_channels`). All ids come from the same snowflake
-- generator, so they never collide. Because the reference is polymorphic there is no foreign
-- key on `channel_id`; triggers below delete a place's messages when the place is deleted.

-- DMs and group DMs (never in a server; always end-to-end encrypted).
CREATE TABLE dm_channels (
    id          BIGINT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('dm', 'group_dm')),
    -- Group DMs: the member who adds and removes others (NULL for 1:1 DMs).
    owner_id    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    name        TEXT CHECK (name IS NULL OR char_length(name) BETWEEN 1 AND 100),
    -- 1:1 DMs: the two users, smaller id first; the unique pair makes get-or-create race-free.
    user_low    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    user_high   BIGINT REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'dm') = (user_low IS NOT NULL AND user_high IS NOT NULL)),
    CHECK (user_low IS NULL OR user_low < user_high),
    UNIQUE (user_low, user_high)
);

CREATE TABLE dm_recipients (
    channel_id  BIGINT NOT NULL REFERENCES dm_channels (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX dm_recipients_user ON dm_recipients (user_id);

-- Threads: a child place of a server text channel, started from one of its messages.
-- Permissions are the parent channel's. A thread is archived when `archived` is set or when
-- `last_activity_at` is older than `auto_archive_secs` (a query-time rule: no job runs).
CREATE TABLE threads (
    id                 BIGINT PRIMARY KEY,
    parent_id          BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    server_id          BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    starter_message_id BIGINT NOT NULL UNIQUE,
    owner_id           BIGINT REFERENCES users (id) ON DELETE SET NULL,
    name               TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    auto_archive_secs  INTEGER NOT NULL DEFAULT 86400
                       CHECK (auto_archive_secs IN (3600, 86400, 259200, 604800)),
    archived           BOOLEAN NOT NULL DEFAULT FALSE,
    last_activity_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX threads_parent ON threads (parent_id, last_activity_at DESC);

-- The newest message id of each place. The row is locked (upsert) by every message insert
-- until commit, and the new id is max(generated id, last id + 1): ids of a place become
-- visible in increasing order, so `after` pagination never skips a late commit.
CREATE TABLE channel_heads (
    channel_id       BIGINT PRIMARY KEY,
    last_message_id  BIGINT NOT NULL
);

CREATE TABLE messages (
    id                BIGINT PRIMARY KEY,
    channel_id        BIGINT NOT NULL,
    -- NULL in DMs.
    server_id         BIGINT REFERENCES servers (id) ON DELETE CASCADE,
    -- NULL once the author's account is deleted (the message stays).
    author_id         BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- Plaintext places only.
    content           TEXT CHECK (content IS NULL OR char_length(content) BETWEEN 1 AND 4000),
    -- Encrypted places only: the opaque envelope, stored as sent (ciphertext in base64).
    enc_algorithm     TEXT CHECK (enc_algorithm IS NULL OR char_length(enc_algorithm) <= 64),
    enc_sender_device TEXT CHECK (enc_sender_device IS NULL OR char_length(enc_sender_device) <= 128),
    enc_session_id    TEXT CHECK (enc_session_id IS NULL OR char_length(enc_session_id) <= 256),
    enc_ciphertext    TEXT CHECK (enc_ciphertext IS NULL OR char_length(enc_ciphertext) <= 87384),
    nonce             TEXT CHECK (nonce IS NULL OR char_length(nonce) <= 64),
    reply_to          BIGINT,
    mention_everyone  BOOLEAN NOT NULL DEFAULT FALSE,
    mention_users     BIGINT[] NOT NULL DEFAULT '{}',
    mention_roles     BIGINT[] NOT NULL DEFAULT '{}',
    pinned_at         TIMESTAMPTZ,
    edited_at         TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Full-text search over plaintext only ('simple': no language-specific stemming, since a
    -- community may write in any language).
    search            tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(content, ''))) STORED,
    CHECK (content IS NULL OR enc_ciphertext IS NULL),
    CHECK ((enc_ciphertext IS NULL) = (enc_algorithm IS NULL))
);
CREATE INDEX messages_channel ON messages (channel_id, id);
CREATE INDEX messages_channel_author ON messages (channel_id, author_id, id);
CREATE INDEX messages_pinned ON messages (channel_id, pinned_at) WHERE pinned_at IS NOT NULL;
CREATE INDEX messages_search ON messages USING GIN (search);

-- Client nonces: the same (author, nonce) within 10 minutes names the same message.
-- A row older than the window is taken over by the next message with that nonce.
CREATE TABLE message_nonces (
    author_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    nonce       TEXT NOT NULL CHECK (char_length(nonce) BETWEEN 1 AND 64),
    message_id  BIGINT NOT NULL,
    channel_id  BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (author_id, nonce)
);

CREATE TABLE reactions (
    message_id  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji       TEXT NOT NULL CHECK (char_length(emoji) BETWEEN 1 AND 64),
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Uploaded files. Bytes live in the storage backend (local disk by default) under the
-- attachment id; `message_id` is set when a message of the same place by the uploader claims
-- it. In encrypted places the client uploads an encrypted blob (the key travels inside the
-- message envelope).
CREATE TABLE attachments (
    id            BIGINT PRIMARY KEY,
    channel_id    BIGINT NOT NULL,
    uploader_id   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    message_id    BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    filename      TEXT NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 255),
    content_type  TEXT NOT NULL CHECK (char_length(content_type) BETWEEN 1 AND 255),
    size          BIGINT NOT NULL CHECK (size >= 0),
    encrypted     BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX attachments_message ON attachments (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX attachments_channel ON attachments (channel_id);

-- The last message a user has read in a place.
CREATE TABLE read_states (
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id    BIGINT NOT NULL,
    last_read_id  BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);

-- Deleting a place deletes its messages (reactions cascade), head and read states.
CREATE FUNCTION messaging_place_deleted() RETURNS trigger AS $$
BEGIN
    DELETE FROM messages WHERE channel_id = OLD.id;
    DELETE FROM channel_heads WHERE channel_id = OLD.id;
    DELETE FROM read_states WHERE channel_id = OLD.id;
    DELETE FROM attachments WHERE channel_id = OLD.id;
    RETURN OLD;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER messaging_channel_deleted AFTER DELETE ON channels
    FOR EACH ROW EXECUTE FUNCTION messaging_place_deleted();
CREATE TRIGGER messaging_thread_deleted AFTER DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION messaging_place_deleted();
CREATE TRIGGER messaging_dm_deleted AFTER DELETE ON dm_channels
    FOR EACH ROW EXECUTE FUNCTION messaging_place_deleted();
