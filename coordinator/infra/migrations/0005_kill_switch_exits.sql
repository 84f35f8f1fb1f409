-- A manual halt says whether exits (SELL signals and stop exits) still go: a held
-- symbol stays sellable unless an operator blocks exits. Rows written before this
-- column existed read as 'allow', the default of a halt from now on.
ALTER TABLE coordinator_kill_switch_events
    ADD COLUMN exits text NOT NULL DEFAULT 'allow' CHECK (exits IN ('allow', 'block'));
