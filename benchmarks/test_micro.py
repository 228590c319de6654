"""Microbenchmarks of the hot paths (pytest-benchmark). Not part of the default ``pytest`` run
(testpaths = tests/); run them with

    eventpipe bench micro                      # = pytest benchmarks/test_micro.py --benchmark-only
    pytest benchmarks/test_micro.py --benchmark-only --benchmark-json benchmarks/results/micro.json

Inputs are the realistic Segment batches of ``eventpipe.demo`` (10 events, ~4.8 KB per request).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eventpipe.demo import Device, make_batch  # noqa: E402
from eventpipe.ingest.batch import parse_batch  # noqa: E402
from eventpipe.processors.rows import bundles_to_table  # noqa: E402
from eventpipe.schemas.bundle import AcceptedRequest, decode_bundle, encode_bundle  # noqa: E402

LIMIT = 500 * 1024


def _bodies(n: int, events: int = 10, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    fleet = [Device.new(rng) for _ in range(500)]
    return [make_batch(rng, rng.choice(fleet), events) for _ in range(n)]


BODIES = _bodies(1000)


def _records(events: int, per_bundle: int = 6) -> list[tuple[int, int, bytes]]:
    """Kafka records (partition, offset, bundle) holding ``events`` events, 10 per request."""
    records, made, i = [], 0, 0
    while made < events:
        group = []
        for _ in range(per_bundle):
            if made >= events:
                break
            group.append(AcceptedRequest("bench", 1_764_000_000_000, "10.0.0.1", "ua/1.0", BODIES[i % len(BODIES)]))
            made += 10
            i += 1
        records.append((len(records) % 12, len(records), encode_bundle(group)))
    return records


def test_parse_batch_10_events(benchmark):
    """eventpipe.ingest.batch.parse_batch: one 10-event request (the collector's per-request validation)."""
    body = BODIES[0]
    parsed = benchmark(parse_batch, body, LIMIT)
    assert parsed.events == 10


def test_encode_bundle_6_requests(benchmark):
    """eventpipe.schemas.bundle.encode_bundle: one Kafka record of 6 requests (60 events)."""
    reqs = [AcceptedRequest("bench", 1, "10.0.0.1", "ua", b) for b in BODIES[:6]]
    value = benchmark(encode_bundle, reqs)
    assert decode_bundle(value) == reqs


def test_decode_bundle_6_requests(benchmark):
    value = encode_bundle([AcceptedRequest("bench", 1, "10.0.0.1", "ua", b) for b in BODIES[:6]])
    assert len(benchmark(decode_bundle, value)) == 6


def test_bundles_to_table_10k_events(benchmark):
    """eventpipe.processors.rows.bundles_to_table: decode + enrich + Arrow columns for 10k events."""
    records = _records(10_000)
    table = benchmark(bundles_to_table, records)
    assert table.num_rows == 10_000


def test_orjson_loads_10k_events(benchmark):
    """The JSON-parse floor inside bundles_to_table (1k request bodies = 10k events)."""
    benchmark(lambda: [orjson.loads(b) for b in BODIES])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from eventpipe.settings import Settings
    from eventpipe.store import Store

    s = Store(Settings.from_env({}, data_dir=tmp_path_factory.mktemp("micro-store")))
    s.migrate()
    yield s
    s.close()


def test_chdb_insert_100k_rows_with_rollups(benchmark, store):
    """eventpipe.store.Store.insert_arrow: 100k rows into `events` (+ the events_1m/1h rollup views),
    with a dedup token, as the processor does. Each round uses a fresh token."""
    table = bundles_to_table(_records(100_000))
    tokens = iter(range(10**9))

    def insert():
        store.insert_arrow("events", table, token=f"bench/0/{next(tokens)}")

    benchmark.pedantic(insert, rounds=5, iterations=1, warmup_rounds=1)
    assert store.query("SELECT count() FROM events").rows[0][0] == 600_000
