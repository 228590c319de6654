"""Events waiting to be sent, and the request bodies they are packed into.

`Pending` is a plain data structure (no locks, no waiting) so both clients
share it: the threaded client guards it with a lock, the asyncio client runs
it on one loop. It knows when a batch is due (full by count or bytes, its
oldest event waited ``flush_interval``, or a flush asked for it) and takes
batches that respect both the count and the byte limit.
"""

from __future__ import annotations

import gzip
import logging
from collections import deque

from eventpipe_sdk.config import Config
from eventpipe_sdk.message import iso_utc
from eventpipe_sdk.stats import Stats

log = logging.getLogger("eventpipe.sdk")

_HEAD = b'{"batch":['
_TAIL = b'],"sentAt":"%s"}'
# Bytes a body adds around its events (the sentAt value always has the same length).
ENVELOPE_BYTES = len(_HEAD) + len(_TAIL % b"2000-01-01T00:00:00.000Z")


def encode_body(events: list[bytes], gzipped: bool) -> bytes:
    """The /v1/batch body for already encoded events, stamped with ``sentAt`` = now (set per attempt)."""
    body = b"".join((_HEAD, b",".join(events), _TAIL % iso_utc().encode()))
    return gzip.compress(body, compresslevel=6) if gzipped else body


class Pending:
    """A bounded FIFO of encoded events, with the counters flush() waits on.

    ``accepted`` counts events ever queued; ``finished`` counts events whose
    fate is settled (delivered or dropped). Events are taken and finished in
    order, so "finished >= n" means the first n accepted events are settled.
    """

    def __init__(self, config: Config):
        self.max_size = config.max_queue_size
        self.max_events = config.max_batch_events
        self.max_bytes = config.max_batch_bytes
        self.interval = config.flush_interval
        self._items: deque[tuple[float, bytes]] = deque()
        self._bytes = 0
        self.accepted = 0
        self.taken = 0
        self.finished = 0
        self._urgent_through = 0  # events up to this accepted count are due now (flush/shutdown)

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, event: bytes, now: float) -> bool:
        """Queue ``event``; False when the queue is full (the caller counts the drop)."""
        if len(self._items) >= self.max_size:
            return False
        self._items.append((now, event))
        self._bytes += len(event)
        self.accepted += 1
        return True

    def full(self) -> bool:
        """At least one whole batch is waiting (by count or by bytes)."""
        n = len(self._items)
        return n >= self.max_events or ENVELOPE_BYTES + self._bytes + n - 1 > self.max_bytes

    def due_in(self, now: float) -> float | None:
        """Seconds until a batch should be sent: 0 = now, None = nothing waits."""
        if not self._items:
            return None
        if self.taken < self._urgent_through or self.full():
            return 0.0
        return max(0.0, self._items[0][0] + self.interval - now)

    def urge(self, through: float | None = None) -> None:
        """Make every event accepted so far (or up to ``through``) due at once."""
        self._urgent_through = max(self._urgent_through, self.accepted if through is None else through)

    def take(self) -> list[bytes]:
        """The next batch: as many events, oldest first, as fit the count and byte limits (at least one)."""
        batch: list[bytes] = []
        size = ENVELOPE_BYTES - 1  # n events need n-1 commas
        while self._items and len(batch) < self.max_events:
            event = self._items[0][1]
            if batch and size + len(event) + 1 > self.max_bytes:
                break
            self._items.popleft()
            batch.append(event)
            size += len(event) + 1
            self._bytes -= len(event)
        self.taken += len(batch)
        return batch

    def drop_all(self, stats: Stats) -> int:
        """Drop everything still queued, counted as dropped at shutdown (shutdown ran out of time)."""
        count = len(self._items)
        self._items.clear()
        self._bytes = 0
        self.taken += count
        self.finished += count
        stats.dropped_shutdown += count
        log.warning("eventpipe SDK: shutdown timed out; %d queued event(s) dropped", count)
        return count

    def finish(self, count: int) -> None:
        self.finished += count


def admit(pending: Pending, stats: Stats, config: Config, event: bytes, closed: bool, now: float) -> bool:
    """Queue one encoded event, or count why it was dropped. True when the sender should wake up now
    (the first event starts the flush_interval clock; a full batch goes at once)."""
    if len(event) > config.max_event_bytes:
        stats.dropped_oversize += 1
        log.warning(
            "eventpipe SDK: dropped an event of %d bytes (max_event_bytes=%d)", len(event), config.max_event_bytes
        )
        return False
    if closed:
        stats.dropped_shutdown += 1
        return False
    if not pending.offer(event, now):
        stats.dropped_queue_full += 1
        if stats.dropped_queue_full % 1000 == 1:
            log.warning(
                "eventpipe SDK: queue full (max_queue_size=%d); %d event(s) dropped so far",
                config.max_queue_size,
                stats.dropped_queue_full,
            )
        return False
    stats.queued += 1
    return len(pending) == 1 or pending.full()
