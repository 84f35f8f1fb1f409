-- How each instance runs (COORDINATOR_INSTANCES): 'single' leads alone without a lease,
-- so no other instance may be live beside it; 'cluster' shares leader-only work through
-- the leader lease. Rows written before it are NULL: single, the only mode there was for
-- a coordinator that did not know of the others.
ALTER TABLE coordinator_instances ADD COLUMN mode text
    CHECK (mode IS NULL OR mode IN ('single', 'cluster'));
