"""The collector's partitioning rule: which events.raw partition a request's events go to.

It has one home because two writers must agree on it: the collector (its
bundler) and ``eventpipe dlq replay`` (eventpipe.processors.dead_letters). A
device's events stay on one partition, so they are read in order, and the
processor's messageId dedup of client retries looks per partition: an event
replayed onto another partition than its device's would escape it.

One exception, in the collector only: a device over ``EVENTPIPE_HOT_KEY_EVENTS_PER_S`` has its further
requests keyed by device and first messageId (eventpipe.ingest.overflow), so they spread over the
partitions while a retry, which repeats its body, still lands where its first attempt did.

The key is the first event's ``anonymousId``, else its ``userId``, as text
(``None`` when neither is set: the collector refuses such events before
this rule runs); the partition is its CRC-32 modulo the partition count.
"""

from __future__ import annotations

import zlib


def partition_key(anonymous_id, user_id) -> bytes:
    """The key of a request whose first event has these ids (a device's anonymousId wins)."""
    return str(anonymous_id or user_id).encode()


def event_partition_key(event: dict) -> bytes:
    """:func:`partition_key` of a decoded event."""
    return partition_key(event.get("anonymousId"), event.get("userId"))


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` in a topic of ``partitions`` partitions."""
    return zlib.crc32(key) % partitions
