"""The writer's exactly-once pieces on a real chDB store: tokens, the ledger, and messageId dedup."""

from __future__ import annotations

import asyncio

import orjson

from eventpipe.store import Store, StoreUnavailable
from eventpipe.processors.writer import EventWriter, contiguous_ranges, message_key
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from tests.conftest import make_settings

NOW = 1_767_225_600_000


def _record(partition: int, offset: int, *message_ids: str, project: str = "acme") -> tuple[int, int, bytes]:
    body = orjson.dumps(
        {"batch": [{"type": "track", "event": "e", "anonymousId": "d", "messageId": m} for m in message_ids]}
    )
    return partition, offset, encode_bundle([AcceptedRequest(project, NOW + offset, "", "", body)])


def _stored(store: Store) -> list[tuple]:
    return store.query("SELECT project, message_id, kafka_offset FROM events ORDER BY kafka_offset, message_id").rows


def test_contiguous_ranges():
    recs = [(0, o, b"") for o in (3, 4, 5, 9, 10)]
    assert [[r[1] for r in rng] for rng in contiguous_ranges(recs)] == [[3, 4, 5], [9, 10]]


def test_retried_message_ids_are_dropped_and_replays_are_idempotent(tmp_path):
    store = Store(make_settings(tmp_path))
    store.migrate()
    writer = EventWriter(store, "events.raw")
    try:
        writer.write([_record(1, 0, "m1", "m1")])  # a repeat inside one range
        writer.write([_record(1, 5, "m1", "m2"), _record(1, 6, "m3", project="beta")])  # a client retry of m1
        writer.write([_record(2, 0, "m9")])
        expected = [("acme", "m1", 0), ("acme", "m2", 5), ("beta", "m3", 6), ("acme", "m9", 0)]
        assert sorted(_stored(store), key=lambda r: (r[2], r[1])) == sorted(expected, key=lambda r: (r[2], r[1]))
        # a replay of the second range (same offsets, same token) changes nothing, rollups included
        writer.write([_record(1, 5, "m1", "m2"), _record(1, 6, "m3", project="beta")])
        assert len(_stored(store)) == 4
        assert store.query("SELECT sum(events) FROM events_1m").rows == [(4,)]
        # the same messageId in another project is another event
        writer.write([_record(1, 7, "m1", project="beta")])
        assert len(_stored(store)) == 5
        ledger = store.query(
            "SELECT partition, first_offset, last_offset FROM ingest_batches "
            "ORDER BY partition, first_offset, recorded_at"
        ).rows
        assert sorted(set(ledger)) == [(1, 0, 0), (1, 5, 6), (1, 7, 7), (2, 0, 0)]
        assert writer.recorded_batches({1: 6}) == [("events.raw/1/5-6", [(1, 5, 6)]), ("events.raw/1/7-7", [(1, 7, 7)])]
    finally:
        store.close()


def test_a_batch_is_one_token_and_recovery_replays_all_its_partitions(tmp_path):
    """A micro-batch over two partitions is one insert; taking over either partition replays the whole batch
    with the same token (nothing doubles), and a retry stored earlier in the partition is still dropped."""
    store = Store(make_settings(tmp_path))
    store.migrate()
    writer = EventWriter(store, "events.raw")
    log = {}
    try:
        first = [_record(3, 0, "a1")]
        batch = [_record(4, 8, "b1"), _record(3, 1, "a2", "a1"), _record(3, 2, "a3"), _record(4, 9, "b2")]
        for r in first + batch:
            log[(r[0], r[1])] = r
        writer.write(first)
        stored, rejected = writer.write(batch)
        assert stored == 4 and rejected == []  # a1 at offset 1 repeats offset 0's: dropped
        assert writer.recorded_batches({4: 9}) == [("events.raw/3/1-2,4/8-9", [(3, 1, 2), (4, 8, 9)])]

        fetched = []

        async def fetch(ranges):
            fetched.append(ranges)
            return [
                log[(p, o)] for p, first_offset, last_offset in ranges for o in range(first_offset, last_offset + 1)
            ]

        async def run_blocking(fn, *args):
            return fn(*args)

        writer.reset()
        replayed, rejected = asyncio.run(writer.recover({4: 9}, fetch, run_blocking))
        assert fetched == [[(3, 1, 2), (4, 8, 9)]] and replayed == 4 and rejected == []
        assert writer.recovered == {4: 9}
        assert sorted(r[1] for r in _stored(store)) == ["a1", "a2", "a3", "b1", "b2"]
        assert store.query("SELECT sum(events) FROM events_1m").rows == [(5,)]
        assert store.query("SELECT count() FROM message_keys").rows == [(5,)]
    finally:
        store.close()


def test_partitions_of_one_batch_recover_together_and_each_batch_is_replayed_once(tmp_path):
    """A batch spans many partitions. Partitions first seen in one micro-batch recover with one ledger query and
    one Kafka read, and each batch is inserted once; a partition of an already replayed batch seen later
    inserts nothing again, but is still skipped up to the batch's end."""
    store = Store(make_settings(tmp_path))
    store.migrate()
    writer = EventWriter(store, "events.raw")
    try:
        one = [_record(p, 10 + i, f"m{p}-{i}") for p in (0, 1, 2) for i in range(2)]
        two = [_record(0, 12, "m0-2"), _record(2, 12, "m2-2")]
        log = {(r[0], r[1]): r for r in one + two}
        writer.write(one)
        writer.write(two)
        fetched, inserted = [], []

        async def fetch(ranges):
            fetched.append(ranges)
            return [log[(p, o)] for p, first, last in ranges for o in range(first, last + 1)]

        async def run_blocking(fn, *args):
            if fn == writer._insert:
                inserted.append(args[1])
            return fn(*args)

        writer.reset()
        asyncio.run(writer.recover({0: 10, 1: 10}, fetch, run_blocking))
        assert inserted == ["events.raw/0/10-11,1/10-11,2/10-11", "events.raw/0/12-12,2/12-12"]
        assert len(fetched) == 1 and writer.recovered == {0: 12, 1: 11}
        asyncio.run(writer.recover({2: 11}, fetch, run_blocking))  # partition 2 first seen in a later micro-batch
        assert len(inserted) == 2 and len(fetched) == 1 and writer.recovered == {0: 12, 1: 11, 2: 12}
        assert len(_stored(store)) == 8
        three = [_record(2, 12, "m2-2"), _record(2, 13, "m2-3")]
        log[(2, 13)] = three[1]
        assert writer.write(three) == (1, [])  # offset 12 is skipped: recovery wrote it
        writer.reset()  # a new assignment: everything is replayed again (and dropped by token)
        asyncio.run(writer.recover({0: 0, 1: 0, 2: 0}, fetch, run_blocking))
        assert len(inserted) == 5 and len(_stored(store)) == 9
        assert store.query("SELECT sum(events) FROM events_1m").rows == [(9,)]
    finally:
        store.close()


def test_ranges_recorded_before_batches_replay_with_their_old_token(tmp_path):
    store = Store(make_settings(tmp_path))
    store.migrate()
    try:
        store.insert_rows(
            "ingest_batches",
            [["events.raw", 2, 10, 12, 3]],
            ["topic", "partition", "first_offset", "last_offset", "records"],
        )
        assert EventWriter(store, "events.raw").recorded_batches({2: 0}) == [("events.raw/2/10-12", [(2, 10, 12)])]
    finally:
        store.close()


def test_message_key_matches_clickhouse(tmp_path):
    store = Store(make_settings(tmp_path))
    try:
        sql = "SELECT reinterpretAsUInt64(substring(MD5(concat({p:String}, '\\0', {m:String})), 1, 8))"
        for project, mid in [("acme", "m1"), ("b", "ünïcode-✓"), ("", "")]:
            assert store.query(sql, parameters={"p": project, "m": mid}).rows == [(message_key(project, mid),)]
    finally:
        store.close()


def test_a_large_micro_batch_is_written_in_byte_bounded_parts(tmp_path):
    """faust bounds a micro-batch by records; the writer bounds what it explodes at once by bytes. Each part
    is its own ledger batch, so a replay re-inserts exactly the part it belongs to."""
    store = Store(make_settings(tmp_path))
    store.migrate()
    records = [_record(p, o, f"m{p}-{o}") for p in (0, 1) for o in range(3)]
    size = len(records[0][2])
    writer = EventWriter(store, "events.raw", max_batch_bytes=2 * size)
    try:
        stored, _ = writer.write(list(reversed(records)))  # any order: parts follow (partition, offset)
        assert stored == 6 and len(_stored(store)) == 6
        tokens = sorted({b for (b,) in store.query("SELECT batch FROM ingest_batches").rows})
        assert tokens == ["events.raw/0/0-1", "events.raw/0/2-2,1/0-0", "events.raw/1/1-2"]
        assert writer.recorded_batches({1: 0}) == [
            ("events.raw/0/2-2,1/0-0", [(0, 2, 2), (1, 0, 0)]),
            ("events.raw/1/1-2", [(1, 1, 2)]),
        ]
    finally:
        store.close()


def test_failpoint_after_lets_the_insert_through_and_reports_failure(tmp_path):
    """The drill for a lost acknowledgement: the retry of a batch that is already stored changes nothing."""
    settings = make_settings(tmp_path)
    store = Store(settings)
    store.migrate()
    writer = EventWriter(store, "events.raw")
    try:
        settings.store_failpoint.write_text("after")
        try:
            writer.write([_record(5, 0, "a", "b")])
        except StoreUnavailable:
            pass
        else:
            raise AssertionError("the failpoint did not report the write as failed")
        assert len(_stored(store)) == 2  # it went through
        settings.store_failpoint.unlink()
        writer.write([_record(5, 0, "a", "b")])  # the processor's retry: same batch, same token
        assert len(_stored(store)) == 2
        settings.store_failpoint.touch()  # empty: fail before writing
        try:
            writer.write([_record(5, 1, "c")])
        except StoreUnavailable:
            pass
        assert len(_stored(store)) == 2
    finally:
        store.close()


def test_a_batch_of_fifty_thousand_ids_is_looked_up_and_its_retries_dropped(tmp_path):
    """The messageId lookup of a large micro-batch (as the bench's 60k rows): its key list is ~1 MB of text,
    far past ClickHouse's max_query_size, so it must travel as a parameter's value; retries still go."""
    store = Store(make_settings(tmp_path))
    store.migrate()
    writer = EventWriter(store, "events.raw")
    try:
        ids = [f"m{i}" for i in range(50_000)]
        writer.write([_record(3, o, *ids[o * 500 : (o + 1) * 500]) for o in range(100)])
        writer.write([_record(3, 100, "m7", "m49999", "new")])  # two client retries and one new event
        assert store.query("SELECT count(), countIf(message_id = 'new') FROM events").rows == [(50_001, 1)]
    finally:
        store.close()
