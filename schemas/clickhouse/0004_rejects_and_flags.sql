-- What processors flag on stored events (message_id_generated, timestamp_invalid,
-- timestamp_in_future, schema_violation in warn mode).
ALTER TABLE events ADD COLUMN IF NOT EXISTS flags Array(LowCardinality(String)) AFTER user_agent;

-- Every event (or undecodable record) a processor rejects, with its reason:
-- analysts count rejects by reason here; the same records sit in events.dlq.
CREATE TABLE IF NOT EXISTS events_rejected
(
    project          LowCardinality(String),
    reason           LowCardinality(String),
    message          String,
    event            LowCardinality(String),
    message_id       String,
    received_at      DateTime64(3, 'UTC'),
    kafka_topic      LowCardinality(String),
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    request_index    UInt32,
    event_index      UInt32,
    payload          String CODEC(ZSTD(3)),
    rejected_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (project, reason, received_at)
SETTINGS non_replicated_deduplication_window = 10000;

-- The ledger counts Kafka records per range (rows are only known after decoding).
ALTER TABLE ingest_batches RENAME COLUMN IF EXISTS rows TO records;
