-- Processors look up recently stored messageIds of a partition before inserting
-- (client retries after a lost 200 are new Kafka records with the same messageId):
-- skip indexes keep that lookup to the few granules that can match.
ALTER TABLE events ADD INDEX IF NOT EXISTS message_id_bloom message_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE events ADD INDEX IF NOT EXISTS received_at_minmax received_at TYPE minmax GRANULARITY 1;
