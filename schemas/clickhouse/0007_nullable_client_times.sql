-- A client that sends no timestamp or sentAt (or one that is not a date) left 1970-01-01 in these
-- columns, indistinguishable from a real value. They are NULL when absent from now on; `timestamp`
-- (corrected, falling back to received_at) stays a meaningful, non-null time. Rows written before
-- this migration used the epoch to mean "absent" and are converted.
ALTER TABLE events MODIFY COLUMN client_timestamp Nullable(DateTime64(3, 'UTC')) CODEC(Delta, ZSTD(1));
ALTER TABLE events MODIFY COLUMN sent_at Nullable(DateTime64(3, 'UTC')) CODEC(Delta, ZSTD(1));
ALTER TABLE events UPDATE
    client_timestamp = if(client_timestamp = toDateTime64(0, 3, 'UTC'), NULL, client_timestamp),
    sent_at = if(sent_at = toDateTime64(0, 3, 'UTC'), NULL, sent_at)
WHERE client_timestamp = toDateTime64(0, 3, 'UTC') OR sent_at = toDateTime64(0, 3, 'UTC');
