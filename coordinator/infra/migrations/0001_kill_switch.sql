-- The kill switch: every halt and resume, the latest row is the current position.
-- Kept in the database so that a halt survives a restart of the process.
CREATE TABLE coordinator_kill_switch_events (
    id           bigserial   PRIMARY KEY,
    halted       boolean     NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    requested_by text        NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT now()
);
