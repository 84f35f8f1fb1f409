-- Trailing stops: one row per position ever watched, keyed by its cycle id or by
-- symbol + entry time + entry price. Peak and stop only ever go up; the row of a closed
-- position is kept (closed_at set), so a position seen again is not started afresh.

CREATE TABLE coordinator_stops (
    position_key text             PRIMARY KEY,
    symbol       text             NOT NULL,
    cycle_id     text,
    entry_price  double precision NOT NULL,
    entry_time   timestamptz,
    quantity     double precision NOT NULL,
    rules        text             NOT NULL,
    peak         double precision NOT NULL,
    stop         double precision NOT NULL,
    stop_rule    text             NOT NULL,
    state        text             NOT NULL,
    attempt      integer          NOT NULL DEFAULT 0,
    failures     integer          NOT NULL DEFAULT 0,
    detail       text             NOT NULL DEFAULT '',
    watched_at   timestamptz      NOT NULL,
    updated_at   timestamptz      NOT NULL,
    closed_at    timestamptz
);
CREATE INDEX coordinator_stops_open ON coordinator_stops (symbol) WHERE closed_at IS NULL;
