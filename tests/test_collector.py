"""The collector over real HTTP against the real broker: what it accepts, refuses, and when it answers."""

from __future__ import annotations

import asyncio
import gzip
import uuid

import orjson

from eventpipe.ingest.partitioning import partition_for
from eventpipe.schemas.bundle import decode_bundle
from eventpipe.schemas.topics import topic_specs
from tests.conftest import run
from tests.http import get, post
from tests.kafka import read_to_end

KEY = "test-key-acme"


def batch(n: int = 3, anonymous_id: str | None = None, **extra) -> dict:
    anon = anonymous_id or str(uuid.uuid4())
    events = [
        {
            "type": "track",
            "event": "Clicked",
            "anonymousId": anon,
            "messageId": str(uuid.uuid4()),
            "properties": {"n": i},
        }
        for i in range(n)
    ]
    return {"batch": events, "sentAt": "2026-01-01T00:00:00.000Z", **extra}


def test_unknown_or_missing_write_key_is_401(stack):
    url = stack.collector_url + "/v1/batch"
    body = orjson.dumps(batch())
    status, _, doc = post(url, body, "not-a-key")
    assert (status, doc) == (401, {"success": False, "code": "invalid_write_key", "message": "unknown write key"})
    status, _, doc = post(url, body, None)
    assert (status, doc["code"]) == (401, "missing_write_key")
    assert "HTTP Basic username or as writeKey in the body" in doc["message"]


def test_malformed_json_is_400_and_names_the_problem(stack):
    status, _, doc = post(stack.collector_url + "/v1/batch", b'{"batch": [', KEY)
    assert status == 400
    assert doc["code"] == "malformed_json"
    assert "not valid JSON" in doc["message"]


def test_wrong_shapes_are_400(stack):
    url = stack.collector_url + "/v1/batch"
    cases = {
        b"[]": "invalid_batch",
        b'{"batch": []}': "invalid_batch",
        b'{"batch": [1]}': "invalid_event",
        b'{"batch": [{"type": "nope", "anonymousId": "a"}]}': "invalid_event",
        b'{"batch": [{"type": "track", "event": "x"}]}': "no_user_anon_id",
        b'{"batch": [{"type": "track", "anonymousId": "a"}]}': "missing_event_name",
    }
    for body, code in cases.items():
        status, _, doc = post(url, body, KEY)
        assert (status, doc["code"]) == (400, code), body


def test_oversize_and_gzip_bombs_are_413(stack):
    url = stack.collector_url + "/v1/batch"
    limit = stack.settings.max_batch_bytes
    big = orjson.dumps(batch(1, properties={"pad": "x" * limit}))
    status, _, doc = post(url, big, KEY)
    assert (status, doc["code"]) == (413, "body_too_large")
    # 10 MB of zeros gzip to ~10 KB: refused without inflating it all
    bomb = gzip.compress(b'{"batch": [' + b" " * 10_000_000 + b"]}")
    assert len(bomb) < limit
    status, _, doc = post(url, bomb, KEY, Content_Encoding="gzip")
    assert (status, doc["code"]) == (413, "body_too_large")


def test_gzip_body_is_accepted(stack):
    status, _, doc = post(
        stack.collector_url + "/v1/batch", gzip.compress(orjson.dumps(batch())), KEY, Content_Encoding="gzip"
    )
    assert (status, doc) == (200, {"success": True})


def _requests(record: bytes) -> list:
    """The requests of a bundle; none for a record that is not one (test_rejects puts a poison pill on partition 3
    of the session's topic, and a uuid lands there one time in twelve)."""
    try:
        return decode_bundle(record)
    except Exception:  # noqa: BLE001 - not a bundle: not the one this test looks for
        return []


def test_200_means_the_record_is_in_kafka(stack):
    """The moment the client has its 200, the bundle holding its body is readable on the key's partition."""
    anon = str(uuid.uuid4())
    body = orjson.dumps(batch(5, anonymous_id=anon))
    status, _, _ = post(stack.collector_url + "/v1/batch", body, KEY, User_Agent="test-agent/1")
    assert status == 200
    partition = partition_for(anon.encode(), topic_specs()[0].partitions)
    records = run(read_to_end(stack.broker.bootstrap, stack.settings.topic_raw, [partition], last=50))
    found = [r for rec in records for r in _requests(rec) if r.body == body]
    assert len(found) == 1
    assert found[0].project == "acme"
    assert found[0].user_agent == "test-agent/1"
    assert found[0].ip == "127.0.0.1"


def test_concurrent_requests_share_bundles(stack):
    """Many requests in flight at once are acked together in fewer Kafka records than requests."""
    import aiohttp

    async def burst(n: int) -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one():
                async with session.post(
                    stack.collector_url + "/v1/batch",
                    data=orjson.dumps(batch(2, "same-device")),
                    headers={"Authorization": "Basic dGVzdC1rZXktYWNtZTo="},
                ) as r:
                    return r.status

            return await asyncio.gather(*(one() for _ in range(n)))

    def sample(name: str) -> float:
        _, _, raw = get(stack.collector_url + "/metrics")
        return sum(float(line.split()[-1]) for line in raw.decode().splitlines() if line.startswith(name + " "))

    bundles_before = sample("eventpipe_collector_bundle_requests_count")
    assert run(burst(200)) == [200] * 200
    bundles = sample("eventpipe_collector_bundle_requests_count") - bundles_before
    assert 1 <= bundles < 200


def test_health_ready_metrics_and_404(stack):
    assert get(stack.collector_url + "/healthz")[0] == 200
    assert get(stack.collector_url + "/readyz")[0] == 200
    status, headers, raw = get(stack.collector_url + "/metrics")
    assert status == 200 and b"eventpipe_collector_requests_total" in raw
    assert get(stack.collector_url + "/nope")[0] == 404
