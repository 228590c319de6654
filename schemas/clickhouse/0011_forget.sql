-- `eventpipe forget` (eventpipe/forget.py): GDPR deletion of one person's rows, rollups included.
-- forget_log is the audit: one 'started' row before anything is deleted and one 'done' row with what was
-- deleted. It also holds the ids whose later events the processors suppress until suppress_until
-- (processors/forgetting.py): a suppression list must keep the identifier, never the data.
CREATE TABLE IF NOT EXISTS forget_log
(
    forget_id        String,
    status           LowCardinality(String),   -- started | done
    project          LowCardinality(String),
    user_id          String,
    anonymous_ids    Array(String),
    requested_at     DateTime64(3, 'UTC'),
    suppress_until   DateTime('UTC'),
    events_deleted   UInt64,
    rejected_deleted UInt64,
    keys_1m          UInt64,
    keys_1h          UInt64,
    seconds          Float64,
    via              LowCardinality(String),   -- processor | direct (the store opened by the CLI) | server
    logged_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (project, requested_at, forget_id);

-- The rollup keys (per minute) a forget touched, written before the person's rows are deleted: the
-- rollups are recomputed from raw events for exactly these keys, and a check compares them afterwards.
CREATE TABLE IF NOT EXISTS forget_keys
(
    forget_id    String,
    project      LowCardinality(String),
    event        LowCardinality(String),
    platform     LowCardinality(String),
    app_version  LowCardinality(String),
    minute       DateTime('UTC'),
    inserted_at  DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (forget_id, project, event, platform, app_version, minute)
TTL inserted_at + INTERVAL 30 DAY;
