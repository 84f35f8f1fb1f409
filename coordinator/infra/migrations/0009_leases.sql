-- Leases: one row per lease (the leader lease of the coordinators sharing this
-- database). Times are the holders' own wall clocks, passed in, never now(): see
-- coordinator/infra/lease_store.py. What keeps a stale leader from acting is the
-- generation, raised by one on every take, and coordinator_assert_lease below.
CREATE TABLE coordinator_leases (
    name        text         PRIMARY KEY,
    holder      text         NOT NULL,
    generation  bigint       NOT NULL CHECK (generation > 0),
    -- '-infinity' once released: anyone may take it at once
    expires_at  timestamptz  NOT NULL,
    acquired_at timestamptz  NOT NULL,
    renewed_at  timestamptz  NOT NULL
);

-- The fence: a leader-only transaction calls this first. It holds the lease's row FOR
-- SHARE until the transaction ends, so a takeover (an UPDATE of the row) waits for it,
-- and every fenced transaction that starts after the takeover finds the new holder or
-- generation and fails with SQLSTATE LEASE, writing nothing.
CREATE FUNCTION coordinator_assert_lease(lease_name text, lease_holder text, lease_generation bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    current_holder     text;
    current_generation bigint;
BEGIN
    SELECT holder, generation INTO current_holder, current_generation
      FROM coordinator_leases WHERE name = lease_name FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'LEASE',
            MESSAGE = format('lease %s is held by nobody, not by %s at generation %s',
                             lease_name, lease_holder, lease_generation);
    END IF;
    IF current_holder <> lease_holder OR current_generation <> lease_generation THEN
        RAISE EXCEPTION USING
            ERRCODE = 'LEASE',
            MESSAGE = format('lease %s is held by %s at generation %s, not by %s at generation %s',
                             lease_name, current_holder, current_generation,
                             lease_holder, lease_generation);
    END IF;
END
$$;
