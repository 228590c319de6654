-- Per-minute and per-hour rollups as aggregate states (AggregatingMergeTree).
-- Materialized views fill them from every insert into events, so each insert
-- (= one micro-batch of one Kafka partition) adds one partial state per key and
-- ClickHouse merges partial states from any number of processors and late
-- events. Each rollup has its own deduplication window: a replayed insert is
-- dropped there too (docs/exactly-once.md). Users: userId, else anonymousId.
CREATE TABLE IF NOT EXISTS events_1m
(
    project      LowCardinality(String),
    event        LowCardinality(String),
    platform     LowCardinality(String),
    app_version  LowCardinality(String),
    minute       DateTime('UTC'),
    events       SimpleAggregateFunction(sum, UInt64),
    users        AggregateFunction(uniq, String),
    revenue      SimpleAggregateFunction(sum, Decimal(38, 4))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project, event, platform, app_version, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_1m_mv TO events_1m AS
SELECT project, event, platform, app_version, toStartOfMinute(timestamp) AS minute,
       count() AS events,
       uniqState(if(user_id != '', user_id, anonymous_id)) AS users,
       sum(revenue) AS revenue
FROM events
GROUP BY project, event, platform, app_version, minute;

CREATE TABLE IF NOT EXISTS events_1h
(
    project      LowCardinality(String),
    event        LowCardinality(String),
    platform     LowCardinality(String),
    app_version  LowCardinality(String),
    hour         DateTime('UTC'),
    events       SimpleAggregateFunction(sum, UInt64),
    users        AggregateFunction(uniq, String),
    revenue      SimpleAggregateFunction(sum, Decimal(38, 4))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project, event, platform, app_version, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_1h_mv TO events_1h AS
SELECT project, event, platform, app_version, toStartOfHour(timestamp) AS hour,
       count() AS events,
       uniqState(if(user_id != '', user_id, anonymous_id)) AS users,
       sum(revenue) AS revenue
FROM events
GROUP BY project, event, platform, app_version, hour;
