-- The members of each cluster that share the symbol partitions: an instance beats its
-- row while its PartitionKeeper runs and removes it at a clean stop. A cluster is named
-- by its partition streams' prefix (SIGNALS_PARTITION_STREAM): instances reading other
-- streams on the same database do not share partitions with it.
CREATE TABLE coordinator_partition_members (
    cluster      text         NOT NULL,
    instance     text         NOT NULL,
    holder       text         NOT NULL,
    heartbeat_at timestamptz  NOT NULL,
    PRIMARY KEY (cluster, instance)
);
