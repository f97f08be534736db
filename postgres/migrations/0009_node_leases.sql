-- Node ids (the 10 node bits of every snowflake id) leased by running copains processes
-- (issue 14 item 5): each process holds one row while it runs and renews it; a row whose
-- expires_at has passed is free for another process to take over. See api/src/node_lease.rs.
CREATE TABLE node_leases (
    id         SMALLINT PRIMARY KEY CHECK (id BETWEEN 0 AND 1023),
    holder     UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
