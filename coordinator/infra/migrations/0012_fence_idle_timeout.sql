-- A fenced transaction holds its lease's row FOR SHARE until it ends, so that a takeover
-- waits for it. A holder frozen between two of its statements (SIGSTOP, a VM paused)
-- would hold the row, and keep every other instance from taking the lease, for as long
-- as it stays frozen. The fence now limits how long its transaction may sit idle: past
-- 1 s (under the 1.5 s a lease lasts) PostgreSQL ends the session, its lock goes, the
-- takeover proceeds when the lease has lapsed, and the frozen
-- holder finds its connection gone when it resumes (nothing of that transaction is
-- written). A running holder's transactions are a few statements long, never idle for
-- anything like that.
CREATE OR REPLACE FUNCTION coordinator_assert_lease(lease_name text, lease_holder text, lease_generation bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    current_holder     text;
    current_generation bigint;
BEGIN
    PERFORM set_config('idle_in_transaction_session_timeout', '1s', true);
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
