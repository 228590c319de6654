"""Writing micro-batches to ClickHouse with an exactly-once effect on at-least-once delivery.

Kafka and faust deliver a record at least once: after a crash or a rebalance,
everything after the last committed offset comes again. This module makes
those replays harmless (docs/exactly-once.md):

1. Each micro-batch is split per Kafka partition into contiguous offset ranges.
2. Before inserting, the ranges are recorded in the ``ingest_batches`` ledger.
3. Each range is one insert with the deduplication token
   ``<topic>/<partition>/<first>-<last>``; the table and every rollup have a
   deduplication window, so a repeat of the same token with the same rows is
   dropped everywhere, even if the first attempt died half-way.
4. Offsets are acked (and later committed) only after the inserts succeed.
5. When a processor first sees a partition after an assignment, it looks up the
   ledger ranges at or after the first offset it was given, re-reads exactly
   those offsets from Kafka, re-inserts them with their original tokens, and
   skips them in the stream. Every range thus always goes into ClickHouse with
   the same boundaries, the same rows (``processors.rows`` is deterministic) and
   the same token.
6. Client retries after a lost 200 are new records with the same messageId; an
   event whose (project, messageId) is already stored from an earlier offset of
   the partition (within ``dedup_window``) is dropped before the insert.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

from eventpipe.store import Store
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from processors.rows import Rules, explode

log = logging.getLogger("eventpipe.processor")

DUPLICATES = Counter("eventpipe_processor_duplicates_dropped_total",
                     "Events dropped because their (project, messageId) was already stored (client retries)")

Record = tuple[int, int, bytes]  # (partition, offset, bundle bytes)
Fetch = Callable[[int, int, int], Awaitable[list[Record]]]


def contiguous_ranges(records: list[Record]) -> list[list[Record]]:
    """Split one partition's records (in offset order) where offsets jump, so each range has no holes."""
    ranges: list[list[Record]] = []
    for record in records:
        if ranges and record[1] == ranges[-1][-1][1] + 1:
            ranges[-1].append(record)
        else:
            ranges.append([record])
    return ranges


class EventWriter:
    def __init__(self, store: Store, topic: str, rules: Rules | None = None):
        self.store = store
        self.topic = topic
        self.rules = rules or Rules(topic=topic)
        # partition -> the last offset already written by recovery; absent: not yet recovered
        self.recovered: dict[int, int] = {}

    def token(self, partition: int, first: int, last: int) -> str:
        return f"{self.topic}/{partition}/{first}-{last}"

    def reset(self) -> None:
        """After any (re)assignment faust seeks to committed offsets: every partition must recover again."""
        self.recovered.clear()

    # --- the ledger ---------------------------------------------------------
    def recorded_ranges(self, partition: int, from_offset: int) -> list[tuple[int, int]]:
        result = self.store.query(
            "SELECT first_offset, last_offset FROM ingest_batches WHERE topic = {topic:String} "
            "AND partition = {p:UInt16} AND last_offset >= {from_offset:UInt64} "
            "GROUP BY first_offset, last_offset ORDER BY first_offset",
            parameters={"topic": self.topic, "p": partition, "from_offset": from_offset})
        return [(int(a), int(b)) for a, b in result.rows]

    def _record(self, ranges: list[list[Record]]) -> None:
        self.store.insert_rows(
            "ingest_batches",
            [[self.topic, r[0][0], r[0][1], r[-1][1], len(r)] for r in ranges],
            ["topic", "partition", "first_offset", "last_offset", "records"])

    # --- writing ------------------------------------------------------------
    def _drop_seen(self, events: pa.Table, partition: int, first: int) -> pa.Table:
        """Drop events whose (project, messageId) came earlier: in this range, or stored from earlier offsets
        of the same partition within the dedup window.

        A client that retries after a lost 200 sends the same body again: same key, same partition, a
        later offset. Looking only at *earlier* offsets keeps the result a pure function of the range and
        what precedes it, so a replay of the range produces the same rows and the same token holds."""
        projects = events.column("project").to_pylist()
        message_ids = events.column("message_id").to_pylist()
        received = events.column("received_at").cast(pa.int64())
        since = pc.min(received).as_py() - self.rules.dedup_window_ms
        stored = self.store.query(
            "SELECT DISTINCT project, message_id FROM events WHERE kafka_partition = {p:UInt16} "
            "AND kafka_offset < {first:UInt64} AND received_at >= fromUnixTimestamp64Milli({since:Int64}) "
            "AND message_id IN {ids:Array(String)}",
            parameters={"p": partition, "first": first, "since": since, "ids": sorted(set(message_ids))}).rows
        seen = set(map(tuple, stored))
        keep = []
        for key in zip(projects, message_ids):
            keep.append(key not in seen)
            seen.add(key)
        if all(keep):
            return events
        DUPLICATES.inc(keep.count(False))
        return events.filter(pa.array(keep))

    def _insert(self, records: list[Record]) -> tuple[int, pa.Table]:
        """One contiguous range as one insert per table, each with the range's token."""
        partition, first = records[0][0], records[0][1]
        token = self.token(partition, first, records[-1][1])
        exploded = explode(records, self.rules)
        events = self._drop_seen(exploded.events, partition, first) if exploded.events.num_rows else exploded.events
        self.store.insert_arrow("events", events, token=token)
        if exploded.rejected.num_rows:
            self.store.insert_arrow("events_rejected", exploded.rejected, token=token)
        return events.num_rows, exploded.rejected

    def write(self, records: list[Record]) -> tuple[int, list[pa.Table]]:
        """Insert a micro-batch (any partitions, already recovered). Blocking.

        Returns the rows stored and the rejected rows (for the dead-letter topic)."""
        ranges = []
        for partition, group in itertools.groupby(sorted(records, key=lambda r: (r[0], r[1])), key=lambda r: r[0]):
            skip = self.recovered.get(partition, -1)
            ranges += contiguous_ranges([r for r in group if r[1] > skip])
        if not ranges:
            return 0, []
        self._record(ranges)
        stored, rejected = 0, []
        for r in ranges:
            rows, rejects = self._insert(r)
            stored += rows
            if rejects.num_rows:
                rejected.append(rejects)
        return stored, rejected

    async def recover(self, partition: int, first_seen: int, fetch: Fetch, run_blocking) -> tuple[int, list]:
        """Replay the ledger's ranges of ``partition`` at or after ``first_seen``.

        Returns the rows re-inserted and the rejected rows, which go to the dead-letter topic again:
        the first attempt may have died before sending them. The DLQ is at-least-once; each of its
        records names its source (topic, partition, offset, indexes) so readers can drop repeats."""
        ranges = await run_blocking(self.recorded_ranges, partition, first_seen)
        replayed, rejected = 0, []
        if ranges:
            records = await fetch(partition, ranges[0][0], ranges[-1][1])
            by_offset = {r[1]: r for r in records}
            for first, last in ranges:
                chunk = [by_offset[o] for o in range(first, last + 1) if o in by_offset]
                if chunk:
                    rows, rejects = await run_blocking(self._insert, chunk)
                    replayed += rows
                    if rejects.num_rows:
                        rejected.append(rejects)
            log.info("partition %d: replayed %d ledger range(s) %d..%d (%d rows, duplicates dropped by token)",
                     partition, len(ranges), ranges[0][0], ranges[-1][1], replayed)
        self.recovered[partition] = ranges[-1][1] if ranges else first_seen - 1
        return replayed, rejected
