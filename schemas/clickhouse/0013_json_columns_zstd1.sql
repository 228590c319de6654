-- Issue 12: the JSON-text columns of events (and the raw user agent) from ZSTD(3) to ZSTD(1).
-- Compressing them at level 3 was a fifth of the processor's insert: 4.99 -> 4.01 us CPU per row
-- with every view, for 5 % more bytes in those columns (46.0 -> 48.4 MB for 540k demo events;
-- benchmarks/README.md). Reading is as fast at either level. Only new parts take the new codec;
-- old ones are recompressed when they merge. events_rejected keeps ZSTD(3): rejects are rare.
ALTER TABLE events MODIFY COLUMN properties String CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN traits String CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN context String CODEC(ZSTD(1));
ALTER TABLE events MODIFY COLUMN user_agent String CODEC(ZSTD(1));
