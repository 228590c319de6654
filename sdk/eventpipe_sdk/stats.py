"""What happened to the events given to a client: nothing is dropped without being counted.

Analytics SDKs must never block or crash the app, so they drop events under
pressure; these counters make every drop visible (log them, export them as
metrics, assert on them in tests). ``client.stats`` returns a copy.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Stats:
    queued: int = 0  # events accepted into the queue
    delivered: int = 0  # events in batches the server answered 2xx
    batches: int = 0  # requests answered 2xx
    retries: int = 0  # requests sent again after a 429, 5xx or connection error
    dropped_queue_full: int = 0  # the queue held max_queue_size events
    dropped_oversize: int = 0  # the event's JSON was over max_event_bytes
    dropped_rejected: int = 0  # the server refused the batch with a 4xx other than 429 (not retried)
    dropped_retries_exhausted: int = 0  # still failing after max_retries retries
    dropped_shutdown: int = 0  # given after shutdown, or unsent when shutdown's timeout ran out

    @property
    def dropped(self) -> int:
        return (
            self.dropped_queue_full
            + self.dropped_oversize
            + self.dropped_rejected
            + self.dropped_retries_exhausted
            + self.dropped_shutdown
        )

    def settle(self, outcome: str, events: int) -> None:
        """Count a batch whose fate is known (``outcome`` as in `sdk.retry.Delivery`)."""
        if outcome == "delivered":
            self.delivered += events
            self.batches += 1
        else:
            name = f"dropped_{outcome}"
            setattr(self, name, getattr(self, name) + events)

    def copy(self) -> "Stats":
        return dataclasses.replace(self)
