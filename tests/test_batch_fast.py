"""The one-pass batch judge (eventpipe.ingest.batch.fast_batch) accepts exactly what the long way accepts, with the same result.

fast_batch never refuses: it settles a body or hands it to ``decode`` + ``judge_batch``. So the property is
one-sided and exact: whenever it settles a body, the long way accepts that body too and returns the same
ParsedBatch. It is checked on arbitrary bytes, arbitrary JSON and Segment-shaped batches, and on the cases
where msgspec alone would differ from orjson (invalid UTF-8 and numbers beyond a double in skipped fields,
escaped and repeated keys, booleans where an id belongs, nesting).
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.ingest.batch import EVENT_TYPES, fast_batch, parse_batch
from eventpipe.ingest.errors import Rejected

LIMIT = 1 << 20
IDS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "u", "a-1", "0"])
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


def _long_way(body: bytes):
    try:
        return parse_batch(body, LIMIT, 32 * 1024, 2500)
    except Rejected:
        return None


def _agree(body: bytes) -> None:
    fast = fast_batch(body, 32 * 1024, 2500)
    if fast is not None:
        assert _long_way(body) == fast, body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_segment_shaped_batches(doc):
    _agree(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    _agree(json.dumps(doc, separators=(",", ":")).encode())


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
        ',"type":"nope"',
        ',"\\u0074ype":"nope"',
        ',"anonymousId":""',
        ',"anonymousId":true',
        ',"userId":false',
        ',"event":""',
        ',"event":7',
        ',"writeKey":5',
        ',"p":' + "[" * 300 + "]" * 300,
    ],
)
def test_what_msgspec_alone_would_get_wrong_goes_the_long_way(extra):
    body = (
        ('{"batch":[' + GOOD % extra + "]}").encode("utf-8", "surrogateescape")
        if "\xff" not in extra
        else b'{"batch":[' + (GOOD % extra).encode("latin-1") + b"]}"
    )
    assert fast_batch(body) is None
    _agree(body)


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
        assert fast_batch(body) is None and parse_batch(body, LIMIT).partition_key == str(float(big)).encode()
