-- Server-side voice mute (MUTE_MEMBERS): a muted member's audio is dropped by the SFU.
ALTER TABLE members ADD COLUMN voice_muted BOOLEAN NOT NULL DEFAULT FALSE;
