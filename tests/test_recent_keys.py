"""The in-memory filters in front of the messageId lookup (processors/recent_keys.py): the store is asked only
about keys they may hold, and what is dropped is exactly what the full lookup drops."""

from __future__ import annotations

import asyncio
import random

import pyarrow as pa
import pytest

from eventpipe._explode import KeyFilter, pairs_literal
from eventpipe.processors import writer as writer_mod
from eventpipe.processors.recent_keys import RecentKeys
from eventpipe.processors.writer import EventWriter
from eventpipe.store import Store
from tests.conftest import make_settings
from tests.test_writer import NOW, _record, _stored

HOUR = 3_600_000


def _pairs(n: int, seed: int) -> tuple[pa.Array, pa.Array]:
    rng = random.Random(seed)
    return (
        pa.array([rng.randrange(12) for _ in range(n)], pa.uint16()),
        pa.array([rng.getrandbits(64) for _ in range(n)], pa.uint64()),
    )


def _views(ps: pa.Array, ks: pa.Array) -> tuple[memoryview, memoryview]:
    from eventpipe.processors.recent_keys import typed_view

    return typed_view(ps, "H"), typed_view(ks, "Q")


def test_a_filter_never_forgets_a_pair_and_rarely_claims_one():
    f = KeyFilter(100_000)
    pa_ps, pa_ks = _pairs(100_000, 1)
    ps, ks = _views(pa_ps, pa_ks)
    assert f.add(ps, ks, 0) == 100_000 and f.count == 100_000
    mask = bytearray(100_000)
    f.mark(ps, ks, mask)
    assert mask.count(1) == 100_000  # no false negatives
    mask = bytearray(100_000)
    f.mark(*_views(*_pairs(100_000, 2)), mask)
    assert mask.count(1) < 300  # ~0.1 % at capacity
    # the same key in another partition is another pair
    shifted = pa.array([(p + 1) % 12 for p in pa_ps.to_pylist()], pa.uint16())
    mask = bytearray(100_000)
    f.mark(_views(shifted, pa_ks)[0], ks, mask)
    assert mask.count(1) < 300
    every_other = ",".join(f"({p},{k})" for p, k in list(zip(pa_ps.to_pylist(), pa_ks.to_pylist()))[::2])
    assert pairs_literal(ps, ks, bytes([1, 0] * 50_000)) == every_other


def test_a_full_filter_takes_no_more_and_a_slice_grows_another():
    f = KeyFilter(1024)
    ps, ks = _views(*_pairs(3000, 3))
    assert f.add(ps, ks, 0) == 1024 and f.add(ps, ks, 1024) == 1024
    recent = RecentKeys(HOUR, clock=lambda: NOW / 1000)
    ps_a, ks_a = _pairs(250_000, 4)
    recent.add(ps_a[:50_000], ks_a[:50_000], pa.array([NOW] * 50_000, pa.int64()))
    recent.add(ps_a[50_000:], ks_a[50_000:], pa.array([NOW] * 200_000, pa.int64()))
    (filters,) = recent.filters.values()  # one slice: the first filter filled, then a bigger one
    assert [(x.count, x.capacity) for x in filters] == [(65_536, 65_536), (184_464, 184_464)]
    # the next slice starts with one filter the size of this one's keys
    recent.add(ps_a[:10], ks_a[:10], pa.array([NOW + recent.slice_ms] * 10, pa.int64()))
    assert [(x.count, x.capacity) for x in recent.filters[max(recent.filters)]] == [(10, 250_000)]
    assert recent.maybe_stored(*_views(ps_a, ks_a)).count(1) == 250_000


def test_coverage_starts_at_the_warm_up_and_ends_with_the_dropped_slices():
    now = [NOW / 1000]
    recent = RecentKeys(HOUR, clock=lambda: now[0])
    assert not recent.covers([0], NOW - HOUR)  # never warmed: the full lookup
    loads = []

    def load(partitions, since):
        loads.append((partitions, since))
        return pa.table(
            {
                "kafka_partition": pa.array([0], pa.uint16()),
                "key": pa.array([42], pa.uint64()),
                "received_ms": pa.array([NOW - 10], pa.int64()),
            }
        )

    assert recent.warm([1, 0], load) == 1
    assert loads == [([0, 1], NOW - recent.keep_ms)]
    assert recent.covers([0, 1], NOW - HOUR) and not recent.covers([0, 2], NOW - HOUR)
    assert not recent.covers([0], NOW - recent.keep_ms - 1)  # before the warm-up: not loaded
    assert recent.maybe_stored(*_views(pa.array([0, 0], pa.uint16()), pa.array([42, 43], pa.uint64()))) == b"\1\0"
    # two hours on, the slice of NOW is gone: the key is forgotten, and so is the coverage of its time
    now[0] += 2 * HOUR / 1000
    recent.add(pa.array([0], pa.uint16()), pa.array([7], pa.uint64()), pa.array([NOW + 2 * HOUR], pa.int64()))
    assert recent.maybe_stored(*_views(pa.array([0], pa.uint16()), pa.array([42], pa.uint64()))) == b"\0"
    assert not recent.covers([0], NOW - HOUR) and recent.covers([0], NOW + HOUR)


class Asked:
    """The keys the dedup lookups sent to the store since the last ``take()``: (through the filters, all)."""

    def __init__(self):
        self.last = self._now()

    @staticmethod
    def _now():
        return tuple(writer_mod.KEYS_ASKED.labels(lookup)._value.get() for lookup in ("filtered", "full"))

    def take(self) -> tuple[float, float]:
        now = self._now()
        out, self.last = (now[0] - self.last[0], now[1] - self.last[1]), now
        return out


@pytest.fixture
def asked():
    return Asked()


def _writer(store: Store, now_ms: int) -> EventWriter:
    w = EventWriter(store, "events.raw")
    w.recent = RecentKeys(w.rules.dedup_window_ms, clock=lambda: now_ms / 1000)
    return w


def _warm(w: EventWriter, *partitions: int) -> None:
    async def no_fetch(ranges):
        return []

    async def run(fn, *args):
        return fn(*args)

    asyncio.run(w.recover({p: 0 for p in partitions}, no_fetch, run))


def test_warmed_partitions_ask_the_store_only_about_retries_and_drop_the_same(tmp_path, asked):
    store = Store(make_settings(tmp_path))
    store.migrate()
    try:
        first = _writer(store, NOW)
        first.write([_record(1, 0, *[f"m{i}" for i in range(500)])])  # not warmed: the full lookup
        assert asked.take() == (0, 500)
        # another processor is given partition 1 (a rebalance): it loads the stored keys, then looks up only
        # the retries (and the rare false positive) of its batches
        second = _writer(store, NOW)
        _warm(second, 1, 2)
        asked.take()
        second.write([_record(1, 10, "m3", "m499", *[f"n{i}" for i in range(300)]), _record(2, 0, "m3")])
        through_filters, full = asked.take()
        assert 2 <= through_filters < 2 + 5 and full == 0  # m3 and m499 of partition 1, rarely another
        stored = _stored(store)
        assert ("acme", "m3", 10) not in stored and ("acme", "m499", 10) not in stored
        assert ("acme", "m3", 0) in stored and len([r for r in stored if r[1].startswith("n")]) == 300
        # its own writes are remembered too: a retry of n7 is caught, with one small lookup
        second.write([_record(1, 20, "n7", "fresh")])
        assert asked.take()[0] in (1, 2)
        assert ("acme", "n7", 20) not in _stored(store) and ("acme", "fresh", 20) in _stored(store)
        # nothing the filters may hold: (almost always) no query at all
        second.write([_record(1, 30, "brand-new")])
        assert asked.take() in ((0, 0), (1, 0))
    finally:
        store.close()


def test_a_batch_older_than_the_warm_up_is_looked_up_in_full(tmp_path, asked):
    store = Store(make_settings(tmp_path))
    store.migrate()
    try:
        w = _writer(store, NOW + 3 * HOUR)  # the processor's clock is 3 h past these records' receipt
        _warm(w, 1)
        asked.take()
        w.write([_record(1, 0, "a", "b")])
        w.write([_record(1, 1, "a", "c")])  # a retry of a, received before the warm-up's reach
        assert asked.take() == (0, 4)  # both batches asked about every key
        assert [r[1:] for r in _stored(store)] == [("a", 0), ("b", 0), ("c", 1)]
    finally:
        store.close()


def test_the_filtered_lookup_drops_exactly_what_the_full_one_drops(tmp_path):
    """Random traffic with retries across batches and partitions, written twice into two stores: once with the
    filters (warmed), once always asking the store about every key. The stored rows must be identical."""
    rng = random.Random(7)
    batches, offsets, ids = [], {p: 0 for p in range(4)}, []
    for _ in range(30):
        batch = []
        for _ in range(rng.randrange(1, 6)):
            p = rng.randrange(4)
            chosen = [f"id{rng.randrange(10**9)}" for _ in range(rng.randrange(1, 40))]
            chosen += [rng.choice(ids) for _ in range(rng.randrange(0, 5)) if ids]  # retries, any partition
            ids.extend(chosen)
            batch.append(_record(p, offsets[p], *chosen))
            offsets[p] += 1
        batches.append(batch)
    results = []
    for name, filtered in (("filtered", True), ("full", False)):
        store = Store(make_settings(tmp_path / name))
        store.migrate()
        try:
            w = _writer(store, NOW)
            if filtered:
                _warm(w, 0, 1, 2, 3)
            else:
                w.recent.covers = lambda partitions, since: False
            asked = Asked()
            for batch in batches:
                w.write(batch)
            results.append((_stored(store), asked.take()))
        finally:
            store.close()
    (rows_filtered, (filtered_asked, full_asked)), (rows_full, (_, all_asked)) = results
    assert rows_filtered == rows_full and len(rows_full) < len(ids)  # the same rows; some retries were dropped
    assert full_asked == 0 and all_asked == len(ids)  # the first run only ever asked through the filters,
    assert filtered_asked < len(ids) / 3  # about the retries: the 30 batches' 1-in-8 repeats, and a few more
