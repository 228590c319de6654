"""Whether this processor is writing: the one state behind ``/readyz``, two gauges and the dashboard's stall line.

A processor whose store refuses writes retries the same micro-batch forever and
commits nothing (docs/exactly-once.md), which is right for the data but silent
for operators: the process is up, its web port answers, only lag grows.
``WriteHealth`` makes that loud (docs/runbook.md, "The live dashboard"): the agent reports each batch it
starts, each failed attempt and each success; from those come the consecutive
failures, the age of the oldest record received but not yet written (from the
Kafka record timestamps) and whether writes have failed without a break for
longer than ``processor_stall_seconds``.
"""

from __future__ import annotations

import time

from prometheus_client import Gauge

CONSECUTIVE_FAILURES = Gauge(
    "eventpipe_processor_consecutive_write_failures",
    "Failed write attempts since the last successful micro-batch write",
)
OLDEST_UNWRITTEN = Gauge(
    "eventpipe_processor_oldest_unwritten_seconds",
    "Age (by Kafka record timestamp) of the oldest record received but not yet written; 0 when none waits",
)


class WriteHealth:
    def __init__(self, stall_seconds: float, clock=time.time):
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.failures = 0
        self.failing_since: float | None = None  # the first failure after the last success
        self.last_error = ""
        self.oldest: float | None = None  # Kafka timestamp (s) of the oldest record of the batch in hand

    def started(self, oldest_timestamp: float) -> None:
        """A micro-batch whose oldest record has this Kafka timestamp is being written."""
        self.oldest = oldest_timestamp

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = self.clock()
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def written(self) -> None:
        self.failures, self.failing_since, self.last_error, self.oldest = 0, None, "", None

    def abandoned(self) -> None:
        """The batch in hand is given up (the processor stops); its records are no longer this process's."""
        self.oldest = None

    def failing_seconds(self) -> float:
        return 0.0 if self.failing_since is None else max(0.0, self.clock() - self.failing_since)

    def oldest_unwritten_seconds(self) -> float:
        return 0.0 if self.oldest is None else max(0.0, self.clock() - self.oldest)

    def stalled(self) -> bool:
        return self.failing_since is not None and self.failing_seconds() >= self.stall_seconds

    def state(self) -> dict:
        """What /readyz and the dashboard show."""
        return {
            "stalled": self.stalled(),
            "consecutive_failures": self.failures,
            "failing_seconds": round(self.failing_seconds(), 3),
            "stall_seconds": self.stall_seconds,
            "oldest_unwritten_seconds": round(self.oldest_unwritten_seconds(), 3),
            "last_error": self.last_error,
        }

    def export(self) -> None:
        """Make the gauges read this object at every scrape."""
        CONSECUTIVE_FAILURES.set_function(lambda: self.failures)
        OLDEST_UNWRITTEN.set_function(self.oldest_unwritten_seconds)
