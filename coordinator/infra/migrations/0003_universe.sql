-- The trading universe: every rotation with its scores and verdicts, and the blacklist.

CREATE TABLE coordinator_universe_snapshots (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    reason      text        NOT NULL,
    selected    jsonb       NOT NULL,
    added       jsonb       NOT NULL,
    removed     jsonb       NOT NULL,
    draining    jsonb       NOT NULL,
    scores      jsonb       NOT NULL,
    verdicts    jsonb       NOT NULL,
    state       jsonb       NOT NULL,
    performance jsonb       NOT NULL
);
CREATE INDEX coordinator_universe_snapshots_at ON coordinator_universe_snapshots (at DESC);

CREATE TABLE coordinator_universe_blacklist (
    symbol     text        PRIMARY KEY,
    reason     text        NOT NULL,
    source     text        NOT NULL,
    added_at   timestamptz NOT NULL,
    expires_at timestamptz
);
