"""Issue 12: the native engine (``eventpipe.processors.rows`` over ``eventpipe._explode``) against its specification.

``tests.invariants.check_explode`` compares the native output with ``eventpipe.processors.rows_reference`` for every
input, so every hypothesis test of tests/test_judging_properties.py is already differential. Those inputs
are hostile: most of their requests end on the reference's path (rejects, odd timestamps). This file makes
sure the *native* path itself is what gets compared: plausible traffic of every shape the engine judges on
its own (ids of every type, coercions, envelopes, skewed and zoned timestamps, registered schemas, floats,
escapes, repeated keys, whitespace), asserting both that nothing of it was left to Python and that the
rows are identical.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from eventpipe.processors import rows
from eventpipe.processors.rows import Rules
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from tests.invariants import check_explode
from tests.test_judging_properties import CALL_TYPES, RECEIVED, json_values, texts

HOUR = 3_600_000


def deferred() -> float:
    return rows.DEFERRED._value.get()


def iso(ms: int, offset_minutes: int, style: int) -> str:
    """``ms`` in one of the ISO forms SDKs send (the forms the engine parses itself)."""
    from datetime import datetime, timedelta, timezone

    tz = timezone(timedelta(minutes=offset_minutes))
    at = datetime.fromtimestamp(ms / 1000, tz)
    base = at.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ["", f".{at.microsecond // 1000:03d}", f".{at.microsecond:06d}"][style % 3]
    zone = (
        "Z"
        if offset_minutes == 0 and style < 3
        else ("" if style == 5 else at.strftime("%z")[:3] + ":" + at.strftime("%z")[3:])
    )
    return base + frac + zone


times = st.builds(
    iso,
    st.integers(RECEIVED - 12 * HOUR, RECEIVED + 12 * HOUR),
    st.sampled_from([0, 60, -300, 330, 840, -720]),
    st.integers(0, 5),
)
ids = st.one_of(
    st.text(min_size=1, max_size=12), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False)
)
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10)
odd = st.one_of(
    st.none(), st.integers(-(2**63), 2**64 - 1), st.booleans(), st.lists(st.integers(-9, 9), max_size=2), ascii_text
)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def context(draw):
    ctx = {}
    for key, value in (
        ("app", st.fixed_dictionaries({}, optional={"name": texts, "version": odd, "build": odd})),
        (
            "os",
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(["iOS", "Android", "iPadOS", "Mac OS X", "", "Windows"]) | ascii_text,
                    "version": odd,
                },
            ),
        ),
        ("device", st.fixed_dictionaries({}, optional={"model": texts, "manufacturer": odd})),
        (
            "library",
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(["analytics.js", "analytics-ios", "analytics-python"]) | ascii_text,
                    "version": odd,
                },
            ),
        ),
        ("page", st.fixed_dictionaries({}, optional={"path": odd, "url": texts, "referrer": odd})),
        ("ip", st.sampled_from(["198.51.100.23", "2001:db8::1", "::ffff:203.0.113.9", "bad"])),
        ("userAgent", st.sampled_from(["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "curl/8.0", ""])),
        ("locale", odd),
        ("timezone", odd),
    ):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue
        ctx[key] = draw(value if choice < 5 else odd)  # an odd type where an object belongs: coerced
    ctx.update(draw(st.dictionaries(texts, json_values, max_size=2)))
    return ctx


@st.composite
def event(draw):
    kind = draw(st.sampled_from(CALL_TYPES))
    ev = {"type": kind, draw(st.sampled_from(["userId", "anonymousId"])): draw(ids)}
    if draw(st.booleans()):
        ev["messageId"] = draw(st.one_of(ids, st.just("")))
    if kind == "track":
        name = draw(st.sampled_from(["Signed Up", "Product Viewed", "Order Completed", 'é\n"\\']))
        ev["event"] = name
        props = draw(st.dictionaries(texts, json_values, max_size=3))
        if name == "Product Viewed":  # valid by its schema: natively judged
            props.update(product_id=draw(texts), price=draw(st.floats(0, 1e6)))
        elif name == "Order Completed":
            props.update(
                order_id=draw(st.text(min_size=1)),
                revenue=draw(st.floats(0, 1e14) | st.integers(0, 2**64 - 1)),
                currency=draw(st.sampled_from(["EUR", "USD"])),
            )
        else:
            props["revenue" if draw(st.booleans()) else "value"] = draw(json_values)
        ev["properties"] = props
    if kind == "alias":
        ev["previousId"] = draw(ids)
    if kind == "group":
        ev["groupId"] = draw(ids)
    if kind in ("page", "screen"):
        ev["name"] = draw(odd)
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        if draw(st.integers(0, 2)):
            ev[key] = draw(st.one_of(times, times, st.integers(-(2**63), 2**63), st.none(), st.just("")))
    if draw(st.booleans()):
        ev["context"] = draw(context())
    if draw(st.booleans()):
        ev["traits"] = draw(st.dictionaries(texts, json_values, max_size=3))
    return ev


@st.composite
def body(draw) -> bytes:
    doc = {"batch": draw(st.lists(event(), min_size=1, max_size=4))}
    if draw(st.booleans()):
        doc["sentAt"] = draw(times)
    if draw(st.integers(0, 3)) == 0:
        doc["context"] = draw(st.one_of(context(), odd))
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if draw(st.booleans()) else 0)
    if draw(st.integers(0, 4)) == 0:  # a repeated key: the last value wins, at the first one's place
        text = b'{"batch":[],' + text[1:]
    if draw(st.integers(0, 4)) == 0:  # an escaped string the client wrote differently
        text = text.replace(b'"type"', b'"\\u0074ype"', 1)
    return text


@st.composite
def plausible_records(draw):
    out = []
    for offset in range(draw(st.integers(1, 3))):
        requests = [
            AcceptedRequest(
                draw(st.sampled_from(["acme", "beta"])),
                RECEIVED + draw(st.integers(-HOUR, HOUR)),
                draw(st.sampled_from(["10.1.2.3", "2001:db8:1:2::7", ""])),
                draw(st.sampled_from(["analytics-python/2.3.2", ""])),
                draw(body()),
                draw(st.booleans()),
            )  # overflow: a hot key's request, flagged
            for _ in range(draw(st.integers(1, 3)))
        ]
        out.append((draw(st.integers(0, 11)), offset, encode_bundle(requests)))
    return out


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    plausible_records(),
    st.sampled_from(
        [
            Rules(),
            Rules(ip_mode="keep"),
            Rules(schema_modes={"*": "off"}),
            Rules(ip_mode="drop", schema_modes={"acme": "enforce", "*": "warn"}),
        ]
    ),
)
def test_plausible_traffic_is_judged_natively_and_identically(records, rules):
    before = deferred()
    out = check_explode(records, rules, replay=False)  # identical to the reference (tests.invariants)
    assert deferred() == before, "the engine left plausible traffic to the Python reference"
    assert out.rejected.num_rows == 0


def test_demo_traffic_is_judged_natively_and_identically():
    import random

    from eventpipe.demo import Device, make_batch

    rng = random.Random(3)
    fleet = [Device.new(rng) for _ in range(50)]
    records = [
        (
            p,
            o,
            encode_bundle(
                [
                    AcceptedRequest("demo", RECEIVED, "203.0.113.7", "ua", make_batch(rng, rng.choice(fleet), 10))
                    for _ in range(6)
                ]
            ),
        )
        for o, p in enumerate(range(12))
    ]
    before = deferred()
    out = check_explode(records, Rules(), replay=False)
    assert deferred() == before
    assert out.events.num_rows == 12 * 6 * 10


@settings(deadline=None, max_examples=100)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**80), 2**80), min_size=1, max_size=50)
)
def test_numbers_are_written_as_orjson_writes_them(numbers):
    """Floats in every notation, integers beyond 64 bits (read as floats, as orjson does)."""
    import json

    text = json.dumps(
        {"batch": [{"type": "track", "event": "n", "anonymousId": "a", "messageId": "m", "properties": {"n": numbers}}]}
    ).encode()
    out = check_explode([(0, 0, encode_bundle([AcceptedRequest("p", RECEIVED, "", "", text)]))], Rules(), replay=False)
    want = orjson.dumps(orjson.loads(text)["batch"][0]["properties"]).decode()
    assert out.events.column("properties")[0].as_py() == want


def _ties() -> list[float]:
    """Floats exactly halfway between their two shortest decimal forms (2**k + 0.125 …): the form written is
    the one whose last digit is even, as Python's repr and orjson write it (87960930222080.125 -> ...080.12)."""
    from decimal import Decimal

    found = []
    for k in range(1, 60):
        for base in (2**k, 3 * 2**k, 5 * 2**k):
            for frac in (0.125, 0.25, 0.375, 0.75):
                v = float(base) + frac
                shortest = repr(v).replace(".", "").lstrip("0").rstrip("0")
                exact = str(Decimal(v)).replace(".", "").lstrip("0").rstrip("0")
                if len(exact) == len(shortest) + 1 and exact.endswith("5"):
                    found += [v, -v]
    return found


def test_floats_halfway_between_two_shortest_forms_are_written_as_orjson_writes_them():
    ties = _ties()
    assert len(ties) >= 20
    text = orjson.dumps(
        {"batch": [{"type": "track", "event": "n", "anonymousId": "a", "messageId": "m", "properties": {"n": ties}}]}
    )
    out = check_explode([(0, 0, encode_bundle([AcceptedRequest("p", RECEIVED, "", "", text)]))], Rules(), replay=False)
    assert out.events.column("properties")[0].as_py() == orjson.dumps({"n": ties}).decode()


@pytest.mark.parametrize(
    "text",
    [
        b"\xef\xbb\xbf{}",
        b'{"batch":[NaN]}',
        b'{"batch":[1,]}',
        b'{"batch":[01]}',
        b'{"batch":["\\ud800"]}',
        b'{"batch":["a\x01"]}',
        b'{"batch":[1e400]}',
        b'{"batch":["\xff"]}',
        b'{"batch":[1.]}',
        b'{"batch":[.5]}',
        b'{"batch":[-]}',
        b'{"batch":[]} x',
        b'{"batch":[{"type":"track","event":"e","anonymousId":"a"}]}\x00',
        b'{"batch":[{"type":"track","event":"e","anonymousId":"a","properties":{"x":'
        + b"[" * 200
        + b"]" * 200
        + b"}}]}",
    ],
)
def test_bodies_orjson_refuses_are_refused_alike(text):
    check_explode([(0, 0, encode_bundle([AcceptedRequest("p", RECEIVED, "", "", text)]))], Rules(), replay=False)
