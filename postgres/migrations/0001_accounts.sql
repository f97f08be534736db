-- Accounts, sessions (refresh-token families), password resets and the instance access policy.
-- Ids are 64-bit time-sortable snowflakes made by the application.

CREATE TABLE users (
    id               BIGINT PRIMARY KEY,
    username         TEXT NOT NULL CHECK (char_length(username) BETWEEN 2 AND 32),
    email            TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    display_name     TEXT CHECK (display_name IS NULL OR char_length(display_name) <= 64),
    bio              TEXT CHECK (bio IS NULL OR char_length(bio) <= 512),
    password_hash    TEXT NOT NULL,
    is_admin         BOOLEAN NOT NULL DEFAULT FALSE,
    suspended_at     TIMESTAMPTZ,
    suspended_reason TEXT,
    password_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

-- A session is one login on one client: a family of refresh tokens, rotated on every use.
CREATE TABLE sessions (
    id             BIGINT PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT,
    user_agent     TEXT,
    ip             TEXT
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Only SHA-256 hashes of refresh tokens are stored. A token whose rotated_at is set
-- has been exchanged once; presenting it again revokes the whole session.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id  BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    rotated_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE password_resets (
    token_hash  BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX password_resets_user ON password_resets (user_id);

-- The instance access policy (seed 004): one row.
CREATE TABLE instance_settings (
    singleton         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    registration_mode TEXT NOT NULL DEFAULT 'open'
                      CHECK (registration_mode IN ('open', 'invite_only', 'closed')),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO instance_settings (singleton) VALUES (TRUE);

CREATE TABLE email_domain_rules (
    domain      TEXT PRIMARY KEY CHECK (domain = lower(domain) AND char_length(domain) BETWEEN 1 AND 253),
    rule        TEXT NOT NULL CHECK (rule IN ('allow', 'deny')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ip_rules (
    id          BIGINT PRIMARY KEY,
    cidr        CIDR NOT NULL UNIQUE,
    reason      TEXT CHECK (reason IS NULL OR char_length(reason) <= 512),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Codes an admin hands out when registration is invite-only.
CREATE TABLE registration_invites (
    code        TEXT PRIMARY KEY,
    created_by  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    max_uses    INTEGER CHECK (max_uses IS NULL OR max_uses > 0),
    uses        INTEGER NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
