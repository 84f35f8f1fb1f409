-- Instance identity: one row per coordinator identity (COORDINATOR_INSTANCE) sharing this
-- database. A process claims its row at start, refused while another process of that
-- identity is live (its heartbeat young and not stopped), and beats it while it runs;
-- incarnation tells this process from an earlier or later one under the same identity.
-- Times are the database's (clock_timestamp()), so that hosts with skewed clocks compare
-- heartbeats on one clock.
CREATE TABLE coordinator_instances (
    instance     text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    data_dir     text        NOT NULL,
    incarnation  uuid        NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    -- set by a clean stop: the identity is free at once
    stopped_at   timestamptz
);

-- The instance that stored each decision and order. A coordinator says which it is on
-- each of its connections (the session setting coordinator.instance), as it says paper
-- (0006): every path that writes them records it. Added without a default first so that
-- the rows written before stay NULL: not recorded.
ALTER TABLE coordinator_decisions ADD COLUMN instance text;
ALTER TABLE coordinator_decisions ALTER COLUMN instance
    SET DEFAULT nullif(current_setting('coordinator.instance', true), '');
ALTER TABLE coordinator_orders ADD COLUMN instance text;
ALTER TABLE coordinator_orders ALTER COLUMN instance
    SET DEFAULT nullif(current_setting('coordinator.instance', true), '');
