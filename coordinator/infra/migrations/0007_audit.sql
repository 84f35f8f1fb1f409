-- The audit trail: every call of a mutating route (halt, resume, blacklist, refresh,
-- drills, order resolution), refusals included, with who sent it and what it answered.
-- The token is never stored: only a fingerprint of the one presented (the first 12 hex
-- digits of its SHA-256), enough to tell two tokens apart and nothing to send.
CREATE TABLE coordinator_audit (
    id                bigserial    PRIMARY KEY,
    at                timestamptz  NOT NULL,
    client            text,
    token_fingerprint text,
    method            text         NOT NULL,
    path              text         NOT NULL,
    -- the body as JSON when it was JSON and small enough, else body_text: the text,
    -- cut at the size limit
    body              jsonb,
    body_text         text,
    status            integer      NOT NULL,
    result            jsonb,
    -- whether the coordinator that answered traded on paper (as coordinator_orders.paper)
    paper             boolean
        DEFAULT coalesce(nullif(current_setting('coordinator.paper', true), '')::boolean, false)
);
CREATE INDEX coordinator_audit_at ON coordinator_audit (at DESC, id DESC);
