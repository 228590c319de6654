"""Bundles → rows: field mapping and Segment's clock-skew correction, without a broker."""

from __future__ import annotations

import orjson

from eventpipe.processors.rows import bundles_to_table, parse_ms
from eventpipe.schemas.bundle import AcceptedRequest, decode_bundle, encode_bundle


def _bundle(*docs: dict, received: int = 1_000_000) -> bytes:
    return encode_bundle([AcceptedRequest("p", received, "10.1.2.3", "ua", orjson.dumps(d)) for d in docs])


def test_bundle_round_trip():
    reqs = [AcceptedRequest("p", 5, "::1", "ua", b'{"batch":[]}')]
    assert decode_bundle(encode_bundle(reqs)) == reqs


def test_parse_ms():
    assert parse_ms("1970-01-01T00:00:01.500Z") == 1500
    assert parse_ms("1970-01-01T01:00:01+01:00") == 1000
    assert parse_ms("1970-01-01T00:00:02") == 2000  # no zone: UTC
    assert parse_ms("yesterday") is None
    assert parse_ms(12345) is None


def test_skew_correction_and_fallbacks():
    doc = {
        "sentAt": "1970-01-01T00:16:50.000Z",
        "batch": [  # sentAt = 1_010_000 ms: client 10 s fast
            {"type": "track", "event": "A", "anonymousId": "x", "timestamp": "1970-01-01T00:16:45.000Z"},
            {"type": "track", "event": "B", "anonymousId": "x"},  # no timestamp: receipt time
            {
                "type": "identify",
                "userId": "u",
                "traits": {"plan": "pro"},
                "timestamp": "1970-01-01T00:16:40.000Z",
                "sentAt": "1970-01-01T00:16:40.000Z",
            },  # its own sentAt wins
        ],
    }
    table = bundles_to_table([(3, 42, _bundle(doc))]).to_pylist()
    ms = [int(r["timestamp"].timestamp() * 1000) for r in table]
    assert ms == [1_005_000 - 10_000, 1_000_000, 1_000_000]
    assert [r["event"] for r in table] == ["A", "B", "$identify"]
    assert orjson.loads(table[2]["traits"]) == {"plan": "pro"}
    assert table[0]["properties"] == "{}"
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in table] == [(3, 42)] * 3


def test_generated_message_ids_are_deterministic_per_position():
    doc = {"batch": [{"type": "track", "event": "A", "anonymousId": "x"}] * 2}
    first = bundles_to_table([(1, 7, _bundle(doc, doc))]).column("message_id").to_pylist()
    again = bundles_to_table([(1, 7, _bundle(doc, doc))]).column("message_id").to_pylist()
    assert first == again == ["gen-1-7-0-0", "gen-1-7-0-1", "gen-1-7-1-0", "gen-1-7-1-1"]
