"""Segment HTTP Tracking API conformance: the spec's own examples, per call type, land in ClickHouse.

The payloads below are the examples of Segment's HTTP API page, unchanged but
for three things: the write key (``YOUR_WRITE_KEY`` becomes a test key, sent
in the body as in the spec), the user ids (made unique per run so rows can be
found) and the 2012 timestamps, re-dated to now because the processors
dead-letter events older than ``EVENTPIPE_MAX_EVENT_AGE_DAYS`` (a test below
sends them as dated and finds them dead-lettered, not lost). Every example must be answered ``200 {"success": true}`` and become a
row of ``events`` with the right call type, name and ids. Also here: the
other ways SDKs talk to the API (HTTP Basic, analytics.js's one-letter paths,
CORS, gzip) and an unmodified Segment client library from PyPI.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import datetime, timezone

import orjson
import pytest

from eventpipe.ingest.partitioning import partition_for
from eventpipe.schemas.bundle import decode_bundle
from eventpipe.schemas.topics import topic_specs
from tests.conftest import query, run, wait_for
from tests.http import post
from tests.kafka import read_to_end

KEY = "test-key-acme"
OK = {"success": True}


SPEC_TS = "2012-12-02T00:30:08.276Z"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spec_examples(uid: str, ts: str) -> dict[str, dict]:
    """Segment's example payload of each single-call endpoint (HTTP API docs), for user ``uid`` at time ``ts``."""
    return {
        "identify": {
            "userId": uid,
            "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons", "industry": "Technology"},
            "context": {"ip": "24.5.68.47"},
            "timestamp": ts,
            "writeKey": KEY,
        },
        "track": {
            "userId": uid,
            "event": "Item Purchased",
            "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
            "context": {"ip": "24.5.68.47"},
            "timestamp": ts,
            "writeKey": KEY,
        },
        "page": {"userId": uid, "name": "Tracking HTTP API", "timestamp": ts, "writeKey": KEY},
        "screen": {"userId": uid, "name": "Tracking HTTP API", "timestamp": ts, "writeKey": KEY},
        "group": {
            "userId": uid,
            "groupId": "8e9df332ac",
            "traits": {"name": "Initech", "industry": "Technology", "employees": 420},
            "timestamp": ts,
            "writeKey": KEY,
        },
        "alias": {"previousId": "39239-239239-239239-23923", "userId": uid, "timestamp": ts, "writeKey": KEY},
    }


def batch_example(uid1: str, uid2: str, ts: str) -> dict:
    """The spec's /v1/batch example (its last two timestamps are not valid ISO-8601 in the spec either)."""
    return {
        "batch": [
            {
                "type": "identify",
                "userId": uid1,
                "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
                "timestamp": ts,
            },
            {
                "type": "track",
                "userId": uid1,
                "event": "Song Played",
                "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
                "timestamp": ts,
            },
            {
                "type": "identify",
                "userId": uid2,
                "traits": {"email": "cindy@example.com", "name": "Cindy Gonzalez", "age": 23},
                "timestamp": "2015-2-02T00:30:08.276Z",
            },
            {
                "type": "track",
                "userId": uid2,
                "event": "Song Played",
                "properties": {"name": "Get Right", "artist": "Jennifer Lopez"},
                "timestamp": "2015-2-02T00:30:12.984Z",
            },
        ],
        "writeKey": KEY,
        "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
    }


def rows(stack, uid: str, n: int, columns: str = "type, event, name, user_id") -> list[list]:
    sql = f"SELECT {columns} FROM events WHERE user_id = '{uid}' ORDER BY type, event"
    found = wait_for(lambda: len(query(stack, sql)) >= n, timeout=30)
    assert found, f"{uid}: {query(stack, sql)}"
    return query(stack, sql)


def unique(prefix: str = "019mr8mf4r") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("call", ["identify", "track", "page", "screen", "group", "alias"])
def test_each_single_call_example_of_the_spec_lands(stack, call):
    uid = unique()
    status, _, doc = post(f"{stack.collector_url}/v1/{call}", orjson.dumps(spec_examples(uid, now_iso())[call]))
    assert (status, doc) == (200, OK)
    ((kind, event, name, user_id),) = rows(stack, uid, 1)
    assert (kind, user_id) == (call, uid)
    if call == "track":
        assert event == "Item Purchased"
        props, revenue = query(stack, f"SELECT properties, toFloat64(revenue) FROM events WHERE user_id = '{uid}'")[0]
        assert (json.loads(props)["name"], revenue) == ("Leap to Conclusions Mat", 14.99)
    if call in ("page", "screen"):
        assert name == "Tracking HTTP API"
    if call in ("identify", "group"):
        traits = json.loads(query(stack, f"SELECT traits FROM events WHERE user_id = '{uid}'")[0][0])
        assert traits["industry"] == "Technology"


def test_spec_examples_as_dated_are_accepted_and_dead_lettered_not_lost(stack):
    """Dated 2012, the examples are older than the processors keep: 200 here, then counted as rejected."""
    uids = {call: unique() for call in ("identify", "track", "page", "screen", "group", "alias")}
    for call, uid in uids.items():
        status, _, doc = post(f"{stack.collector_url}/v1/{call}", orjson.dumps(spec_examples(uid, SPEC_TS)[call]))
        assert (status, doc) == (200, OK)
    for uid in uids.values():
        assert wait_for(lambda: _stored(stack, uid) + _rejected(stack, uid) == 1, timeout=30), uid


def _stored(stack, uid: str) -> int:
    return query(stack, f"SELECT count() FROM events WHERE user_id = '{uid}'")[0][0]


def test_the_batch_example_of_the_spec_lands(stack):
    uid1, uid2 = unique(), unique("971mj8mk7p")
    status, _, doc = post(stack.collector_url + "/v1/batch", orjson.dumps(batch_example(uid1, uid2, now_iso())))
    assert (status, doc) == (200, OK)
    found = rows(stack, uid1, 2)
    assert [r[0] for r in found] == ["identify", "track"] and found[1][1] == "Song Played"
    # The spec's "2015-2-02…" timestamps are malformed: the processor may keep those events (dated at receipt)
    # or dead-letter them, but must not lose them; the collector's part is the 200 above.
    assert wait_for(lambda: _stored(stack, uid2) + _rejected(stack, uid2) == 2, timeout=30)


def _rejected(stack, uid: str) -> int:
    try:
        return query(stack, f"SELECT count() FROM events_rejected WHERE position(payload, '{uid}') > 0")[0][0]
    except Exception:  # noqa: BLE001 - no events_rejected table (yet): nothing was rejected there
        return 0


def test_selecting_destinations_example_is_accepted_with_basic_auth(stack):
    uid = unique()
    example = {
        "userId": uid,
        "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons", "industry": "Technology"},
        "context": {"ip": "24.5.68.47"},
        "timestamp": now_iso(),
        "integrations": {"All": False, "Mixpanel": True, "Kissmetrics": True, "Google Analytics": False},
    }
    status, _, doc = post(stack.collector_url + "/v1/identify", orjson.dumps(example), KEY)
    assert (status, doc) == (200, OK)
    assert rows(stack, uid, 1)[0][0] == "identify"


def test_basic_auth_without_colon_and_path_type_wins(stack):
    """The spec allows 'key' without the trailing colon; a single call's type is its path's."""
    uid = unique()
    header = "Basic " + base64.b64encode(KEY.encode()).decode()
    status, _, doc = post(
        stack.collector_url + "/v1/track",
        orjson.dumps({"type": "identify", "userId": uid, "event": "Typed By Path"}),
        Authorization=header,
    )
    assert (status, doc) == (200, OK)
    assert rows(stack, uid, 1)[0][:2] == ["track", "Typed By Path"]


def test_analytics_js_paths_text_plain_and_cors(stack):
    """analytics.js posts each call to /v1/<first letter> as text/plain with the key in the body, cross-origin."""
    uid = unique()
    origin = "https://shop.example"
    for path, body in [
        ("t", {"type": "track", "event": "Viewed", "userId": uid}),
        ("p", {"type": "page", "name": "Home", "userId": uid}),
        ("i", {"type": "identify", "userId": uid, "traits": {"plan": "pro"}}),
    ]:
        status, headers, doc = post(
            f"{stack.collector_url}/v1/{path}",
            orjson.dumps({**body, "writeKey": KEY}),
            Content_Type="text/plain",
            Origin=origin,
        )
        assert (status, doc) == (200, OK)
        assert headers["access-control-allow-origin"] == "*"
    batch = {
        "writeKey": KEY,
        "sentAt": "2026-01-01T00:00:00.000Z",
        "batch": [{"type": "screen", "name": "Cart", "userId": uid, "writeKey": KEY}],
    }
    status, headers, doc = post(
        f"{stack.collector_url}/v1/b", orjson.dumps(batch), Content_Type="text/plain", Origin=origin
    )
    assert (status, doc) == (200, OK)
    assert [r[0] for r in rows(stack, uid, 4)] == ["identify", "page", "screen", "track"]
    # errors carry CORS headers too, so the page's script can read them
    status, headers, doc = post(f"{stack.collector_url}/v1/t", b"{}", Origin=origin)
    assert (status, headers["access-control-allow-origin"]) == (401, "*")


def test_cors_preflight(stack):
    import urllib.request

    req = urllib.request.Request(
        stack.collector_url + "/v1/batch",
        method="OPTIONS",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, content-encoding",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
        h = {k.lower(): v for k, v in resp.headers.items()}
    assert h["access-control-allow-origin"] == "*"
    assert "POST" in h["access-control-allow-methods"]
    assert "Authorization" in h["access-control-allow-headers"]
    assert "Retry-After" in h["access-control-expose-headers"]
    assert int(h["access-control-max-age"]) > 0


def test_single_call_with_gzip_and_key_in_both_places(stack):
    uid = unique()
    body = gzip.compress(orjson.dumps({"userId": uid, "event": "Zipped", "writeKey": KEY}))
    status, _, doc = post(stack.collector_url + "/v1/track", body, KEY, Content_Encoding="gzip")
    assert (status, doc) == (200, OK)
    assert rows(stack, uid, 1)[0][:2] == ["track", "Zipped"]


def test_body_key_must_be_known_and_basic_wins(stack):
    uid = unique()
    event = {"userId": uid, "event": "Keyed"}
    status, _, doc = post(stack.collector_url + "/v1/track", orjson.dumps({**event, "writeKey": "nope"}))
    assert (status, doc["code"]) == (401, "invalid_write_key")
    status, _, doc = post(stack.collector_url + "/v1/track", orjson.dumps({**event, "writeKey": 12345}))
    assert (status, doc["code"]) == (401, "missing_write_key")
    # HTTP Basic decides the project when both are given
    status, _, _ = post(
        stack.collector_url + "/v1/track", orjson.dumps({**event, "writeKey": "test-key-beta"}), "test-key-acme"
    )
    assert status == 200
    assert rows(stack, uid, 1, "project") == [["acme"]]


def test_stored_records_keep_the_batch_shape_and_no_write_key(stack):
    """Single calls are stored as one-event batches; a body's write key never reaches Kafka."""
    anon = unique("anon")
    status, _, _ = post(
        stack.collector_url + "/v1/track",
        orjson.dumps({"anonymousId": anon, "event": "Shape", "sentAt": "2026-01-01T00:00:00.000Z", "writeKey": KEY}),
    )
    assert status == 200
    batch = {"writeKey": KEY, "batch": [{"type": "track", "event": "Shape2", "anonymousId": anon, "writeKey": KEY}]}
    status, _, _ = post(stack.collector_url + "/v1/batch", orjson.dumps(batch), KEY)
    assert status == 200
    partition = partition_for(anon.encode(), topic_specs()[0].partitions)
    records = run(read_to_end(stack.broker.bootstrap, stack.settings.topic_raw, [partition], last=50))
    bodies = [orjson.loads(r.body) for rec in records for r in decode_bundle(rec) if anon.encode() in r.body]
    assert bodies == [
        {"batch": [{"anonymousId": anon, "event": "Shape", "type": "track"}], "sentAt": "2026-01-01T00:00:00.000Z"},
        {"writeKey": "", "batch": [{"type": "track", "event": "Shape2", "anonymousId": anon, "writeKey": ""}]},
    ]


def test_wrong_method_and_trailing_slash(stack):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(stack.collector_url + "/v1/track", timeout=10)
    assert exc.value.code == 405 and exc.value.headers["allow"] == "POST, OPTIONS"
    uid = unique()
    status, _, _ = post(stack.collector_url + "/v1/track/", orjson.dumps({"userId": uid, "event": "Slash"}), KEY)
    assert status == 200


def test_segment_python_library_sends_unchanged(stack):
    """segment-analytics-python from PyPI, pointed at the collector, delivers every call type (gzip, batches)."""
    from segment.analytics import Client

    errors = []
    uid = unique("py")
    client = Client(
        KEY,
        host=stack.collector_url,
        gzip=True,
        max_retries=2,
        upload_size=4,
        on_error=lambda exc, batch: errors.append(exc),
    )
    client.identify(uid, {"email": "py@example.com"})
    for i in range(5):
        client.track(uid, "Library Event", {"i": i})
    client.page(uid, "Docs", "Python", {"url": "https://example.com/docs"})
    client.screen(uid, "Settings", "Profile")
    client.group(uid, "group-1", {"name": "Initech"})
    client.alias("old-" + uid, uid)
    client.flush()
    client.join()
    assert errors == []
    found = rows(stack, uid, 10)
    assert sorted(r[0] for r in found) == ["alias", "group", "identify", "page", "screen"] + ["track"] * 5
    agents = query(stack, f"SELECT DISTINCT user_agent FROM events WHERE user_id = '{uid}'")
    assert [a[0].split("/")[0] for a in agents] == ["analytics-python"]
