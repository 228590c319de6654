"""The event contract: wire records, topic specs and ClickHouse migrations, one source of truth."""
