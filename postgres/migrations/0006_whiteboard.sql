-- Whiteboards (issue 8, seed 000): one board per place (server text channel, thread, DM or
-- group DM), made of strokes in the order the server accepted them. See docs/messaging.md.
--
-- Like `messages`, a board's `channel_id` names a polymorphic place, so there is no foreign
-- key to it; triggers below delete a place's board when the place is deleted. The bounds the
-- api enforces (points per stroke, strokes per board, sizes) are stricter than the CHECKs
-- here, so a later release may raise them without a migration.

-- One row per board that was ever drawn on. The row is locked (upsert) by every stroke insert
-- and by a clear until commit: stroke ids of a board become visible in increasing order (the
-- new id is max(generated id, last id + 1)), the stroke count stays exact, and a clear
-- removes exactly the strokes up to `last_stroke_id`.
CREATE TABLE whiteboards (
    channel_id      BIGINT PRIMARY KEY,
    stroke_count    INTEGER NOT NULL DEFAULT 0 CHECK (stroke_count >= 0),
    last_stroke_id  BIGINT NOT NULL DEFAULT 0,
    cleared_at      TIMESTAMPTZ,
    cleared_by      BIGINT REFERENCES users (id) ON DELETE SET NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE whiteboard_strokes (
    id                BIGINT PRIMARY KEY,
    channel_id        BIGINT NOT NULL REFERENCES whiteboards (channel_id) ON DELETE CASCADE,
    -- NULL once the author's account is deleted (the stroke stays).
    author_id         BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- Plaintext places only: the stroke itself.
    tool              TEXT CHECK (tool IS NULL OR tool IN ('pen', 'eraser')),
    color             TEXT CHECK (color IS NULL OR color ~ '^#[0-9a-f]{6}$'),
    size              SMALLINT CHECK (size IS NULL OR size BETWEEN 1 AND 1000),
    -- Flat [x0, y0, x1, y1, ...] in board units.
    points            INTEGER[] CHECK (points IS NULL OR cardinality(points) BETWEEN 2 AND 100000),
    -- Encrypted places only: the opaque envelope, stored as sent (ciphertext in base64).
    enc_algorithm     TEXT CHECK (enc_algorithm IS NULL OR char_length(enc_algorithm) <= 64),
    enc_sender_device TEXT CHECK (enc_sender_device IS NULL OR char_length(enc_sender_device) <= 128),
    enc_session_id    TEXT CHECK (enc_session_id IS NULL OR char_length(enc_session_id) <= 256),
    enc_ciphertext    TEXT CHECK (enc_ciphertext IS NULL OR char_length(enc_ciphertext) <= 87384),
    -- Client nonce: a retry with the same (author, nonce) on this board names the same stroke.
    nonce             TEXT CHECK (nonce IS NULL OR char_length(nonce) BETWEEN 1 AND 64),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Exactly one of: a plaintext stroke, an envelope.
    CHECK ((points IS NULL) = (tool IS NULL AND color IS NULL AND size IS NULL)),
    CHECK ((points IS NULL) <> (enc_ciphertext IS NULL)),
    CHECK ((enc_ciphertext IS NULL) = (enc_algorithm IS NULL))
);
CREATE INDEX whiteboard_strokes_channel ON whiteboard_strokes (channel_id, id);
CREATE UNIQUE INDEX whiteboard_strokes_nonce ON whiteboard_strokes (channel_id, author_id, nonce)
    WHERE nonce IS NOT NULL;

-- Deleting a place deletes its board (the strokes cascade).
CREATE FUNCTION whiteboard_place_deleted() RETURNS trigger AS $$
BEGIN
    DELETE FROM whiteboards WHERE channel_id = OLD.id;
    RETURN OLD;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER whiteboard_channel_deleted AFTER DELETE ON channels
    FOR EACH ROW EXECUTE FUNCTION whiteboard_place_deleted();
CREATE TRIGGER whiteboard_thread_deleted AFTER DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION whiteboard_place_deleted();
CREATE TRIGGER whiteboard_dm_deleted AFTER DELETE ON dm_channels
    FOR EACH ROW EXECUTE FUNCTION whiteboard_place_deleted();
