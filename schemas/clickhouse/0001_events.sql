-- Raw events, one row per accepted event. Analysts query this table.
-- Sorted for the common filter (project, event, time range); partitioned by day
-- so TTL and retention drop whole parts.
CREATE TABLE IF NOT EXISTS events
(
    project            LowCardinality(String),
    type               LowCardinality(String),
    event              LowCardinality(String),
    message_id         String,
    anonymous_id       String,
    user_id            String,
    -- client time corrected for clock skew: timestamp + (received_at - sent_at)
    timestamp          DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    -- the raw client values, kept as sent (epoch when absent)
    client_timestamp   DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    sent_at            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    received_at        DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    properties         String CODEC(ZSTD(3)),
    traits             String CODEC(ZSTD(3)),
    context            String CODEC(ZSTD(3)),
    ip                 String,
    user_agent         String CODEC(ZSTD(3)),
    -- where the row came from in Kafka: makes replays detectable
    kafka_partition    UInt16,
    kafka_offset       UInt64 CODEC(Delta, ZSTD(1)),
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (project, event, timestamp)
SETTINGS non_replicated_deduplication_window = 10000;
