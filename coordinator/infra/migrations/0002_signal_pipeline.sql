-- The signal pipeline: every signal received, one decision per signal with the result
-- of every check, one order intent per accepted signal.

CREATE TABLE coordinator_signals (
    signal_id   text             PRIMARY KEY,
    source      text             NOT NULL,
    received_at timestamptz      NOT NULL,
    valid       boolean          NOT NULL,
    symbol      text,
    side        text,
    price       double precision,
    signal_at   timestamptz,
    strategy    text,
    db_id       text,
    stream_id   text,
    payload     text             NOT NULL
);
CREATE INDEX coordinator_signals_received ON coordinator_signals (received_at DESC);

CREATE TABLE coordinator_decisions (
    signal_id             text             PRIMARY KEY,
    symbol                text,
    side                  text,
    outcome               text             NOT NULL
        CHECK (outcome IN ('accepted', 'rejected', 'shadow', 'unknown')),
    reason                text,
    detail                text             NOT NULL DEFAULT '',
    checks                jsonb            NOT NULL,
    quantity              double precision,
    decided_at            timestamptz      NOT NULL,
    decided_by            text             NOT NULL,
    intake_to_decision_ms double precision,
    intake_to_order_ms    double precision
);
CREATE INDEX coordinator_decisions_time ON coordinator_decisions (decided_at DESC);
CREATE INDEX coordinator_decisions_symbol ON coordinator_decisions (symbol, decided_at DESC);
CREATE INDEX coordinator_decisions_outcome ON coordinator_decisions (outcome, decided_at DESC);

CREATE TABLE coordinator_orders (
    client_order_id text             PRIMARY KEY,
    signal_id       text             NOT NULL UNIQUE,
    symbol          text             NOT NULL,
    side            text             NOT NULL,
    quantity        double precision NOT NULL,
    reference_price double precision,
    state           text             NOT NULL
        CHECK (state IN ('pending', 'sent', 'accepted', 'rejected', 'unknown')),
    trader_order_id text,
    error           text,
    created_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL
);
CREATE INDEX coordinator_orders_open ON coordinator_orders (state)
    WHERE state IN ('pending', 'sent', 'unknown');
