-- Communities: servers, members, roles, channels with permission overwrites, invites, bans,
-- relationships (friends and blocks) and the moderation audit log.
-- The permission bitfield and its resolution order are documented in docs/permissions.md.

CREATE TABLE servers (
    id           BIGINT PRIMARY KEY,
    -- Deleting the owner's account deletes the server (transfer ownership first to keep it).
    owner_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description  TEXT CHECK (description IS NULL OR char_length(description) <= 1024),
    icon         TEXT CHECK (icon IS NULL OR char_length(icon) <= 512),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX servers_owner ON servers (owner_id);

CREATE TABLE members (
    server_id     BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    nickname      TEXT CHECK (nickname IS NULL OR char_length(nickname) BETWEEN 1 AND 32),
    joined_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- While in the future the member may only view channels and read history.
    timeout_until TIMESTAMPTZ,
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

-- The @everyone role of a server has the server's id and position 0; other roles have
-- positions >= 1, higher positions rank higher.
CREATE TABLE roles (
    id           BIGINT PRIMARY KEY,
    server_id    BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    color        INTEGER NOT NULL DEFAULT 0 CHECK (color BETWEEN 0 AND 16777215),
    position     INTEGER NOT NULL CHECK (position >= 0),
    permissions  BIGINT NOT NULL DEFAULT 0 CHECK (permissions >= 0),
    hoist        BOOLEAN NOT NULL DEFAULT FALSE,
    mentionable  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((id = server_id) = (position = 0))
);
CREATE INDEX roles_server ON roles (server_id, position);

CREATE TABLE member_roles (
    server_id  BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    role_id    BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (server_id, user_id, role_id),
    FOREIGN KEY (server_id, user_id) REFERENCES members (server_id, user_id) ON DELETE CASCADE
);
CREATE INDEX member_roles_role ON member_roles (role_id);

CREATE TABLE channels (
    id             BIGINT PRIMARY KEY,
    server_id      BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('text', 'voice', 'category')),
    name           TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    parent_id      BIGINT REFERENCES channels (id) ON DELETE SET NULL,
    position       INTEGER NOT NULL DEFAULT 0 CHECK (position BETWEEN 0 AND 10000),
    topic          TEXT CHECK (topic IS NULL OR char_length(topic) <= 1024),
    -- Seconds a member must wait between two messages (0: off); at most 6 hours.
    slowmode_secs  INTEGER NOT NULL DEFAULT 0 CHECK (slowmode_secs BETWEEN 0 AND 21600),
    -- Chosen at creation; once true it can never become false (see the trigger below).
    encrypted      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX channels_server ON channels (server_id, position);

CREATE FUNCTION channels_encrypted_is_final() RETURNS trigger AS $$
BEGIN
    IF OLD.encrypted AND NOT NEW.encrypted THEN
        RAISE EXCEPTION 'an encrypted channel cannot be made unencrypted'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'channels_encrypted_final';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER channels_encrypted_final BEFORE UPDATE OF encrypted ON channels
    FOR EACH ROW EXECUTE FUNCTION channels_encrypted_is_final();

-- Per-channel allow/deny for a role (target_id = role id; the @everyone role for everyone)
-- or a member (target_id = user id).
CREATE TABLE overwrites (
    channel_id   BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    target_id    BIGINT NOT NULL,
    target_kind  TEXT NOT NULL CHECK (target_kind IN ('role', 'member')),
    allow        BIGINT NOT NULL DEFAULT 0 CHECK (allow >= 0),
    deny         BIGINT NOT NULL DEFAULT 0 CHECK (deny >= 0),
    PRIMARY KEY (channel_id, target_id)
);
CREATE INDEX overwrites_target ON overwrites (target_id);

CREATE TABLE invites (
    code        TEXT PRIMARY KEY CHECK (char_length(code) BETWEEN 6 AND 32),
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    inviter_id  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    uses        INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    max_uses    INTEGER CHECK (max_uses IS NULL OR max_uses > 0),
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (max_uses IS NULL OR uses <= max_uses)
);
CREATE INDEX invites_server ON invites (server_id);

CREATE TABLE bans (
    server_id     BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    moderator_id  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    reason        TEXT CHECK (reason IS NULL OR char_length(reason) <= 512),
    -- The window of the banned user's messages to delete (applied by the messaging module).
    delete_message_secs INTEGER NOT NULL DEFAULT 0 CHECK (delete_message_secs BETWEEN 0 AND 604800),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, user_id)
);

-- One row per direction: (user, other, kind) is how `user` sees `other`.
-- friend: both rows; a request: outgoing on the sender, incoming on the recipient;
-- blocked: only on the blocker (the other side's row is removed unless they block back).
CREATE TABLE relationships (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    other_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('friend', 'outgoing', 'incoming', 'blocked')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, other_id),
    CHECK (user_id <> other_id)
);
CREATE INDEX relationships_other ON relationships (other_id);

CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    actor_id    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    action      TEXT NOT NULL CHECK (char_length(action) <= 64),
    target_id   BIGINT,
    changes     JSONB NOT NULL DEFAULT '{}'::jsonb,
    reason      TEXT CHECK (reason IS NULL OR char_length(reason) <= 512),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_server ON audit_log (server_id, id DESC);
