"""Hot-key overflow: a device that sends far more than any real device is spread over all partitions.

A request goes to the partition of its first event's anonymousId (or userId), so a device's events stay
in order. One runaway device (a retry loop, a bot, a load test left on) then loads one partition, and
that partition's lag dominates while the others idle. PostHog's capture routes such keys to an overflow
path; here the collector keeps a bounded LRU of token buckets, one per (project, partition key), of
``EVENTPIPE_HOT_KEY_EVENTS_PER_S`` events a second (one second of burst). Once a key goes over its rate
it is *hot* for ``EVENTPIPE_HOT_KEY_STICKY_SECONDS`` after its last request over the rate: each of its
requests goes to a partition chosen by its key and its first ``messageId`` instead (so the key's traffic
spreads over every partition), is counted, and is marked (``AcceptedRequest.overflow``; the processor
flags its events ``hot_key_overflow``).

Client retries stay harmless: the processors drop a repeated (project, messageId) only within one
partition (docs/exactly-once.md). A retry carries the same body, so the same first messageId, so while
its key is hot it lands on the same partition as a spread first attempt; and the key stays hot for as
long as the processors look for repeats (the sticky time defaults to ``EVENTPIPE_DEDUP_WINDOW_SECONDS``'s
default, an hour), so a late retry of a spread request is spread too. What is not covered: a request
sent home just before its key turned hot and retried after (the retry is spread, away from the first
copy), a retry that reaches another collector process that does not see the key as hot, and a hot key
evicted from the LRU by ``EVENTPIPE_HOT_KEY_TRACKED`` busier keys before its sticky time ends. (A request
without messageIds has positional generated ids, which no retry repeats anyway.) What a hot key gives up
is order: its spread events are stored in whatever order the partitions are processed (``timestamp``
still orders them).

Memory is bounded by ``EVENTPIPE_HOT_KEY_TRACKED`` keys (the least recently seen is forgotten; a hot
key is seen constantly, so it stays). Off (0) by default.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict

from prometheus_client import Counter, Gauge

HOT_REQUESTS = Counter(
    "eventpipe_collector_hot_key_requests_total",
    "Requests of a (project, device) over EVENTPIPE_HOT_KEY_EVENTS_PER_S, spread over partitions",
)
HOT_EVENTS = Counter("eventpipe_collector_hot_key_events_total", "Events in those requests")
TRACKED = Gauge("eventpipe_collector_hot_key_tracked", "(project, device) keys whose rate the collector tracks")

# the first messageId of the body, as sent: what a retry repeats (sentAt may change between attempts)
_MESSAGE_ID = re.compile(rb'"messageId"\s*:\s*"((?:[^"\\]|\\.){1,256})"')


class HotKeys:
    __slots__ = ("rate", "capacity", "sticky", "buckets", "_clock", "_spread")

    def __init__(
        self, events_per_s: float, capacity: int = 10_000, sticky_seconds: float = 3600.0, clock=time.monotonic
    ):
        self.rate = events_per_s
        self.capacity = capacity
        self.sticky = sticky_seconds
        # key -> [tokens, stamp, hot until]
        self.buckets: OrderedDict[tuple[str, bytes], list[float]] = OrderedDict()
        self._clock = clock
        self._spread = 0  # for hot requests without a messageId

    @classmethod
    def from_settings(cls, settings) -> "HotKeys":
        return cls(settings.hot_key_events_per_s, settings.hot_key_tracked, settings.hot_key_sticky_seconds)

    def route(self, project: str, key: bytes, events: int, body: bytes) -> tuple[bytes, bool]:
        """The partition key for this request, and whether it is a hot key's overflow."""
        if self.rate <= 0:
            return key, False
        now = self._clock()
        ident = (project, key)
        bucket = self.buckets.get(ident)
        if bucket is None:
            bucket = self.buckets[ident] = [self.rate, now, -1.0]
            if len(self.buckets) > self.capacity:
                self.buckets.popitem(last=False)
            TRACKED.set(len(self.buckets))
        else:
            self.buckets.move_to_end(ident)
        tokens = min(self.rate, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens > 0:  # within its rate (a big batch may leave the bucket in debt)
            bucket[0] = tokens - events
            if now >= bucket[2]:  # and not hot lately: its own partition
                return key, False
        else:
            bucket[0] = tokens
            bucket[2] = now + self.sticky
        HOT_REQUESTS.inc()
        HOT_EVENTS.inc(events)
        match = _MESSAGE_ID.search(body)
        if match is not None:
            return key + b"\x00" + match[1], True
        self._spread += 1
        return key + b"\x00#" + str(self._spread).encode(), True
