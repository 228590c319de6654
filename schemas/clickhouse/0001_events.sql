-- Raw events, one row per accepted event. Analysts query this table.
-- Sorted for the common filter (project, event, time range); partitioned by day
-- so TTL and retention drop whole parts. Every insert carries a deduplication
-- token (see docs/exactly-once.md), hence the deduplication window.
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
    -- common Segment context fields as typed columns
    platform           LowCardinality(String),
    app_name           LowCardinality(String),
    app_version        LowCardinality(String),
    app_build          LowCardinality(String),
    os_name            LowCardinality(String),
    os_version         LowCardinality(String),
    device_manufacturer LowCardinality(String),
    device_model       LowCardinality(String),
    library_name       LowCardinality(String),
    library_version    LowCardinality(String),
    locale             LowCardinality(String),
    timezone           LowCardinality(String),
    page_path          String CODEC(ZSTD(1)),
    page_url           String CODEC(ZSTD(1)),
    page_referrer      String CODEC(ZSTD(1)),
    name               String,        -- page/screen name
    revenue            Decimal(18, 4), -- properties.revenue (or .value), 0 when absent
    properties         String CODEC(ZSTD(3)),
    traits             String CODEC(ZSTD(3)),
    context            String CODEC(ZSTD(3)),
    ip                 String,
    user_agent         String CODEC(ZSTD(3)),
    -- where the row came from in Kafka
    kafka_partition    UInt16,
    kafka_offset       UInt64 CODEC(Delta, ZSTD(1)),
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (project, event, timestamp)
SETTINGS non_replicated_deduplication_window = 10000;
