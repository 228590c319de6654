-- Per-project quota usage (ingest/quotas.py): each collector process's running counts per period, as it
-- published them to the events.quota topic; the processor copies them here (processors/quota_usage.py).
-- The latest record of each (project, period, replica) wins; sum over replicas for a project's usage:
--   SELECT project, period, max(quota), sum(accepted), sum(dropped), sum(refused)
--   FROM quota_usage FINAL GROUP BY project, period
CREATE TABLE IF NOT EXISTS quota_usage
(
    project         LowCardinality(String),
    period          DateTime('UTC'),
    period_seconds  UInt32,
    quota           UInt64,
    replica         String,
    accepted        UInt64,
    dropped         UInt64,   -- over quota, answered 200, not stored
    refused         UInt64,   -- over quota, answered 429
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(period)
ORDER BY (project, period, replica);
