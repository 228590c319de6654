-- The processor's batch ledger: before it inserts the rows of Kafka offsets
-- [first_offset, last_offset] of a partition, it records that range here. A
-- processor taking over a partition replays the ranges at or after its start
-- offset exactly, with the same deduplication token, so rows written before a
-- crash are not written twice (docs/exactly-once.md).
CREATE TABLE IF NOT EXISTS ingest_batches
(
    topic          LowCardinality(String),
    partition      UInt16,
    first_offset   UInt64,
    last_offset    UInt64,
    rows           UInt32,
    recorded_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (topic, partition, last_offset)
TTL toDateTime(recorded_at) + INTERVAL 30 DAY;
