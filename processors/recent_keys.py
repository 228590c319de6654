"""Which message keys the store may hold for the recent past, in memory: the messageId lookup asks ClickHouse
only about those.

The lookup (``EventWriter._drop_seen``) used to send every key of a micro-batch to ``message_keys``, which keeps
a week of keys sorted by (partition, key): 50-60k random keys hit every granule, so each batch read the whole
table and the lookup's cost grew with it (0.5 µs CPU per event up to 1M stored keys, 2.6 µs at 12M: ten
minutes at 20k events/s). Here Bloom filters (``eventpipe._explode.KeyFilter``, 2 bytes per key) of the
keys stored per slice of ``received_at`` say "certainly not stored" for nearly every key, and only the rest
(retries, ~0.1 % false positives) go to the store, which stays the authority: the rows dropped are exactly those
the full lookup drops.

It knows only what it was shown: a partition's keys of the last ``window + slice`` are loaded from the store
when this processor is given the partition (``warm``), and each written batch's keys are added. A batch
looking back past that (a replay of old records, a backlog older than a slice, a partition never warmed) is
looked up in full, as before. Slices older than ``window + slice`` by the wall clock are dropped, so memory
holds about that span of keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from eventpipe._explode import KeyFilter

FIRST_CAPACITY = 1 << 16  # keys of the first slice's first filter; a slice's next filter holds twice its last


def typed_view(array: pa.Array, fmt: str) -> memoryview:
    """The values of a fixed-width Arrow array without nulls, as a typed view of its buffer (no copy)."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    width = array.type.bit_width // 8
    return memoryview(array.buffers()[1]).cast("B")[array.offset * width :][: len(array) * width].cast(fmt)


class RecentKeys:
    def __init__(self, window_ms: int, clock: Callable[[], float] = time.time):
        self.window_ms = int(window_ms)
        self.slice_ms = max(60_000, self.window_ms // 2)
        self.keep_ms = self.window_ms + self.slice_ms
        self.clock = clock
        self.filters: dict[int, list[KeyFilter]] = {}  # slice (received_at // slice_ms) -> its filters, last filling
        self.warmed: dict[int, int] = {}  # partition -> received_at (ms) from which every stored key of it is here
        self.floor = -(2**63)  # received_at before which keys went with their slice

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def covers(self, partitions, since_ms: int) -> bool:
        """Whether every key stored for ``partitions`` with a received_at at or after ``since_ms`` is here."""
        return all(p in self.warmed and since_ms >= max(self.warmed[p], self.floor) for p in partitions)

    def add(self, partitions: pa.Array, keys: pa.Array, received_ms: pa.Array) -> None:
        """Add stored rows' (partition, key) pairs: UInt16, UInt64 and their received_at in epoch ms."""
        if not len(keys):
            return
        slices = pc.divide(received_ms.cast(pa.int64()), self.slice_ms)
        distinct = pc.unique(slices).to_pylist()
        for s in distinct:
            if len(distinct) == 1:
                ps, ks = partitions, keys
            else:
                pick = pc.equal(slices, s)
                ps, ks = partitions.filter(pick), keys.filter(pick)
            self._add_to_slice(s, typed_view(ps, "H"), typed_view(ks, "Q"))
        self._expire()

    def _add_to_slice(self, s: int, partitions: memoryview, keys: memoryview) -> None:
        if s not in self.filters:
            # a slice usually holds about what the one before it held: one filter of that size, not a chain
            before = [t for t in self.filters if t < s]
            typical = sum(f.count for f in self.filters[max(before)]) if before else 0
            self.filters[s] = [KeyFilter(max(FIRST_CAPACITY, typical, len(keys)))]
        filters = self.filters[s]
        start, n = 0, len(keys)
        while start < n:
            if filters[-1].count >= filters[-1].capacity:
                filters.append(KeyFilter(max(n - start, 2 * filters[-1].capacity)))
            start = filters[-1].add(partitions, keys, start)

    def _expire(self) -> None:
        cutoff = self._now_ms() - self.keep_ms
        for s in [s for s in self.filters if (s + 1) * self.slice_ms <= cutoff]:
            del self.filters[s]
            self.floor = max(self.floor, (s + 1) * self.slice_ms)

    def maybe_stored(self, partitions: memoryview, keys: memoryview) -> bytearray:
        """One byte per row: 1 where its pair may be stored; a row left 0 certainly is not."""
        mask = bytearray(len(keys))
        for filters in self.filters.values():
            for f in filters:
                f.mark(partitions, keys, mask)
        return mask

    def warm(self, partitions: list[int], load: Callable[[list[int], int], pa.Table]) -> int:
        """Load ``partitions``' stored keys of the last ``window + slice`` (``load(partitions, since_ms)``: a table
        of kafka_partition UInt16, key UInt64, received_ms Int64); from then on they are covered. Returns the
        keys loaded."""
        since = self._now_ms() - self.keep_ms
        table = load(sorted(partitions), since)
        if table.num_rows:
            columns = [table.column(c).combine_chunks() for c in ("kafka_partition", "key", "received_ms")]
            self.add(*columns)
        for p in partitions:
            self.warmed[p] = since
        return table.num_rows

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for filters in self.filters.values() for f in filters)
