"""The collector's pieces without a server: body judging (property-based), keys, rate limits, CORS.

The properties: whatever bytes or JSON arrive, judging a body either accepts
it or raises `Rejected` (nothing else, so nothing becomes a 5xx), and what it
accepts is a batch the processors can read: valid JSON, a ``batch`` array of
events with a known ``type``, and no write key left in it.
"""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.settings import Settings
from eventpipe.ingest.batch import EVENT_TYPES, parse_batch, parse_single
from eventpipe.ingest.body import decompress
from eventpipe.ingest.cors import Cors
from eventpipe.ingest.errors import Rejected
from eventpipe.ingest.keys import KeyRing, fingerprint, parse_pairs, projects_by_key, redact, write_key_from_basic
from eventpipe.ingest.ratelimit import TokenBucket

FIELDS = [
    "type",
    "event",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "properties",
    "writeKey",
    "batch",
    "sentAt",
    "context",
    "traits",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(sorted(EVENT_TYPES)),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(EVENT_TYPES)) | json_values},
    optional={f: json_values | st.text(min_size=1, max_size=10) for f in FIELDS if f != "type"},
)
batch_like = st.fixed_dictionaries(
    {"batch": st.lists(event_like, max_size=5) | json_values}, optional={"writeKey": json_values, "sentAt": json_values}
)


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _judge(fn, *args):
    try:
        return fn(*args)
    except Rejected as rej:
        assert 400 <= rej.status < 500 and rej.code and rej.message
        return None


def _check_accepted(parsed) -> None:
    doc = orjson.loads(parsed.body)  # what the processors will do with it
    assert isinstance(doc["batch"], list) and len(doc["batch"]) == parsed.events > 0
    for event in doc["batch"]:
        assert event["type"] in EVENT_TYPES
        assert event.get("userId") not in (None, "") or event.get("anonymousId") not in (None, "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), json_values.map(_dumps), batch_like.map(_dumps)))
def test_batch_bodies_are_accepted_or_rejected_never_crash(body):
    parsed = _judge(parse_batch, body, 4000, 1000, 10)
    if parsed is not None:
        _check_accepted(parsed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.binary(max_size=300), json_values.map(_dumps), event_like.map(_dumps)),
    st.sampled_from(sorted(EVENT_TYPES)),
)
def test_single_bodies_are_accepted_or_rejected_never_crash(body, kind):
    parsed = _judge(parse_single, body, kind, 1000)
    if parsed is not None:
        _check_accepted(parsed)
        (event,) = orjson.loads(parsed.body)["batch"]
        assert event["type"] == kind and "writeKey" not in event and "sentAt" not in event


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["gzip", "x-gzip", "br", "identity", "", None]))
def test_decompress_never_crashes(raw, encoding):
    for body in (raw, gzip.compress(raw)):
        out = _judge(decompress, body, encoding, 150)
        assert out is None or len(out) <= max(150, len(body))


def test_event_size_is_judged_per_event_and_nesting_is_bounded():
    small = {"type": "track", "event": "e", "userId": "u"}
    big = {**small, "properties": {"pad": "x" * 2000}}
    body = orjson.dumps({"batch": [small, big]})
    with pytest.raises(Rejected) as exc:
        parse_batch(body, 10_000, 1000)
    assert (exc.value.status, exc.value.code) == (413, "event_too_large") and "batch[1]" in exc.value.message
    deep = '{"batch":[{"type":"track","event":"e","userId":"u","p":' + "[" * 260 + "]" * 260 + "}]}"
    with pytest.raises(Rejected) as exc:
        parse_batch(deep.encode(), 10_000, 1000)
    assert exc.value.code == "too_deep"


def test_single_events_are_wrapped_as_batches():
    parsed = parse_single(
        b'{"userId":"u","event":"E","type":"page","sentAt":"2026-01-01T00:00:00Z","writeKey":"k"}', "track"
    )
    assert orjson.loads(parsed.body) == {
        "batch": [{"userId": "u", "event": "E", "type": "track"}],
        "sentAt": "2026-01-01T00:00:00Z",
    }
    assert (parsed.events, parsed.partition_key, parsed.write_key) == (1, b"u", "k")


# --- keys ----------------------------------------------------------------------------------------------


def test_keys_from_env_and_both_file_formats(tmp_path):
    lines = tmp_path / "keys.txt"
    lines.write_text("# rotation in progress\nnew-key-0001=acme\nold-key-0001=acme  # until June\n\npadded==beta\n")
    ring = KeyRing.from_settings(Settings(write_keys="env-key=gamma", write_keys_file=lines))
    assert {k: ring.lookup(k).project for k in ("new-key-0001", "old-key-0001", "padded=", "env-key")} == {
        "new-key-0001": "acme",
        "old-key-0001": "acme",
        "padded=": "beta",
        "env-key": "gamma",
    }
    assert ring.lookup("new-key-000") is None and ring.lookup("") is None
    assert ring.projects == ["acme", "beta", "gamma"]

    doc = tmp_path / "keys.json"
    doc.write_text(json.dumps({"acme": ["k-new", "k-old"], "slow": {"keys": ["k-slow"], "rate_limit_events_per_s": 5}}))
    ring = KeyRing.from_settings(Settings(write_keys="", write_keys_file=doc, rate_limit_events_per_s=100))
    assert ring.lookup("k-new").bucket.rate == 100 and ring.lookup("k-old").project == "acme"
    assert ring.lookup("k-slow").bucket.rate == 5
    assert KeyRing.from_settings(Settings(write_keys="a=b")).lookup("a").bucket is None  # no limit by default


@pytest.mark.parametrize(
    "text, expected",
    [
        ("abc===demo", {"abc==": "demo"}),  # the last "=" splits: base64 padding stays with the key
        ("k1=a, k2=b", {"k1": "a", "k2": "b"}),
        (" k1 = a ,,k1=a,", {"k1": "a"}),  # space dropped, empty entries skipped, a repeated pair is one key
        ("a=b=c", {"a=b": "c"}),
        ("", {}),
    ],
)
def test_write_key_pairs_split_at_the_last_equals(text, expected):
    assert parse_pairs(text, "EVENTPIPE_WRITE_KEYS") == expected
    assert projects_by_key(Settings(write_keys=text)) == expected


@pytest.mark.parametrize("text", ["s3cr3tkey", "s3cr3tkey=", "=demo", "s3cr3tkey=a,s3cr3tkey=b"])
def test_bad_write_key_pairs_say_where_never_the_key(text):
    with pytest.raises(ValueError, match="EVENTPIPE_WRITE_KEYS") as exc:
        projects_by_key(Settings(write_keys=text))
    assert "s3cr3t" not in str(exc.value)


def test_every_reader_of_the_keys_sees_the_file_too(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("file-key==acme\n")
    settings = Settings(write_keys="env-key===beta", write_keys_file=path)
    assert projects_by_key(settings) == {"env-key==": "beta", "file-key=": "acme"}
    ring = KeyRing.from_settings(settings)
    assert (ring.lookup("env-key==").project, ring.lookup("file-key=").project) == ("beta", "acme")


@pytest.mark.parametrize(
    "content",
    [
        "s3cr3t-key-1",
        "s3cr3t-key-1=acme\ns3cr3t-key-1=beta",
        '{"acme": ["s3cr3t-key-1"], "beta": ["s3cr3t-key-1"]}',
        '{"acme": "s3cr3t-key-1"}',
        '{"acme": [1]}',
        "{not json s3cr3t-key-1",
    ],
)
def test_bad_key_files_say_where_never_the_key(tmp_path, content):
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ValueError) as exc:
        KeyRing.from_settings(Settings(write_keys="", write_keys_file=path))
    assert "s3cr3t" not in str(exc.value)


def test_lookups_compare_salted_digests_not_keys():
    ring = KeyRing({"key-one": ("acme", 0.0)})
    assert all(isinstance(d, bytes) and len(d) == 16 for d in ring._by_digest)
    assert "key-one" not in repr(ring._by_digest)
    assert KeyRing({"key-one": ("acme", 0.0)})._salt != ring._salt
    assert fingerprint("key-one").startswith("sha256:") and "key-one" not in fingerprint("key-one")


def test_basic_header_forms():
    import base64

    enc = lambda s: "Basic " + base64.b64encode(s).decode()  # noqa: E731
    assert write_key_from_basic(enc(b"abc:")) == "abc"
    assert write_key_from_basic(enc(b"abc")) == "abc"  # no colon: allowed by the spec, for now
    assert write_key_from_basic(enc(b":pw")) is None
    assert write_key_from_basic(enc(b"\xff\xfe:")) is None
    assert write_key_from_basic("Bearer token") is None


def test_redact_removes_the_key_as_a_whole_json_string_only():
    key = "abcDEF123-_.~+/="
    body = json.dumps({"writeKey": key, "batch": [{"writeKey": key, "properties": {"note": f"x{key}x"}}]}).encode()
    out = json.loads(redact(body, key))
    assert out == {"writeKey": "", "batch": [{"writeKey": "", "properties": {"note": f"x{key}x"}}]}
    assert redact(b'{"writeKey":"short"}', "short") == b'{"writeKey":"short"}'  # too short to replace safely
    assert redact(b'{"a":"\\"abcdefghij"}', "abcdefghij") == b'{"a":"\\""}'  # still valid JSON
    json.loads(redact(b'{"a":"\\"abcdefghij"}', "abcdefghij"))


# --- rate limits and CORS --------------------------------------------------------------------------------


def test_token_bucket_lets_a_second_through_then_asks_to_wait():
    bucket = TokenBucket(10)
    t = bucket.stamp
    assert bucket.take(10, t) == 0  # the burst: one second's worth
    assert bucket.take(25, t + 0.01) == 0  # not empty yet: in it goes, into debt
    wait = bucket.take(1, t + 0.02)
    assert wait == 3  # ~24.8 events of debt at 10/s
    assert bucket.take(1, t + 0.02 + wait) == 0


def test_cors_any_listed_and_off():
    assert Cors("*").headers("https://a.example")[0] == ("access-control-allow-origin", "*")
    assert Cors("*").headers(None) == []
    listed = Cors("https://a.example, https://b.example/")
    assert ("access-control-allow-origin", "https://b.example") in listed.headers("https://b.example")
    assert ("vary", "Origin") in listed.headers("https://a.example")
    assert listed.headers("https://evil.example") == [] and listed.preflight("https://evil.example") == []
    assert Cors("").headers("https://a.example") == []
    assert any(k == "access-control-max-age" for k, _ in Cors("*").preflight("https://x.example"))
