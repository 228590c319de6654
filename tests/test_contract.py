"""One contract for both sides: what the collector accepts, a processor can judge; coercions as documented."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpipe.store import Store
from eventpipe.ingest.batch import parse_batch
from eventpipe.ingest.errors import Rejected
from eventpipe.processors.dead_letters import MAX_LETTER_BYTES, dead_letter
from eventpipe.processors.rows import Rules, explode
from eventpipe.processors.writer import EventWriter
from eventpipe.schemas import contract
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from tests.conftest import make_settings

RECEIVED = 1_767_225_600_000  # 2026-01-01T00:00:00Z
REQUIRED = {"invalid_event", "no_user_anon_id", "missing_event_name", "missing_previous_id", "missing_group_id"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["", "2026-01-01T00:00:00Z", "track", "u"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(contract.EVENT_TYPES)) | json_values},
    optional={
        name: json_values | st.sampled_from(["u", "g", "e"])
        for name in (
            "userId",
            "anonymousId",
            "messageId",
            "event",
            "groupId",
            "previousId",
            "properties",
            "traits",
            "context",
            "timestamp",
            "name",
        )
    },
)


def _explode(*evs, ip: str = "203.0.113.77"):
    body = orjson.dumps({"batch": list(evs)})
    return explode([(0, 5, encode_bundle([AcceptedRequest("acme", RECEIVED, ip, "ua", body)]))], Rules())


@settings(max_examples=300, deadline=None)
@given(events)
def test_what_the_collector_accepts_the_processor_never_refuses_for_a_required_field(event):
    """The collector and the processors read one definition: they cannot disagree on what is required."""
    body = orjson.dumps({"batch": [event]})
    try:
        parse_batch(body, 1 << 20)
        accepted, code = True, None
    except Rejected as rej:
        accepted, code = False, rej.code
    out = _explode(event)
    assert out.events.num_rows + out.rejected.num_rows == 1
    reasons = out.rejected.column("reason").to_pylist()
    if accepted:
        assert not set(reasons) & REQUIRED, (event, reasons)
    else:
        assert reasons == [code], (event, reasons, code)  # a record from elsewhere gets the collector's code


def test_harmless_wrong_types_in_context_are_coerced_and_flagged():
    """The shape that stalled every partition: context fields of the wrong JSON type."""
    out = _explode(
        {
            "type": "track",
            "event": "e",
            "userId": "u",
            "messageId": "m1",
            "context": {
                "library": "analytics-ruby",
                "app": {"version": 3, "build": {"n": 1}},
                "os": ["iOS"],
                "locale": True,
                "ip": 7,
                "page": "home",
            },
        },
        {"type": "page", "userId": "u", "messageId": "m2", "name": 12, "context": {"app": {"version": "1.0"}}},
    )
    assert out.rejected.num_rows == 0
    first, second = out.events.to_pylist()
    assert (first["library_name"], first["app_version"], first["app_build"], first["os_name"]) == ("", "3", "", "")
    assert (first["locale"], first["ip"], first["flags"]) == ("true", "203.0.113.0", [contract.COERCED])
    assert orjson.loads(first["context"])["library"] == "analytics-ruby"  # the raw context is kept as sent
    assert (second["name"], second["app_version"], second["flags"]) == ("12", "1.0", [])


def test_numbers_as_ids_are_stored_as_their_json_text():
    out = _explode({"type": "identify", "userId": 42, "anonymousId": 1.5, "messageId": 7})
    (row,) = out.events.to_pylist()
    assert (row["user_id"], row["anonymous_id"], row["message_id"]) == ("42", "1.5", "7")


def test_dates_beyond_what_clickhouse_stores_are_invalid_and_far_future_ones_are_placed_at_receipt():
    out = _explode(
        {"type": "track", "event": "e", "userId": "u", "messageId": "y1", "timestamp": "0001-01-01T00:00:00+01:00"},
        {"type": "track", "event": "e", "userId": "u", "messageId": "y9", "timestamp": "9999-12-31T23:59:59Z"},
        {"type": "track", "event": "e", "userId": "u", "messageId": "f", "timestamp": "2200-01-01T00:00:00Z"},
    )
    rows = {r["message_id"]: r for r in out.events.to_pylist()}
    assert rows["y1"]["flags"] == ["timestamp_invalid"] and rows["y9"]["flags"] == ["timestamp_invalid"]
    assert rows["f"]["flags"] == ["timestamp_in_future"]
    assert {int(r["timestamp"].timestamp() * 1000) for r in rows.values()} == {RECEIVED}
    assert rows["f"]["client_timestamp"].year == 2200  # the client's own value is kept


def test_a_backlog_spanning_many_days_is_one_insert_not_a_stall(tmp_path):
    """ClickHouse refuses an insert touching more than 100 partitions by default; events is partitioned by day."""
    store = Store(make_settings(tmp_path))
    store.migrate()
    writer = EventWriter(store, "events.raw", Rules(max_age_ms=400 * 86_400_000))
    evs = [
        {
            "type": "track",
            "event": "e",
            "userId": "u",
            "messageId": f"m{i}",
            "timestamp": f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z",
        }
        for i in range(300)
    ]
    record = (0, 0, encode_bundle([AcceptedRequest("acme", RECEIVED, "", "", orjson.dumps({"batch": evs}))]))
    assert writer.write([record])[0] == 300
    assert store.query("SELECT count(), uniqExact(toDate(timestamp)) FROM events").rows == [(300, 300)]
    store.close()


def test_a_dead_letter_always_fits_the_dead_letter_topic():
    row = dict(
        reason="undecodable_record",
        message="m",
        project="p",
        event="e" * 100_000,
        message_id="",
        received_at=0,
        kafka_topic="events.raw",
        kafka_partition=0,
        kafka_offset=1,
        request_index=0,
        event_index=0,
        payload="\u0000" * 1_000_000,
    )  # escapes to 6 MB of JSON
    letter = orjson.loads(big := dead_letter(row))
    assert len(big) <= MAX_LETTER_BYTES and letter["payload_truncated"] is True
    assert letter["payload"] == row["payload"][: len(letter["payload"])] and len(letter["payload"]) > 50_000
    small = orjson.loads(dead_letter({**row, "event": "e", "payload": "{}"}))
    assert small["payload"] == "{}" and "payload_truncated" not in small


def test_the_batch_envelope_context_merges_under_each_events_own():
    """analytics-go sends context (library, ip …) once on the batch, not in each message: Segment merges it."""
    body = orjson.dumps(
        {
            "context": {
                "library": {"name": "analytics-go", "version": "3.1.0"},
                "locale": "de-DE",
                "app": {"name": "shop", "version": "1.0"},
            },
            "batch": [
                {
                    "type": "track",
                    "event": "e",
                    "userId": "u",
                    "messageId": "a",
                    "context": {"app": {"version": "2.0"}, "locale": "fr-FR"},
                },
                {"type": "identify", "userId": "u", "messageId": "b"},
            ],
        }
    )
    out = explode([(0, 5, encode_bundle([AcceptedRequest("acme", RECEIVED, "", "", body)]))], Rules())
    first, second = out.events.to_pylist()
    assert (first["library_name"], first["library_version"]) == ("analytics-go", "3.1.0")
    assert (first["app_name"], first["app_version"], first["locale"]) == ("shop", "2.0", "fr-FR")  # the event wins
    assert orjson.loads(second["context"]) == orjson.loads(body)["context"]
    odd = orjson.dumps({"context": "go", "batch": [{"type": "identify", "userId": "u", "messageId": "c"}]})
    (row,) = explode(
        [(0, 6, encode_bundle([AcceptedRequest("acme", RECEIVED, "", "", odd)]))], Rules()
    ).events.to_pylist()
    assert (row["context"], row["flags"]) == ("{}", [contract.COERCED])


def test_absent_client_times_are_null_and_the_corrected_timestamp_is_receipt(tmp_path):
    out = _explode({"type": "track", "event": "e", "userId": "u", "messageId": "n"})
    (row,) = out.events.to_pylist()
    assert (row["client_timestamp"], row["sent_at"]) == (None, None)
    assert int(row["timestamp"].timestamp() * 1000) == RECEIVED
    store = Store(make_settings(tmp_path))
    store.migrate()
    store.insert_arrow("events", out.events)
    assert store.query(
        "SELECT client_timestamp IS NULL, sent_at IS NULL, toUnixTimestamp64Milli(timestamp) FROM events"
    ).rows == [(1, 1, RECEIVED)]
    store.close()


def test_user_agents_become_typed_columns_from_context_or_the_request():
    safari = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.2 Mobile/15E148 Safari/604.1"
    )
    chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
    body = orjson.dumps(
        {
            "batch": [
                {"type": "page", "userId": "u", "messageId": "web", "context": {"userAgent": safari}},
                {"type": "track", "event": "e", "userId": "u", "messageId": "hdr"},
                {"type": "track", "event": "e", "userId": "u", "messageId": "odd", "context": {"userAgent": ["x"]}},
            ]
        }
    )
    bot = orjson.dumps({"batch": [{"type": "page", "userId": "u", "messageId": "bot"}]})
    out = explode(
        [
            (
                0,
                5,
                encode_bundle(
                    [
                        AcceptedRequest("acme", RECEIVED, "", chrome, body),
                        AcceptedRequest("acme", RECEIVED, "", "Googlebot/2.1 (+http://www.google.com/bot.html)", bot),
                    ]
                ),
            )
        ],
        Rules(),
    )
    rows = {r["message_id"]: r for r in out.events.to_pylist()}
    ua = lambda r: (
        r["ua_browser"],
        r["ua_browser_version"],
        r["ua_os"],
        r["ua_os_version"],
        r["ua_device"],  # noqa: E731
        r["ua_is_bot"],
    )
    assert ua(rows["web"]) == ("Mobile Safari", "17.2", "iOS", "17.2", "iPhone", False)  # context.userAgent wins
    assert ua(rows["hdr"]) == ("Chrome", "120.0.0", "Windows", "10", "", False)
    assert ua(rows["odd"]) == ua(rows["hdr"]) and rows["odd"]["flags"] == [contract.COERCED]
    assert ua(rows["bot"])[0] == "Googlebot" and ua(rows["bot"])[5] is True


def test_group_and_previous_ids_are_stored_and_original_timestamp_stands_in_for_timestamp():
    out = _explode(
        {"type": "group", "userId": "u", "groupId": 42, "messageId": "g", "groupId_x": 1},
        {"type": "alias", "userId": "u", "previousId": "anon-7", "messageId": "a"},
        {"type": "track", "event": "e", "userId": "u", "messageId": "o", "originalTimestamp": "2025-12-31T23:59:00Z"},
    )
    rows = {r["message_id"]: r for r in out.events.to_pylist()}
    assert (rows["g"]["group_id"], rows["g"]["previous_id"]) == ("42", "")
    assert (rows["a"]["group_id"], rows["a"]["previous_id"]) == ("", "anon-7")
    assert int(rows["o"]["client_timestamp"].timestamp() * 1000) == RECEIVED - 60_000


def test_a_batch_context_is_bounded_on_both_sides_because_every_event_gets_a_copy():
    events = [{"type": "track", "event": "e", "userId": "u", "messageId": f"m{i}"} for i in range(100)]
    big = orjson.dumps({"context": {"blob": "x" * 6000}, "batch": events})  # 6 KB into 100 events: 600 KB
    deep = orjson.dumps({"batch": events[:1]})[:-1] + b',"context":{"x":' + b"[" * 300 + b"]" * 300 + b"}}"
    for body, status, code in ((big, 413, "context_too_large"), (deep, 400, "too_deep")):
        try:
            parse_batch(body, 1 << 20)
            raise AssertionError(f"accepted {code}")
        except Rejected as rej:
            assert (rej.status, rej.code) == (status, code)
        out = explode([(0, 5, encode_bundle([AcceptedRequest("acme", RECEIVED, "", "", body)]))], Rules())
        assert out.events.num_rows == 0 and set(out.rejected.column("reason").to_pylist()) == {code}
    small = orjson.dumps({"context": {"library": {"name": "analytics-go"}}, "batch": events})
    assert parse_batch(small, 1 << 20).events == 100
