"""Real SDK requests, replayed through the collector with a memory sink (PostHog capture's shape).

tests/fixtures/sdk_requests.jsonl holds the requests segment-analytics-python (plain and gzip),
Segment's Node and Go clients and RudderStack's Node SDK really sent, recorded once with
tests/fixtures/record_sdk_requests.py: their headers, batching, envelopes and compression as they are,
not as a test author imagines them. Each goes through the collector's own RSGI handler (routing, body
reading, gunzip, judging, keys, redaction) into a MemorySink, and the test checks the answer and exactly
what reached the sink. Granian's own HTTP parsing is covered by the tests against the running server.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from pathlib import Path

import orjson
import pytest

from eventpipe.ingest.app import Collector
from eventpipe.ingest.memory_sink import MemorySink
from eventpipe.ingest.partitioning import partition_key
from eventpipe.settings import Settings

CORPUS = Path(__file__).parent / "fixtures" / "sdk_requests.jsonl"
KEY = "test-key-acme"
REQUESTS = [json.loads(line) for line in CORPUS.read_text().splitlines()]
CLIENTS = sorted({r["client"] for r in REQUESTS})


class _Scope:
    """What the handler reads of granian's RSGI scope."""

    def __init__(self, entry: dict):
        self.path, self.method, self.headers = entry["path"], entry["method"], entry["headers"]
        self.client, self.proto = "198.51.100.7:50123", "http"


class _Proto:
    """What the handler uses of granian's RSGI protocol: the body, and one answer."""

    def __init__(self, body: bytes):
        self.body = body
        self.answer: tuple[int, list, bytes] | None = None

    async def __call__(self) -> bytes:
        return self.body

    def __aiter__(self):  # a refused body is read as a stream and dropped (eventpipe.ingest.body.Body.discard)
        return self._chunks()

    async def _chunks(self):
        yield self.body

    def response_bytes(self, status, headers, body):
        self.answer = (status, headers, body)

    def response_empty(self, status, headers):
        self.answer = (status, headers, b"")


def sent_body(entry: dict) -> bytes:
    return base64.b64decode(entry["body_base64"]) if "body_base64" in entry else entry["body"].encode()


def json_sent(entry: dict) -> bytes:
    body = sent_body(entry)
    return gzip.decompress(body) if entry["headers"].get("content-encoding") == "gzip" else body


def replay(write_keys: str) -> tuple[list[tuple[int, list, bytes]], MemorySink]:
    sink = MemorySink()

    async def run():
        collector = Collector(Settings(write_keys=write_keys), sink=sink)
        await collector.start()
        answers = []
        for entry in REQUESTS:
            proto = _Proto(sent_body(entry))
            await collector.__rsgi__(_Scope(entry), proto)
            answers.append(proto.answer)
        await collector.stop()
        return answers

    return asyncio.run(run()), sink


def test_the_corpus_covers_every_client_and_both_encodings():
    assert CLIENTS == ["rudderstack-node", "segment-go", "segment-node", "segment-python", "segment-python-gzip"]
    assert {r["headers"].get("content-encoding") for r in REQUESTS} == {None, "gzip"}


def test_every_recorded_request_is_accepted_and_reaches_the_sink_as_sent_less_the_key():
    answers, sink = replay(f"{KEY}=acme")
    assert [(status, orjson.loads(body)) for status, _, body in answers] == [(200, {"success": True})] * len(REQUESTS)
    assert sink.started and sink.stopped
    assert len(sink.requests) == len(REQUESTS)  # one submit per request, in order
    for entry, (key, request) in zip(REQUESTS, sink.requests):
        sent = json_sent(entry)
        # stored as sent (gunzipped), only the write key emptied wherever the body carried it
        assert orjson.loads(request.body) == orjson.loads(sent.replace(f'"{KEY}"'.encode(), b'""'))
        assert KEY.encode() not in request.body
        assert (request.project, request.ip, request.user_agent) == (
            "acme",
            "198.51.100.7",
            entry["headers"]["user-agent"],
        )
        first = orjson.loads(sent)["batch"][0]
        assert key == partition_key(first.get("anonymousId"), first.get("userId"))


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_delivers_every_call_type_and_its_retry(client):
    _, sink = replay(f"{KEY}=acme")
    mine = [
        e
        for (_, request), entry in zip(sink.requests, REQUESTS)
        if entry["client"] == client
        for e in orjson.loads(request.body)["batch"]
    ]
    assert sorted({e["type"] for e in mine}) == ["alias", "group", "identify", "page", "screen", "track"]
    ids = [e["messageId"] for e in mine]
    # the calls' own messageIds: each once, the retried track twice (dedup is the processor's job)
    assert {
        name: ids.count(f"{client}-{name}") for name in ("identify", "track", "page", "screen", "group", "alias")
    } == {"identify": 1, "track": 2, "page": 1, "screen": 1, "group": 1, "alias": 1}
    generated = [i for i in ids if not i.startswith(f"{client}-")]
    assert len(generated) == 1 and generated[0]  # the call without a messageId got one from its client


def test_an_unknown_key_refuses_every_recorded_request_and_nothing_reaches_the_sink():
    answers, sink = replay("some-other-key=acme")
    assert {(status, orjson.loads(body)["code"]) for status, _, body in answers} == {(401, "invalid_write_key")}
    assert sink.requests == []
