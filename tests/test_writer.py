"""The writer's exactly-once pieces on a real chDB store: tokens, the ledger, and messageId dedup."""

from __future__ import annotations

import orjson

from eventpipe.store import Store
from processors.writer import EventWriter, contiguous_ranges
from schemas.bundle import AcceptedRequest, encode_bundle
from tests.conftest import make_settings

NOW = 1_767_225_600_000


def _record(partition: int, offset: int, *message_ids: str, project: str = "acme") -> tuple[int, int, bytes]:
    body = orjson.dumps({"batch": [{"type": "track", "event": "e", "anonymousId": "d", "messageId": m}
                                   for m in message_ids]})
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
        writer.write([_record(1, 0, "m1", "m1")])                                  # a repeat inside one range
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
        ledger = store.query("SELECT partition, first_offset, last_offset FROM ingest_batches "
                             "ORDER BY partition, first_offset, recorded_at").rows
        assert sorted(set(ledger)) == [(1, 0, 0), (1, 5, 6), (1, 7, 7), (2, 0, 0)]
        assert writer.recorded_ranges(1, 6) == [(5, 6), (7, 7)]
    finally:
        store.close()
