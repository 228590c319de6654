"""Issue 11, "judging is total": for any records, ``explode`` classifies every event exactly once.

Hypothesis generates Kafka records the way the collector writes them (bundles of accepted requests whose
bodies are JSON that orjson wrote) with untrusted JSON of any type in every Segment field, odd timestamps
around the receive time and the configured bounds, wrong-typed envelopes, odd request metadata, and a few
records that are no bundle at all. ``tests.invariants`` states the property; the store test inserts the
output into a real chDB store with the project's migrations, which is the judge of "insertable".

The known reproducers (one per bug found so far) run as their own parametrized cases, so a fix shows up
case by case.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, note as _note, settings, strategies as st
from hypothesis.errors import InvalidArgument

from eventpipe.processors.rows import Rules, explode
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from tests.invariants import check_explode, explain

DAY = 86_400_000
MIN_MS, MAX_MS = -2_208_988_800_000, 10_413_791_999_999  # DateTime64's 1900-01-01 .. 2299-12-31
RECEIVED = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")

# --- arbitrary JSON ------------------------------------------------------------------------------------
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ufeff",
    "\u202e",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "é",
    "e\u0301",
    "\n",
    "\t",
    "\\",
    '"',
    "null",
    "true",
    "NaN",
    "Infinity",
    "-0",
    "1e400",
    "0x10",
    "None",
    "[]",
    "{}",
    "' OR 1=1 --",
    "%s%n",
    "${jndi:ldap://x}",
    "a" * 300,
]
texts = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=12), st.sampled_from(ODD_TEXT))
ints = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]),
)
# orjson reads integers beyond 64 bits as floats, so huge "ints" arrive as these
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            -0.0,
            0.1,
            1e-300,
            5e-324,
            1e13,
            9_999_999_999_999.99995,
            1e14,
            -1e14,
            1e308,
            -1e308,
            1.8446744073709552e19,
            -9.223372036854776e18,
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=10,
)


def fields(spec: dict) -> st.SearchStrategy[dict]:
    """An object with each of ``spec``'s keys absent (shrinks to this), plausible, or any JSON value."""

    @st.composite
    def build(draw):
        out = {}
        for key, plausible in spec.items():
            choice = draw(st.integers(0, 19))
            if choice < 10:
                continue
            out[key] = draw(plausible if choice < 18 else json_values)
        if draw(st.integers(0, 9)) == 0:
            out.update(draw(st.dictionaries(texts, json_values, max_size=2)))
        return out

    return build()


def anything_or(strategy) -> st.SearchStrategy:
    return st.one_of(strategy, strategy, strategy, json_values)


# --- timestamps ----------------------------------------------------------------------------------------
ODD_TIMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01",
    "9999-12-31T23:59:59.999999-23:59",
    "9999-12-31",
    "1899-12-31T23:59:59Z",
    "1900-01-01T00:00:00Z",
    "1900-01-01T00:00:00+01:00",
    "2299-12-31T23:59:59.999Z",
    "2300-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "2026-01-01",
    "2026-W01-1",
    "20260101T000000Z",
    "2026-01-01T00:00:00.123456789Z",
    "2026-01-01T00:00:00+0100",
    "2026-01-01 00:00:00",
    "2026-01-01T24:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30",
    "1767225600000",
    "1767225600",
    "-1",
    "now",
    "",
    "T",
    "Z",
    " 2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00+01:00:30.5",
]
OFFSETS = st.one_of(
    st.just(timezone.utc), st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439))
)


def iso(ms: int, tz: timezone, style: int) -> str | None:
    try:
        moment = datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(tz)
    except (OverflowError, ValueError, OSError):
        return None
    if style == 0:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == 1:
        return moment.isoformat()
    if style == 2:
        return moment.replace(tzinfo=None).isoformat(sep=" ")
    return moment.date().isoformat()


def timestamps(received: int, rules: Rules) -> st.SearchStrategy:
    """Times as SDKs send them: ISO strings near the receive time and the rules' bounds, far away, odd, not strings."""
    edges = [
        0,
        1,
        -1,
        -rules.max_age_ms,
        -rules.max_age_ms - 1,
        -rules.max_age_ms + 1,
        rules.max_future_ms,
        rules.max_future_ms + 1,
        -DAY,
        DAY,
        2 * DAY,
        -366 * DAY,
        400 * 365 * DAY,
        -400 * 365 * DAY,
    ]
    delta = st.one_of(
        st.sampled_from(edges), st.integers(-200 * DAY, 200 * DAY), st.integers(-10_000 * 365 * DAY, 10_000 * 365 * DAY)
    )
    near = st.builds(lambda d, tz, style: iso(received + d, tz, style), delta, OFFSETS, st.integers(0, 3))
    return st.one_of(
        near.filter(bool),
        near.filter(bool),
        st.sampled_from(ODD_TIMES),
        st.datetimes(timezones=OFFSETS).map(datetime.isoformat),
        st.integers(-(2**63), 2**63).map(str),
        ints,
        floats,
        json_values,
    )


# --- Segment calls -------------------------------------------------------------------------------------
ids = st.one_of(st.uuids().map(str), texts, ints, floats)
event_names = st.one_of(st.sampled_from(["Order Completed", "Product Viewed", "Signed Up", "Page Viewed", ""]), texts)
ip_strings = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(
        [
            "",
            "127.0.0.1",
            "::1",
            "fe80::1%eth0",
            "::ffff:203.0.113.9",
            "2001:db8::/32",
            "1.2.3.4/24",
            "999.1.1.1",
            "1.2.3",
            "localhost",
            "::",
            "0.0.0.0",
            " 1.2.3.4",
            "1.2.3.4, 5.6.7.8",
        ]
    ),
    texts,
)
numbers = st.one_of(ints, floats, st.sampled_from(["12.5", "", "1e3"]))
properties = fields(
    {
        "revenue": numbers,
        "value": numbers,
        "price": numbers,
        "order_id": texts,
        "product_id": texts,
        "currency": st.sampled_from(["EUR", "USD", "usd", "", "EURO"]),
        "path": texts,
        "url": texts,
        "referrer": texts,
        "title": texts,
        "search": texts,
        "category": texts,
    }
)
traits = fields(
    {
        "email": texts,
        "name": texts,
        "plan": texts,
        "age": numbers,
        "createdAt": texts,
        "address": fields({"city": texts, "country": texts}),
    }
)
context = fields(
    {
        "app": fields({"name": texts, "version": texts, "build": ids, "namespace": texts}),
        "os": fields(
            {
                "name": st.one_of(
                    st.sampled_from(["iOS", "iPadOS", "iPhone OS", "Android", "android", "Mac OS X", "Windows", ""]),
                    texts,
                ),
                "version": texts,
            }
        ),
        "device": fields({"manufacturer": texts, "model": texts, "id": ids, "advertisingId": texts, "type": texts}),
        "library": fields(
            {
                "name": st.one_of(
                    st.sampled_from(
                        [
                            "analytics.js",
                            "analytics-python",
                            "analytics-node",
                            "@segment/analytics-node",
                            "analytics-go",
                            "analytics-ios",
                            "analytics-android",
                        ]
                    ),
                    texts,
                ),
                "version": texts,
            }
        ),
        "page": fields({"path": texts, "url": texts, "referrer": texts, "title": texts, "search": texts}),
        "ip": ip_strings,
        "locale": texts,
        "timezone": texts,
        "userAgent": texts,
        "campaign": fields({"name": texts, "source": texts, "medium": texts, "term": texts, "content": texts}),
        "network": fields({"wifi": st.booleans(), "carrier": texts, "cellular": st.booleans()}),
        "screen": fields({"width": numbers, "height": numbers, "density": numbers}),
        "traits": traits,
        "groupId": ids,
        "active": st.booleans(),
    }
)
integrations = st.dictionaries(texts, st.one_of(st.booleans(), json_values), max_size=3)


def mostly(plausible) -> st.SearchStrategy:
    """A field the collector requires: mostly present and plausible (shrinks to that), else absent or any JSON."""
    return st.integers(0, 19).flatmap(lambda c: plausible if c < 18 else st.just(ABSENT) if c == 18 else json_values)


ABSENT = object()


@st.composite
def segment_event(draw, received: int, rules: Rules):
    """A Segment call: what its type requires mostly there (so judging goes past the required checks), and
    every other field absent, plausible or any JSON value."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)  # not an object at all
    when = timestamps(received, rules)
    required = {
        "type": mostly(st.sampled_from(CALL_TYPES)),
        "event": mostly(event_names.filter(bool)),
        "anonymousId": mostly(ids),
        "previousId": mostly(ids),
        "groupId": mostly(ids),
    }
    event = {key: value for key, value in ((k, draw(v)) for k, v in required.items()) if value is not ABSENT}
    if draw(st.booleans()):
        event["userId"] = draw(ids)
    if draw(st.integers(0, 3)):
        event["timestamp"] = draw(when)
    event.update(
        draw(
            fields(
                {
                    "name": texts,
                    "userId": ids,
                    "messageId": ids,
                    "sentAt": when,
                    "originalTimestamp": when,
                    "receivedAt": when,
                    "properties": properties,
                    "traits": traits,
                    "context": context,
                    "integrations": integrations,
                    "writeKey": texts,
                    "channel": texts,
                    "version": ints,
                }
            )
        )
    )
    return event


@st.composite
def request_body(draw, received: int, rules: Rules) -> bytes:
    shape = draw(st.integers(0, 19))
    if shape == 0:
        doc = draw(json_values)  # wrong-typed envelope: any JSON, also an object without a batch array
    elif shape == 1:
        doc = {"batch": draw(st.one_of(json_values, st.dictionaries(texts, json_values, max_size=3)))}
    else:
        doc = {"batch": draw(st.lists(segment_event(received, rules), max_size=6))}
        doc.update(
            draw(
                fields(
                    {
                        "sentAt": timestamps(received, rules),
                        "context": context,
                        "integrations": integrations,
                        "writeKey": texts,
                        "messageId": ids,
                    }
                )
            )
        )
    return orjson.dumps(doc)


def rules_strategy() -> st.SearchStrategy[Rules]:
    return st.builds(
        lambda age, future, modes, ip: Rules(max_age_ms=age, max_future_ms=future, schema_modes=modes, ip_mode=ip),
        st.sampled_from([60 * DAY, 30 * DAY, DAY, 0]),
        st.sampled_from([DAY, 3_600_000, 0]),
        st.one_of(
            st.sampled_from([{"*": "warn"}, {"*": "off"}, {"*": "enforce"}]),
            st.builds(lambda p: {p: "enforce", "*": "warn"}, texts),
        ),
        st.sampled_from(["truncate", "keep", "drop"]),
    )


projects = st.one_of(st.sampled_from(["acme", "beta"]), texts)
user_agents = st.one_of(
    st.sampled_from(
        [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
            "analytics-python/2.3.2",
            "analytics-go (version: 3.3.0)",
            "",
        ]
    ),
    texts,
)
# the collector stamps its own clock: any realistic one, 2000 .. 2100
realistic_received = st.one_of(st.just(RECEIVED), st.integers(946_684_800_000, 4_102_444_800_000))


@st.composite
def request(draw, rules: Rules, received=realistic_received) -> AcceptedRequest:
    at = draw(received)
    return AcceptedRequest(draw(projects), at, draw(ip_strings), draw(user_agents), draw(request_body(at, rules)))


@st.composite
def junk_record(draw, rules: Rules) -> bytes:
    """Bytes that are no bundle: random, a cut bundle, the wrong version or structure."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        whole = encode_bundle([draw(request(rules))])
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == 2:
        return msgspec.msgpack.encode([draw(st.integers(-5, 5).filter(lambda v: v != 1)), []])
    if kind == 3:
        return msgspec.msgpack.encode(draw(json_values))
    return msgspec.msgpack.encode([1, [["p", RECEIVED, "ip", "ua", draw(json_values)]]])  # body not bytes


@st.composite
def batches(draw, rules: Rules, received=realistic_received, junk=True):
    """[(partition, offset, record bytes)] with distinct (partition, offset)."""
    keys = draw(
        st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 2**63 - 1)), min_size=1, max_size=3, unique=True)
    )
    records = []
    for partition, offset in keys:
        if junk and draw(st.integers(0, 9)) == 0:
            value = draw(junk_record(rules))
        else:
            value = encode_bundle(draw(st.lists(request(rules, received), min_size=1, max_size=3)))
        records.append((partition, offset, value))
    return records


@st.composite
def batch_and_rules(draw, received=realistic_received, junk=True):
    rules = draw(rules_strategy())
    return draw(batches(rules, received, junk)), rules


def note(text: str) -> None:
    """Shown with a failing hypothesis example; a plain parametrized case has no notes."""
    try:
        _note(text)
    except InvalidArgument:
        pass


def _one(event, received: int = RECEIVED, ip: str = "203.0.113.7", sent_at="2026-01-01T00:00:00.000Z"):
    doc = {"batch": [event]} if sent_at is None else {"batch": [event], "sentAt": sent_at}
    return [(0, 1, encode_bundle([AcceptedRequest("acme", received, ip, "ua", orjson.dumps(doc))]))]


# --- the property --------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch_and_rules())
@example(([(0, 0, b"\x93not a bundle")], Rules()))
@example((_one({"type": "track", "event": "e", "anonymousId": "a"}), Rules()))
def test_explode_classifies_every_event_once(case):
    records, rules = case
    note(explain(records))
    check_explode(records, rules)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(CALL_TYPES),
    st.sampled_from(
        [
            "type",
            "event",
            "name",
            "userId",
            "anonymousId",
            "messageId",
            "previousId",
            "groupId",
            "timestamp",
            "sentAt",
            "originalTimestamp",
            "properties",
            "traits",
            "context",
            "integrations",
        ]
    ),
    st.one_of(json_values, timestamps(RECEIVED, Rules())),
    st.data(),
)
def test_one_hostile_field_in_an_otherwise_valid_call(kind, name, value, data):
    """A call the collector accepts (type, ids, event name as its checks require) with one field replaced."""
    event = {
        "type": kind,
        "anonymousId": "anon-1",
        "userId": "user-1",
        "messageId": "m-1",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "event": "Signed Up",
        "previousId": "p-1",
        "groupId": "g-1",
    }
    event[name] = value
    note(f"event: {orjson.dumps(event).decode()}")
    check_explode(_one(event), Rules(schema_modes={"*": data.draw(st.sampled_from(["off", "warn", "enforce"]))}))


@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch_and_rules(
        received=st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.integers(MIN_MS - 2 * DAY, MIN_MS + 2 * DAY),
            st.integers(MAX_MS - 2 * DAY, MAX_MS + 2 * DAY),
            st.sampled_from([0, -1, MIN_MS, MIN_MS - 1, MAX_MS, MAX_MS + 1, 2**63 - 1, -(2**63), 2**64 - 1]),
        ),
        junk=False,
    )
)
def test_records_with_forged_receive_times(case):
    """A receive time the collector never writes (a corrupt or forged record) still may not fail the batch."""
    records, rules = case
    note(explain(records))
    check_explode(records, rules)


# --- the bugs found so far, one case each ----------------------------------------------------------------
# Found against rows.py as of 716994b (most fixed by the rewrite on contract.py), then against its rewrite.
BASE = {"type": "track", "event": "e", "anonymousId": "a", "messageId": "m1"}
HOUR = 3_600_000
KNOWN = {
    "type-list": _one({**BASE, "type": []}),
    "type-object": _one({**BASE, "type": {}}),
    "type-int": _one({**BASE, "type": 5}),
    "type-bool": _one({**BASE, "type": True}),
    "type-null": _one({**BASE, "type": None}),
    "context-library-string": _one({**BASE, "context": {"library": "analytics.js"}}),
    "context-library-list": _one({**BASE, "context": {"library": [1]}}),
    "timestamp-year-9999": _one({**BASE, "timestamp": "9999-12-31T23:59:59Z"}),
    "timestamp-two-days-ahead": _one({**BASE, "timestamp": "2026-01-03T00:00:00Z"}),
    "skew-pushes-past-2299": _one({**BASE, "timestamp": "2026-01-01T00:00:00Z"}, sent_at="1700-01-01T00:00:00Z"),
    "timestamp-and-sentAt-year-1": _one(
        {**BASE, "timestamp": "0001-01-01T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"}, sent_at=None
    ),
    "sentAt-year-1": _one(BASE, sent_at="0001-01-01T00:00:00Z"),
    "received-u64": _one(BASE, received=2**64 - 1),
    "received-min-i64": _one(BASE, received=-(2**63)),
    "received-year-2400": _one(BASE, received=13_569_465_600_000),
    # orjson reads 1024 levels but writes 254: the collector refuses such an event (too_deep), a forged
    # record can still hold one
    "forged-event-300-deep": [
        (
            0,
            1,
            encode_bundle(
                [
                    AcceptedRequest(
                        "acme",
                        RECEIVED,
                        "",
                        "",
                        b'{"batch":[{"type":"track","event":"e","anonymousId":"a","properties":{"x":'
                        + b"[" * 300
                        + b"]" * 300
                        + b"}}]}",
                    )
                ]
            ),
        )
    ],
    # the collector checks each event's depth, not the batch's envelope: its context goes into every event
    "envelope-context-300-deep": [
        (
            0,
            1,
            encode_bundle(
                [
                    AcceptedRequest(
                        "acme",
                        RECEIVED,
                        "",
                        "",
                        b'{"batch":[{"type":"track","event":"e","anonymousId":"a","messageId":"m1"}],'
                        b'"context":{"x":' + b"[" * 300 + b"]" * 300 + b"}}",
                    )
                ]
            ),
        )
    ],
    # a receive time at the edge of the range, and the skew correction carries the event past it
    "skew-below-1900": _one(
        {**BASE, "timestamp": "1900-01-01T00:00:00Z"}, received=MIN_MS + 6 * HOUR, sent_at="1900-01-01T12:00:00Z"
    ),
    "skew-beyond-2299": _one(
        {**BASE, "timestamp": "2299-12-31T20:00:00Z"}, received=MAX_MS - 4 * HOUR + 1, sent_at="2299-12-31T10:00:00Z"
    ),
}


@pytest.mark.parametrize("records", list(KNOWN.values()), ids=list(KNOWN))
def test_known_hostile_inputs(records):
    check_explode(records, Rules())


# --- into a real store ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from eventpipe.store import Store
    from tests.conftest import make_settings

    opened = Store(make_settings(tmp_path_factory.mktemp("judging-store")))
    opened.migrate()
    yield opened
    opened.close()


_tokens = iter(range(10**9))


def _count(store, sql: str) -> int:
    return int(store.query(sql).rows[0][0] or 0)


def insert_like_the_writer(store, records, rules: Rules, check: bool = True) -> None:
    """explode, then insert as ``EventWriter._insert`` does (without its retry dedup); ClickHouse judges."""
    note(explain(records))
    out = check_explode(records, rules, replay=False) if check else explode(records, rules)
    token = f"judging-properties/{next(_tokens)}"
    before = (
        _count(store, "SELECT count() FROM events"),
        _count(store, "SELECT count() FROM events_rejected"),
        _count(store, "SELECT sum(events) FROM events_1m"),
    )
    try:
        store.insert_arrow("events", out.events, token=token)
        if out.rejected.num_rows:
            store.insert_arrow("events_rejected", out.rejected, token=token)
    except Exception as exc:
        raise AssertionError(f"ClickHouse refused the insert: {exc}\nrecords: {records!r}") from exc
    after = (
        _count(store, "SELECT count() FROM events"),
        _count(store, "SELECT count() FROM events_rejected"),
        _count(store, "SELECT sum(events) FROM events_1m"),
    )
    assert after[0] - before[0] == out.events.num_rows
    assert after[1] - before[1] == out.rejected.num_rows
    assert after[2] - before[2] == out.events.num_rows  # the rollups saw every row too


@settings(
    deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(batch_and_rules())
def test_hostile_batches_insert_into_a_real_store(store, case):
    records, rules = case
    insert_like_the_writer(store, records, rules)


def test_a_null_type_does_not_fail_the_insert(store):
    insert_like_the_writer(store, KNOWN["type-null"], Rules(), check=False)


def test_a_hundred_future_days_in_one_batch_do_not_fail_the_insert(store):
    """Each day is a partition of events: a stored future range of more than 100 days fails the whole insert
    (max_partitions_per_insert_block), and the writer retries that batch forever."""
    events = [
        {**BASE, "messageId": f"m{i}", "timestamp": f"2026-{2 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z"}
        for i in range(101)
    ]
    body = orjson.dumps({"batch": events, "sentAt": "2026-01-01T00:00:00.000Z"})
    records = [(0, 1, encode_bundle([AcceptedRequest("acme", RECEIVED, "203.0.113.7", "ua", body)]))]
    insert_like_the_writer(store, records, Rules(), check=False)


def test_a_long_max_age_does_not_let_one_batch_span_too_many_days(store):
    """EVENTPIPE_MAX_EVENT_AGE_DAYS is free: with a year, late events of 101 distinct days are all valid, and
    one insert of them would break ClickHouse's max_partitions_per_insert_block (100; the events table is
    partitioned by day) unless the store lifts it."""
    events = [
        {**BASE, "messageId": f"late{i}", "timestamp": f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z"}
        for i in range(101)
    ]
    body = orjson.dumps({"batch": events, "sentAt": "2026-01-01T00:00:00.000Z"})
    records = [(0, 2, encode_bundle([AcceptedRequest("acme", RECEIVED, "203.0.113.7", "ua", body)]))]
    insert_like_the_writer(store, records, Rules(max_age_ms=365 * DAY))
