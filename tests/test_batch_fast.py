"""The one-pass batch judge (eventpipe.ingest.batch.fast_batch) accepts exactly what the long way accepts, with the same result.

fast_batch never refuses: it settles a body or hands it to ``decode`` + ``judge_batch``. So the property is
one-sided and exact: whenever it settles a body, the long way accepts that body too and returns the same
ParsedBatch. It is checked on arbitrary bytes, arbitrary JSON and Segment-shaped batches, and on the cases
a one-pass reader could get wrong (invalid UTF-8, control characters and numbers beyond a double deep in the
fields it checks without building, escaped and repeated keys, booleans and objects where an id belongs, nesting).
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.ingest.batch import EVENT_TYPES, MAX_BATCH_BYTES, decode, fast_batch, judge_batch, parse_batch
from eventpipe.ingest.errors import Rejected

LIMIT = 1 << 20
IDS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "u", "a-1", "0"])
    | st.lists(st.integers(0, 3), max_size=2)  # the long way keys a partition by str() of whatever is truthy
    | st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=2)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(EVENT_TYPES)) | values},
    optional={
        "userId": IDS,
        "anonymousId": IDS,
        "previousId": IDS,
        "groupId": IDS,
        "writeKey": values | st.text(),
        "event": st.text(max_size=5) | values,
        "properties": values,
        "context": values,
        "messageId": IDS,
    },
)
batches = st.fixed_dictionaries(
    {"batch": st.lists(events, max_size=6) | values},
    optional={"writeKey": values | st.text(min_size=1, max_size=10), "sentAt": values, "context": values},
)


def _long_way(body: bytes, max_event_bytes: int = 32 * 1024, max_batch_bytes: int = MAX_BATCH_BYTES):
    try:
        return judge_batch(decode(body, LIMIT), body, max_event_bytes, 2500, max_batch_bytes)
    except Rejected:
        return None


def _agree(body: bytes, max_event_bytes: int = 32 * 1024, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
    fast = fast_batch(body, max_event_bytes, 2500, max_batch_bytes)
    if fast is not None:
        assert _long_way(body, max_event_bytes, max_batch_bytes) == fast, body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_segment_shaped_batches(doc):
    _agree(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    _agree(json.dumps(doc, separators=(",", ":")).encode())


# numbers as clients may write them, which orjson re-encodes longer or shorter (1e5 -> 100000.0, -0 -> 0)
NUMBER_TEXTS = ("1e5", "1E2", "0.1e1", "-0", "1.50", "100000000000000000000", "-1e-7", "5")
sized_values = st.recursive(
    st.sampled_from([f"@{i}" for i in range(len(NUMBER_TEXTS))]) | scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=30,
)
valid_batches = st.fixed_dictionaries(
    {
        "batch": st.lists(
            st.fixed_dictionaries(
                {"type": st.just("track"), "event": st.just("e"), "anonymousId": st.text(min_size=1, max_size=4)},
                optional={"properties": st.dictionaries(st.text(max_size=4), sized_values, max_size=5)},
            ),
            min_size=1,
            max_size=5,
        )
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_batches, st.integers(40, 400), st.booleans())
def test_event_sizes_against_a_small_limit(doc, max_event_bytes, indent):
    """With a limit this small most bodies exceed it, so the long way sizes every event by re-encoding it: the
    one pass must bound each event's re-encoded size from its text (numbers such as 1e5 re-encode longer)."""
    body = json.dumps(doc, indent=1 if indent else None).encode()
    for i, text in enumerate(NUMBER_TEXTS):
        body = body.replace(f'"@{i}"'.encode(), text.encode())
    _agree(body, max_event_bytes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_batches, st.none() | sized_values, st.integers(20, 2000))
def test_a_batch_context_against_a_small_limit(doc, context, max_batch_bytes):
    """A batch context is merged into every event downstream: all its copies must fit the batch limit, which the
    one pass bounds from the context's text (contract.envelope_problem measures it re-encoded)."""
    body = json.dumps({**doc, "context": context}).encode()
    for i, text in enumerate(NUMBER_TEXTS):
        body = body.replace(f'"@{i}"'.encode(), text.encode())
    _agree(body, 32 * 1024, max_batch_bytes)


def test_a_batch_context_is_settled_in_one_pass_unless_its_copies_may_not_fit():
    events = [{"type": "track", "event": "e", "anonymousId": "a"}] * 10
    for context in ({"library": {"name": "analytics-go", "version": "3.1.0"}}, {}, [], "x", 5):
        body = orjson.dumps({"batch": events, "context": context})
        assert fast_batch(body) is not None and fast_batch(body) == _long_way(body), context
    big = orjson.dumps({"batch": events, "context": {"pad": "x" * 60_000}})
    assert fast_batch(big) is None and _long_way(big) is None  # 10 copies of 60 KB: context_too_large
    twice = b'{"batch":' + orjson.dumps(events) + b',"context":{"pad":"' + b"x" * 60_000 + b'"},"context":{}}'
    _agree(twice)  # the last one counts, as in a Python dict
    assert fast_batch(twice) is not None


def _event(i: int, **extra) -> dict:
    return {"type": "track", "event": "Viewed", "anonymousId": f"a{i % 7}", "properties": {"i": i, **extra}}


def test_a_large_batch_is_settled_in_one_pass():
    body = orjson.dumps({"batch": [_event(i, pad="x" * 400, price=9.5) for i in range(100)]})
    assert len(body) > 32 * 1024
    fast = fast_batch(body)
    assert fast is not None and fast == _long_way(body) and fast.events == 100


def test_an_event_that_re_encodes_past_the_limit_goes_the_long_way_and_is_refused():
    grows = _event(0)
    body = orjson.dumps({"batch": [grows] + [_event(i, pad="x" * 400) for i in range(1, 60)]})
    body = body.replace(b'"i":0', b'"i":0,"n":[' + b",".join([b"1e5"] * 5000) + b"]", 1)  # 20 KB, 45 KB re-encoded
    assert len(body) > 32 * 1024 and fast_batch(body) is None
    with pytest.raises(Rejected) as refused:
        parse_batch(body, LIMIT)
    assert refused.value.code == "event_too_large"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes(body):
    _agree(body)


GOOD = '{"type":"track","event":"e","anonymousId":"a"%s}'


@pytest.mark.parametrize(
    "extra",
    [
        ',"p":"\xff"',
        ',"p":1e400',
        ',"p":' + "1" * 400,
        ',"p":"\\ud800"',
        ',"p":NaN',
        ',"p":01',
        ',"p":"a\x01b"',
        ',"p":{"q":[1,"\xff"]}',
        ',"p":{"q":[1,2.]}',
        ',"p":{"q":"a\x01b"}',
        ',"p":{"q":1,}',
        ',"p":[' + "1e5," * 20 + "-0.0]",
        ',"p":' + "[" * 200 + "]" * 200,
        ',"type":"nope"',
        ',"\\u0074ype":"nope"',
        ',"anonymousId":""',
        ',"anonymousId":true',
        ',"anonymousId":{"a":1}',
        ',"anonymousId":{"a":1},"userId":"u"',
        ',"anonymousId":[],"userId":"u"',
        ',"anonymousId":[0],"userId":"u"',
        ',"userId":false',
        ',"event":""',
        ',"event":7',
        ',"writeKey":5',
        ',"writeKey":"in-event"',
        ',"p":' + "[" * 300 + "]" * 300,
    ],
)
def test_edge_cases_settle_as_the_long_way_would(extra):
    """Invalid JSON deep inside an event (where the one pass checks without building) is refused as orjson
    refuses it; an odd id or writeKey is routed as the long way routes it, or left to the long way."""
    body = (
        ('{"batch":[' + GOOD % extra + "]}").encode("utf-8", "surrogateescape")
        if "\xff" not in extra
        else b'{"batch":[' + (GOOD % extra).encode("latin-1") + b"]}"
    )
    _agree(body)
    if _long_way(body) is None:
        assert fast_batch(body) is None


def test_odd_but_valid_bodies_are_settled_in_one_pass():
    """The one pass settles more than the common body: it is not a filter that hands most bodies on."""
    many_keys = ',"p":{' + ",".join(f'"k{i}":{i}' for i in range(100)) + "}"  # built objects stop at 64 keys
    for extra in (
        ',"writeKey":5',
        ',"p":' + "1" * 30,
        ',"p":{"q":[1e5,-0.0,"\\u00e9",{"r":null}]}',
        ',"userId":{}',
        many_keys,
        ',"anonymousId":0,"userId":0',  # `anonymousId or userId` is 0: its text, not None's
    ):
        body = ('{"batch":[' + GOOD % extra + "]}").encode()
        assert fast_batch(body) is not None and fast_batch(body) == _long_way(body), extra


def test_the_common_body_is_settled_in_one_pass_with_the_long_ways_result():
    body = orjson.dumps(
        {
            "batch": [
                {"type": "track", "event": "e", "anonymousId": "a", "userId": "u", "properties": {"x": [1, 2.5, None]}},
                {"type": "identify", "userId": 42},
                {"type": "alias", "userId": "u", "previousId": 7},
                {"type": "group", "anonymousId": 0, "groupId": "g"},
            ],
            "writeKey": "k" * 12,
            "sentAt": "2026-01-01T00:00:00Z",
        }
    )
    fast = fast_batch(body)
    assert fast is not None and fast == parse_batch(body, LIMIT)
    assert (fast.events, fast.partition_key, fast.write_key) == (4, b"a", "k" * 12)
    first_key = orjson.dumps({"batch": [{"type": "page", "userId": 1.5, "writeKey": "in-event"}]})
    assert fast_batch(first_key).write_key == "in-event" and fast_batch(first_key).partition_key == b"1.5"
    for big in (2**64, -(2**63) - 1):  # orjson reads these as floats: the partition key's text is the long way's
        body = orjson.dumps({"batch": [{"type": "identify", "userId": 0}]}).replace(b"0", str(big).encode())
        assert (
            fast_batch(body) == parse_batch(body, LIMIT) and fast_batch(body).partition_key == str(float(big)).encode()
        )
