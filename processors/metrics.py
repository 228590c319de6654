"""The processor's Prometheus metrics, declared once.

Their names and units are what docs/runbook.md, the dashboard and the alert rules of
deploy/k8s read (``eventpipe_freshness_seconds`` is an SLO); the write-health gauges
live with their state in processors/health.py.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_WRITTEN = Counter("eventpipe_processor_events_written_total", "Rows written to ClickHouse events")
EVENTS_REPLAYED = Counter(
    "eventpipe_processor_events_replayed_total",
    "Rows re-inserted from the ledger after an assignment (dropped again by token)",
)
EVENTS_REJECTED = Counter(
    "eventpipe_processor_events_rejected_total", "Events sent to the dead-letter topic", ["reason"]
)
STORE_ERRORS = Counter("eventpipe_processor_store_errors_total", "Failed micro-batch writes (retried)")
BATCH_ROWS = Histogram(
    "eventpipe_processor_batch_rows", "Rows per micro-batch", buckets=(10, 100, 1e3, 5e3, 1e4, 5e4, 1e5, 5e5)
)
INSERT_SECONDS = Histogram("eventpipe_processor_insert_seconds", "Decode+insert time of one micro-batch")
FRESHNESS = Histogram(
    "eventpipe_freshness_seconds",
    "Time from collector receipt to the row being queryable",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
LAG = Gauge("eventpipe_processor_lag_records", "Records in events.raw not yet processed", ["partition"])
