"""Writing micro-batches to ClickHouse with an exactly-once effect on at-least-once delivery.

Kafka and faust deliver a record at least once: after a crash or a rebalance,
everything after the last committed offset comes again. This module makes
those replays harmless (docs/exactly-once.md):

1. Each micro-batch is split per Kafka partition into contiguous offset ranges;
   the batch's token names them all: ``<topic>/<p>/<first>-<last>,<p>/<first>-<last>…``.
2. Before inserting, the ranges are recorded in the ``ingest_batches`` ledger
   with the batch they belong to.
3. The batch is one insert per table with that deduplication token; the table
   and every rollup have a deduplication window, so a repeat of the same token
   with the same rows is dropped everywhere, even if the first attempt died
   half-way. (One insert per batch, not per range: per-insert overhead
   dominated at ~1k rows, benchmarks/README.md.)
4. Offsets are acked (and later committed) only after the inserts succeed.
5. When a processor first sees partitions after an assignment (all those new in
   one micro-batch together), it looks up, in one ledger query, the batches with a
   range of any of them at or after the first offset it was given for that
   partition, re-reads exactly those batches' offsets from Kafka (all their
   partitions, in one read), re-inserts each batch once with its original token,
   and skips them in the stream. A batch already replayed since the assignment is
   not inserted again when a partition of it is seen later. Every batch thus always
   goes into ClickHouse with the same records, the same rows (``eventpipe.processors.rows``
   is deterministic) and the same token.
6. Client retries after a lost 200 are new records with the same messageId; an
   event whose (project, messageId) repeats earlier in its partition, in the
   batch or stored from an earlier offset (within ``dedup_window``, looked up by
   a 64-bit key in ``message_keys``), is dropped before the insert.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from eventpipe.store import Store
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from eventpipe import _explode
from eventpipe.processors import rows
from eventpipe.processors.recent_keys import RecentKeys, typed_view
from eventpipe.processors.rows import Exploded, Rules, explode

log = logging.getLogger("eventpipe.processor")

DUPLICATES = Counter(
    "eventpipe_processor_duplicates_dropped_total",
    "Events dropped because their (project, messageId) was already stored (client retries)",
)
PAIRS_INLINE = 5_000  # at most this many (partition, key) pairs go inline in a lookup (~25 chars each)
KEYS_ASKED = Counter(
    "eventpipe_processor_dedup_keys_asked_total",
    "Message keys the dedup lookup sent to the store (the in-memory filters send only those they may hold)",
    ["lookup"],
)

Record = tuple[int, int, bytes]  # (partition, offset, bundle bytes)
Range = tuple[int, int, int]  # (partition, first offset, last offset)
Fetch = Callable[[list[Range]], Awaitable[list[Record]]]  # the records of these ranges, any order


def contiguous_ranges(records: list[Record]) -> list[list[Record]]:
    """Split one partition's records (in offset order) where offsets jump, so each range has no holes."""
    ranges: list[list[Record]] = []
    for record in records:
        if ranges and record[1] == ranges[-1][-1][1] + 1:
            ranges[-1].append(record)
        else:
            ranges.append([record])
    return ranges


def message_key(project: str, message_id: str) -> int:  # the specification of rows.message_keys
    """The first 8 bytes of MD5(project \\0 messageId), little-endian: ``message_keys.key`` (migration 0006)."""
    digest = hashlib.md5(f"{project}\0{message_id}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "little")


def byte_chunks(records: list[Record], max_bytes: int) -> list[list[Record]]:
    """Consecutive runs of ``records`` holding at most ``max_bytes`` of bundles each (at least one record)."""
    chunks: list[list[Record]] = []
    size = max_bytes
    for record in records:
        if size + len(record[2]) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += len(record[2])
    return chunks


class EventWriter:
    def __init__(
        self,
        store: Store,
        topic: str,
        rules: Rules | None = None,
        max_batch_bytes: int = 32 << 20,
        suppress: Callable[[Exploded], Exploded] | None = None,
    ):
        self.store = store
        self.suppress = suppress  # forgotten people's events out (processors/forgetting.py), before the insert
        self.topic = topic
        self.rules = rules or Rules(topic=topic)
        # A micro-batch is written in parts of at most this many bundle bytes, each part its own ledger
        # batch: faust counts records, and records range from ~1 KB to the collector's bundle cap.
        self.max_batch_bytes = max_batch_bytes
        # partition -> the last offset already written by recovery; absent: not yet recovered
        self.recovered: dict[int, int] = {}
        # tokens of the ledger batches replayed since the last assignment (each needs it once)
        self.replayed: set[str] = set()
        # the keys the store may hold, so the dedup lookup asks it only about those (processors/recent_keys.py)
        self.recent = RecentKeys(self.rules.dedup_window_ms)

    def token(self, ranges: list[list[Record]]) -> str:
        return self.topic + "/" + ",".join(f"{r[0][0]}/{r[0][1]}-{r[-1][1]}" for r in ranges)

    def reset(self) -> None:
        """After any (re)assignment faust seeks to committed offsets: every partition must recover again."""
        self.recovered.clear()
        self.replayed.clear()

    # --- the ledger ---------------------------------------------------------
    def recorded_batches(self, starts: dict[int, int]) -> list[tuple[str, list[Range]]]:
        """The batches with a range of a partition ``p`` of ``starts`` ending at or after ``starts[p]``, in the
        order they were recorded: [(token, [(partition, first_offset, last_offset), …])]. One query."""
        partitions = sorted(starts)
        result = self.store.query(
            "SELECT batch, partition, first_offset, last_offset FROM ingest_batches "
            "WHERE topic = {topic:String} AND batch IN (SELECT batch FROM ingest_batches WHERE topic = {topic:String} "
            "AND has({ps:Array(UInt16)}, partition) "
            "AND last_offset >= arrayElement({froms:Array(UInt64)}, indexOf({ps:Array(UInt16)}, partition))) "
            "GROUP BY batch, partition, first_offset, last_offset ORDER BY min(recorded_at), partition, first_offset",
            parameters={"topic": self.topic, "ps": partitions, "froms": [starts[p] for p in partitions]},
        )
        batches: dict[str, list[Range]] = {}
        for batch, p, first, last in result.rows:
            batches.setdefault(batch, []).append((int(p), int(first), int(last)))
        return list(batches.items())

    def _record(self, ranges: list[list[Record]], token: str) -> None:
        self.store.insert_rows(
            "ingest_batches",
            [[self.topic, r[0][0], r[0][1], r[-1][1], len(r), token] for r in ranges],
            ["topic", "partition", "first_offset", "last_offset", "records", "batch"],
        )

    # --- writing ------------------------------------------------------------
    def _drop_seen(self, events: pa.Table) -> tuple[pa.Table, tuple]:
        """Drop events whose (project, messageId) came earlier in their partition: in this batch, or stored
        from an earlier offset than the batch's first of that partition, within the dedup window. Returns the
        events kept and the batch's (partition, key, received_at) columns, to remember once they are stored.

        A client that retries after a lost 200 sends the same body again: same key, same partition, a
        later offset. Looking only at *earlier* offsets keeps the result a pure function of the batch and
        what precedes it, so a replay of the batch produces the same rows and the same token holds.
        (Keys are 64-bit: two distinct ids of one partition collide with odds ~n²/2⁶⁵, negligible.)
        Keys, the keep-mask and the query's pair list are computed natively (``eventpipe._explode``): no
        Python object per event. When the in-memory filters cover the batch's partitions and window
        (``RecentKeys``), the store is asked only about the pairs they may hold, else about every key (as a
        table, ``Store.query_keys``)."""
        keys = rows.message_keys(events)
        key_column = pa.Array.from_buffers(pa.uint64(), events.num_rows, [None, pa.py_buffer(keys)])
        partition_column = events.column("kafka_partition").combine_chunks()
        received = events.column("received_at").combine_chunks().cast(pa.int64())
        partitions, key_values = typed_view(partition_column, "H"), typed_view(key_column, "Q")
        first = dict(
            _explode.first_offsets(partitions, typed_view(events.column("kafka_offset").combine_chunks(), "Q"))
        )
        since = pc.min(received).as_py() - self.rules.dedup_window_ms
        where = f"received_at >= fromUnixTimestamp64Milli({int(since)})"
        flagged = self.recent.maybe_stored(partitions, key_values) if self.recent.covers(first, since) else None
        asked = flagged.count(1) if flagged is not None else events.num_rows
        if flagged is not None and asked <= PAIRS_INLINE:
            # the few pairs the filters may hold (retries, ~0.1 % false positives), inline as a tuple list: the
            # primary key (kafka_partition, key) finds each one's granule, so the query reads ~one per pair
            KEYS_ASKED.labels("filtered").inc(asked)
            literal = _explode.pairs_literal(partitions, key_values, flagged) if asked else ""
            stored = (
                self.store.query(
                    f"SELECT kafka_partition, key, kafka_offset FROM message_keys WHERE {where} "
                    f"AND (kafka_partition, key) IN ({literal})"
                ).rows
                if asked
                else []
            )
        else:
            # every key, as a table (a literal of 50-60k keys passes max_query_size); it reads every granule
            KEYS_ASKED.labels("full").inc(asked)
            stored = self.store.query_keys(
                "SELECT kafka_partition, key, kafka_offset FROM message_keys "
                f"WHERE kafka_partition IN ({','.join(map(str, sorted(first)))}) "
                f"AND key IN (SELECT key FROM {{keys}}) AND {where}",
                keys,
            ).rows
        seen = [(p, k) for p, k, offset in stored if offset < first[p]]
        mask, dropped = _explode.keep_first(partitions, key_values, seen)
        pairs = (partition_column, key_column, received)
        if not dropped:
            return events, pairs
        DUPLICATES.inc(dropped)
        return events.filter(pa.Array.from_buffers(pa.bool_(), events.num_rows, [None, pa.py_buffer(mask)])), pairs

    def _insert(self, records: list[Record], token: str) -> tuple[int, pa.Table]:
        """One batch (records in partition, offset order) as one insert per table, each with the batch's token."""
        exploded = explode(records, self.rules)
        if self.suppress is not None:
            exploded = self.suppress(exploded)
        events, pairs = self._drop_seen(exploded.events) if exploded.events.num_rows else (exploded.events, None)
        self.store.insert_arrow("events", events, token=token)
        if pairs is not None:  # every key of the batch is stored now: kept rows, and the repeats of stored ones
            self.recent.add(*pairs)
        if exploded.rejected.num_rows:
            self.store.insert_arrow("events_rejected", exploded.rejected, token=token)
        return events.num_rows, exploded.rejected

    def stored_keys(self, partitions: list[int], since_ms: int) -> pa.Table:
        """``partitions``' stored message keys received at or after ``since_ms`` (``RecentKeys.warm``'s load)."""
        return self.store.query_arrow(
            "SELECT kafka_partition, key, toUnixTimestamp64Milli(received_at) AS received_ms FROM message_keys "
            f"WHERE kafka_partition IN ({','.join(map(str, partitions))}) "
            f"AND received_at >= fromUnixTimestamp64Milli({int(since_ms)})"
        )

    def write(self, records: list[Record]) -> tuple[int, list[pa.Table]]:
        """Insert a micro-batch (any partitions, already recovered). Blocking.

        Returns the rows stored and the rejected rows (for the dead-letter topic)."""
        todo = [r for r in sorted(records, key=lambda r: (r[0], r[1])) if r[1] > self.recovered.get(r[0], -1)]
        stored, rejected = 0, []
        for chunk in byte_chunks(todo, self.max_batch_bytes):
            ranges = [
                rng
                for _, group in itertools.groupby(chunk, key=lambda r: r[0])
                for rng in contiguous_ranges(list(group))
            ]
            token = self.token(ranges)
            self._record(ranges, token)
            rows, rejects = self._insert(chunk, token)
            stored += rows
            if rejects.num_rows:
                rejected.append(rejects)
        return stored, rejected

    async def recover(self, starts: dict[int, int], fetch: Fetch, run_blocking) -> tuple[int, list]:
        """Recover the partitions of ``starts`` (partition -> the first offset this assignment gave for it):
        replay the ledger's batches that hold a range of such a partition at or after that offset.

        All partitions first seen in one micro-batch recover together: one ledger query, one Kafka read,
        and each batch inserted once, although a batch spans many partitions (replaying per partition
        re-inserted the same batch once for each). A batch replayed earlier in this assignment, for a
        partition seen earlier, is not inserted again: it went in with its token then.

        Returns the rows re-inserted and the rejected rows, which go to the dead-letter topic again:
        the first attempt may have died before sending them. The DLQ is at-least-once; each of its
        records names its source (topic, partition, offset, indexes) so readers can drop repeats."""
        started = time.perf_counter()
        # before any replay: from here on the dedup lookup of these partitions asks the store only about keys
        # the filters may hold, and a replayed batch is judged against the same stored keys as the first time
        warmed = await run_blocking(self.recent.warm, list(starts), self.stored_keys)
        batches = await run_blocking(self.recorded_batches, starts)
        looked_up = time.perf_counter()
        todo = [(token, ranges) for token, ranges in batches if token not in self.replayed]
        fetched = {(r[0], r[1]): r for r in await fetch([rng for _, ranges in todo for rng in ranges])} if todo else {}
        read = time.perf_counter()
        replayed, rejected = 0, []
        for token, ranges in todo:
            records = [
                fetched[(p, o)] for p, first, last in ranges for o in range(first, last + 1) if (p, o) in fetched
            ]
            if records:
                rows, rejects = await run_blocking(self._insert, records, token)
                replayed += rows
                if rejects.num_rows:
                    rejected.append(rejects)
            self.replayed.add(token)
        last_seen = {p: first - 1 for p, first in starts.items()}
        for _, ranges in batches:
            for p, _, last in ranges:
                if p in last_seen:
                    last_seen[p] = max(last_seen[p], last)
        self.recovered.update(last_seen)
        if batches:
            done = time.perf_counter()
            log.info(
                "partitions %s: replayed %d ledger batch(es) (%d more already replayed) up to offsets %s "
                "(%d rows, duplicates dropped by token) in %.2fs: %d recent keys and ledger %.2fs, Kafka %.2fs, "
                "inserts %.2fs",
                ",".join(map(str, sorted(starts))),
                len(todo),
                len(batches) - len(todo),
                ",".join(f"{p}:{o}" for p, o in sorted(last_seen.items())),
                replayed,
                done - started,
                warmed,
                looked_up - started,
                read - looked_up,
                done - read,
            )
        return replayed, rejected
