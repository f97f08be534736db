-- Who may open a DM with a user (issue 19): `server_members` (the default, as Discord: anyone
-- who shares a server with them, and friends), `friends` (friends only) or `nobody`. Checked
-- by the API when a 1:1 DM or a group DM is created and when someone is added to a group DM;
-- a block always wins. DMs that already exist stay open. See docs/messaging.md.
ALTER TABLE users
    ADD COLUMN dm_policy TEXT NOT NULL DEFAULT 'server_members'
        CHECK (dm_policy IN ('server_members', 'friends', 'nobody'));
