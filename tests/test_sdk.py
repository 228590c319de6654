"""The Python SDK (sdk/): its events land in ClickHouse exactly once, through the real collector.

Most tests run against the real `stack` (collector + Kafka + processor + chDB).
A small scripted HTTP server on loopback stands in for the collector only
where a real one cannot produce the case on demand: a 503 with Retry-After
followed by a 200, 429/5xx answers, a 400, a server that is not listening
yet, and observing how events are split into requests. Each behaviour is
checked for both clients (``thread`` = `Client`, ``asyncio`` = `AsyncClient`).
The code blocks of docs/sdk.md run here too.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import eventpipe_sdk
from eventpipe_sdk import AsyncClient, Client, DeliveryError
from eventpipe_sdk.batch import ENVELOPE_BYTES, Pending
from eventpipe_sdk.config import Config
from eventpipe_sdk.message import build, encode, iso_utc
from eventpipe_sdk.retry import backoff, parse_retry_after
from tests.conftest import free_port, query, wait_for

MODES = ["thread", "asyncio"]
KEY = "test-key-acme"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DOC = Path(__file__).resolve().parents[1] / "docs" / "sdk.md"
# Fast retries for tests that are about whether, not how long.
QUICK = dict(backoff_base=0.01, backoff_max=0.05)


def run_client(mode: str, host: str, send, key: str = KEY, shutdown_timeout: float | None = None, **options):
    """A client of ``mode``: ``send(client)`` queues events (and returns anything), then it is shut down.

    Returns (client, what send returned, what shutdown returned).
    """
    if mode == "thread":
        client = Client(key, host, **options)
        sent = send(client)
        return client, sent, client.shutdown(timeout=shutdown_timeout)

    async def main():
        client = AsyncClient(key, host, **options)
        sent = send(client)
        return client, sent, await client.shutdown(timeout=shutdown_timeout)

    return asyncio.run(main())


def track_n(n: int, run: str = "", **properties):
    """A ``send`` that tracks n events (with ``properties`` added) and returns their messageIds."""
    return lambda client: [
        client.track("Tested", user_id=f"user-{run}-{i}", properties={"i": i, "run": run, **properties})
        for i in range(n)
    ]


# --- the scripted stand-in --------------------------------------------------


class FakeCollector:
    """A loopback server that answers /v1/batch from a script (then 200s) and records every request."""

    def __init__(self, *answers: tuple[int, dict, bytes], port: int = 0):
        self.answers = list(answers)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                fake.requests.append(
                    {"at": time.monotonic(), "headers": dict(self.headers), "size": len(body), "doc": json.loads(body)}
                )
                status, headers, out = fake.answers.pop(0) if fake.answers else (200, {}, b'{"success":true}')
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(out))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeCollector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self, index: int) -> list[str]:
        return [e["messageId"] for e in self.requests[index]["doc"]["batch"]]


def answer(status: int, code: str = "x", retry_after: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json", **({"Retry-After": retry_after} if retry_after else {})}
    return status, headers, json.dumps({"success": False, "code": code, "message": f"scripted {status}"}).encode()


# --- units: no network --------------------------------------------------------


def test_an_event_is_encoded_once_with_its_id_time_and_library():
    happened = datetime(2025, 1, 31, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    msg = build(
        "track",
        {"event": "Signed Up", "properties": {"at": happened, "tags": ("a",)}},
        user_id=42,
        timestamp=happened,
        context={"app": {"version": "1.0"}},
    )
    assert str(uuid.UUID(msg["messageId"])) == msg["messageId"]
    assert msg["timestamp"] == "2025-01-31T12:00:00.123Z"  # converted to UTC, milliseconds
    assert msg["userId"] == "42" and "anonymousId" not in msg
    assert msg["context"] == {
        "app": {"version": "1.0"},
        "library": {"name": "eventpipe-python", "version": eventpipe_sdk.__version__},
    }
    assert json.loads(encode(msg))["properties"] == {"at": "2025-01-31T12:00:00.123Z", "tags": ["a"]}
    assert ISO_MS.match(iso_utc()) and iso_utc(datetime(2025, 1, 1)) == "2025-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda c: c.track("Signed Up"), ValueError),  # no user_id / anonymous_id
        (lambda c: c.track("", user_id="u"), ValueError),
        (lambda c: c.track("E", user_id="u", properties={"x": float("nan")}), ValueError),
        (lambda c: c.track("E", user_id="u", properties={"x": object()}), TypeError),
        (lambda c: c.track("E", user_id="u", properties=["not", "a", "dict"]), TypeError),
        (lambda c: c.track("E", user_id="u", timestamp="2025-01-01"), TypeError),
        (lambda c: c.group("", user_id="u"), ValueError),
        (lambda c: c.alias("anon", user_id=None), ValueError),
    ],
)
def test_a_wrong_call_raises_at_once_and_queues_nothing(call, error):
    client = Client(KEY, "http://127.0.0.1:9")
    with pytest.raises(error):
        call(client)
    assert client.stats.queued == 0
    assert client.shutdown(timeout=1)


def test_config_refuses_limits_that_cannot_work():
    with pytest.raises(ValueError):
        Config("k", "ftp://example.com")
    with pytest.raises(ValueError):
        Config("k", max_event_bytes=600_000)
    with pytest.raises(TypeError):
        Client("k", no_such_option=1)


def test_backoff_is_full_jitter_and_never_shorter_than_retry_after():
    config = Config("k", backoff_base=0.5, backoff_max=4.0)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        delays = [backoff(config, retry) for _ in range(300)]
        assert 0 <= min(delays) < ceiling / 4 and ceiling * 3 / 4 < max(delays) <= ceiling
    assert all(backoff(config, 0, retry_after=3.0) >= 3.0 for _ in range(100))
    assert parse_retry_after("2") == 2.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("inf") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def test_pending_takes_batches_within_the_count_and_byte_limits():
    small = Pending(Config("k", max_batch_events=100, flush_interval=10))
    for _ in range(250):
        assert small.offer(b'{"a":1}', now=0.0)
    assert small.due_in(now=0.0) == 0  # full by count: due now
    assert [len(small.take()) for _ in range(3)] == [100, 100, 50]

    big = Pending(Config("k", max_batch_bytes=100_000, max_event_bytes=30_000, flush_interval=10))
    event = b'"' + b"x" * 29_998 + b'"'
    for _ in range(7):
        big.offer(event, now=0.0)
    sizes = []
    while len(big):
        batch = big.take()
        sizes.append(ENVELOPE_BYTES + sum(map(len, batch)) + len(batch) - 1)
    assert len(sizes) == 3 and max(sizes) <= 100_000

    timed = Pending(Config("k", flush_interval=0.5, max_queue_size=2))
    assert timed.due_in(now=5.0) is None
    assert timed.offer(b"1", now=5.0) and timed.offer(b"2", now=5.2) and not timed.offer(b"3", now=5.3)
    assert timed.due_in(now=5.3) == pytest.approx(0.2) and timed.due_in(now=5.6) == 0
    timed.urge()
    assert timed.due_in(now=5.0) == 0


# --- against the scripted stand-in: cases a real collector cannot produce on demand ----


@pytest.mark.parametrize("mode", MODES)
def test_503_with_retry_after_then_200_resends_the_same_events_after_waiting(mode):
    with FakeCollector(answer(503, "kafka_unavailable", retry_after="1")) as fake:
        client, ids, ok = run_client(mode, fake.url, track_n(5), backoff_base=0.01)
    assert ok and len(fake.requests) == 2
    first, second = fake.requests
    assert second["at"] - first["at"] >= 0.95  # Retry-After: 1 honoured (the jitter alone is ≤ 10 ms)
    assert fake.ids(0) == fake.ids(1) == ids  # messageIds fixed once per event: the retry is idempotent
    assert first["doc"]["batch"] == second["doc"]["batch"]  # same timestamps too; only sentAt moves
    assert ISO_MS.match(first["doc"]["sentAt"]) and second["doc"]["sentAt"] > first["doc"]["sentAt"]
    assert all(ISO_MS.match(e["timestamp"]) for e in first["doc"]["batch"])
    headers = first["headers"]
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert (headers["Content-Encoding"], headers["Content-Type"]) == ("gzip", "application/json")
    assert headers["User-Agent"] == f"eventpipe-python/{eventpipe_sdk.__version__}"
    stats = client.stats
    assert (stats.queued, stats.delivered, stats.batches, stats.retries, stats.dropped) == (5, 5, 1, 1, 0)


@pytest.mark.parametrize("mode", MODES)
def test_429_and_5xx_are_retried(mode):
    with FakeCollector(answer(429, "slow_down"), answer(500, "boom"), answer(502, "bad_gateway")) as fake:
        client, _, ok = run_client(mode, fake.url, track_n(3), **QUICK)
    assert ok and len(fake.requests) == 4 and fake.ids(0) == fake.ids(3)
    assert (client.stats.delivered, client.stats.retries, client.stats.dropped) == (3, 3, 0)


@pytest.mark.parametrize("mode", MODES)
def test_400_is_not_retried_and_its_events_are_counted(mode):
    errors: list[DeliveryError] = []
    with FakeCollector(answer(400, "invalid_event")) as fake:
        client, _, ok = run_client(mode, fake.url, track_n(4), on_error=errors.append, **QUICK)
        time.sleep(0.2)
    assert ok and len(fake.requests) == 1
    assert (client.stats.dropped_rejected, client.stats.retries, client.stats.delivered) == (4, 0, 0)
    [error] = errors
    assert (error.events, error.reason, error.status, error.code) == (4, "rejected", 400, "invalid_event")


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_retried_then_counted(mode):
    errors: list[DeliveryError] = []
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client, _, ok = run_client(mode, url, track_n(3), max_retries=2, on_error=errors.append, **QUICK)
    assert ok
    assert (client.stats.dropped_retries_exhausted, client.stats.retries, client.stats.delivered) == (3, 2, 0)
    assert [(e.events, e.reason, e.status) for e in errors] == [(3, "retries_exhausted", None)]


@pytest.mark.parametrize("mode", MODES)
def test_events_wait_through_refused_connections_until_the_collector_listens(mode):
    port = free_port()
    servers: list[FakeCollector] = []
    timer = threading.Timer(0.6, lambda: servers.append(FakeCollector(port=port).__enter__()))
    timer.start()
    try:
        client, ids, ok = run_client(
            mode, f"http://127.0.0.1:{port}", track_n(3), max_retries=20, backoff_base=0.05, backoff_max=0.2
        )
    finally:
        timer.join()
        for server in servers:
            server.__exit__()
    assert ok and client.stats.delivered == 3 and client.stats.retries >= 1
    assert servers[0].ids(0) == ids


@pytest.mark.parametrize("mode", MODES)
def test_batches_close_by_count_by_bytes_and_by_time(mode):
    with FakeCollector() as fake:
        run_client(mode, fake.url, track_n(250), max_batch_events=100, flush_interval=30)
        assert [len(r["doc"]["batch"]) for r in fake.requests] == [100, 100, 50]

    with FakeCollector() as fake:  # 40 events of ~30 kB: 16 fit under 500 kB
        run_client(mode, fake.url, track_n(40, blob="y" * 30_000), flush_interval=30)
        assert [len(r["doc"]["batch"]) for r in fake.requests] == [16, 16, 8]
        assert all(r["size"] <= 500_000 for r in fake.requests)

    with FakeCollector() as fake:  # one event and no flush: it goes once it has waited flush_interval
        started = time.monotonic()
        if mode == "thread":
            client = Client(KEY, fake.url, flush_interval=0.3)
            client.track("Tested", user_id="u")
            wait_for(lambda: fake.requests, timeout=5, interval=0.01)
            client.shutdown()
        else:

            async def main():
                async with AsyncClient(KEY, fake.url, flush_interval=0.3) as client:
                    client.track("Tested", user_id="u")
                    while not fake.requests and time.monotonic() - started < 5:
                        await asyncio.sleep(0.01)

            asyncio.run(main())
        assert 0.25 <= fake.requests[0]["at"] - started < 3


@pytest.mark.parametrize("mode", MODES)
def test_shutdown_timeout_drops_and_counts_what_is_still_unsent(mode):
    with FakeCollector(*[answer(503, "overloaded", retry_after="30")] * 3) as fake:
        started = time.monotonic()
        client, _, ok = run_client(mode, fake.url, track_n(120), max_batch_events=100, shutdown_timeout=0.5)
        elapsed = time.monotonic() - started
        if mode == "thread":
            client.track("Too Late", user_id="u")
    assert not ok and elapsed < 3
    wait_for(lambda: client.stats.dropped_shutdown >= 120, timeout=5, interval=0.05)
    expected = 121 if mode == "thread" else 120
    assert (client.stats.dropped_shutdown, client.stats.delivered) == (expected, 0)


def test_a_forked_child_starts_an_empty_queue_and_its_own_sender():
    with FakeCollector() as fake:
        client = Client(KEY, fake.url, flush_interval=30)
        client.track("Before Fork", user_id="parent")  # queued, and the parent's sender thread runs
        pid = os.fork()
        if pid == 0:  # the child sends its own event; its copy of the parent's queue is not sent again
            client.track("In Child", user_id="child")
            ok = client.flush(timeout=10) and (client.stats.queued, client.stats.delivered) == (1, 1)
            os._exit(0 if ok else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert client.shutdown(timeout=10)
    assert sorted(e["event"] for r in fake.requests for e in r["doc"]["batch"]) == ["Before Fork", "In Child"]


# --- against the real stack -------------------------------------------------------


def lands_exactly_once(stack, where: str, n: int) -> None:
    """Wait until ``n`` rows match, then check that no more arrive and that no messageId repeats."""
    count = f"SELECT count(), uniqExact(message_id) FROM events WHERE {where}"
    assert wait_for(lambda: query(stack, count)[0][0] >= n, timeout=30), query(stack, count)
    time.sleep(1.0)  # a duplicate would arrive within a few processor batches (0.2 s each here)
    assert query(stack, count)[0] == [n, n]


@pytest.mark.parametrize("mode", MODES)
def test_every_call_lands_exactly_once_with_its_fields(stack, mode):
    run = uuid.uuid4().hex[:12]
    user, anon = f"user-{run}", f"anon-{run}"
    happened = datetime.now(timezone.utc).replace(microsecond=250_000) - timedelta(minutes=5)

    def send(client):
        return {
            "track": client.track(
                "Order Completed",
                user_id=user,
                anonymous_id=anon,
                timestamp=happened,
                properties={"revenue": 42.5, "run": run},
                context={"app": {"version": "2.3.0"}},
            ),
            "identify": client.identify(user_id=user, traits={"plan": "pro"}),
            "page": client.page("Pricing", anonymous_id=anon, properties={"path": "/pricing"}),
            "screen": client.screen("Home", user_id=user, category="app"),
            "group": client.group("acme-inc", user_id=user, traits={"employees": 120}),
            "alias": client.alias(anon, user_id=user),
        }

    client, ids, ok = run_client(mode, stack.collector_url, send)
    assert ok and (client.stats.delivered, client.stats.dropped) == (6, 0)
    where = f"project = 'acme' AND (user_id = '{user}' OR anonymous_id = '{anon}')"
    lands_exactly_once(stack, where, 6)

    columns = [
        "type",
        "event",
        "message_id",
        "user_id",
        "anonymous_id",
        "properties",
        "traits",
        "context",
        "user_agent",
        "toUnixTimestamp64Milli(client_timestamp)",
        "toUnixTimestamp64Milli(sent_at)",
        "toUnixTimestamp64Milli(received_at)",
    ]
    rows = query(stack, f"SELECT {', '.join(columns)} FROM events WHERE {where}")
    got = {
        row[0]: dict(
            zip(
                [
                    "event",
                    "id",
                    "user",
                    "anon",
                    "props",
                    "traits",
                    "context",
                    "agent",
                    "client_ms",
                    "sent_ms",
                    "received_ms",
                ],
                row[1:],
            )
        )
        for row in rows
    }
    assert {kind: r["id"] for kind, r in got.items()} == ids
    assert {kind: r["event"] for kind, r in got.items()} == {
        "track": "Order Completed",
        "identify": "$identify",
        "page": "$page",
        "screen": "$screen",
        "group": "$group",
        "alias": "$alias",
    }
    library = {"name": "eventpipe-python", "version": eventpipe_sdk.__version__}
    assert all(json.loads(r["context"])["library"] == library for r in got.values())
    assert all(r["agent"] == f"eventpipe-python/{eventpipe_sdk.__version__}" for r in got.values())
    track = got["track"]
    assert (track["user"], track["anon"]) == (user, anon)
    assert json.loads(track["props"]) == {"revenue": 42.5, "run": run}
    assert json.loads(track["context"]) == {"app": {"version": "2.3.0"}, "library": library}
    assert track["client_ms"] == int(happened.timestamp() * 1000)  # the call's timestamp, to the millisecond
    assert 0 <= track["received_ms"] - track["sent_ms"] < 5000  # sentAt was stamped when the batch went out
    assert json.loads(got["identify"]["traits"]) == {"plan": "pro"}
    assert json.loads(got["group"]["traits"]) == {"employees": 120}
    assert (got["page"]["user"], got["page"]["anon"]) == ("", anon)
    assert json.loads(got["page"]["props"]) == {"path": "/pricing"}


def test_one_client_shared_by_many_threads_delivers_each_event_once(stack):
    run = uuid.uuid4().hex[:12]
    client = Client(KEY, stack.collector_url, max_batch_events=50, flush_interval=0.05)
    ids: list[list[str]] = [[] for _ in range(8)]

    def worker(n: int) -> None:
        for i in range(300):
            ids[n].append(client.track("Threaded", user_id=f"t-{run}-{n}", properties={"i": i}))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.shutdown(timeout=30)
    assert (client.stats.queued, client.stats.delivered, client.stats.dropped) == (2400, 2400, 0)
    where = f"project = 'acme' AND user_id LIKE 't-{run}-%'"
    lands_exactly_once(stack, where, 2400)
    stored = {row[0] for row in query(stack, f"SELECT message_id FROM events WHERE {where}")}
    assert stored == {i for per_thread in ids for i in per_thread}


def test_many_tasks_share_one_async_client_and_each_event_lands_once(stack):
    run = uuid.uuid4().hex[:12]

    async def main():
        async with AsyncClient(KEY, stack.collector_url, max_batch_events=50, flush_interval=0.05) as client:

            async def task(n: int) -> list[str]:
                out = []
                for i in range(50):
                    out.append(client.track("Async", user_id=f"a-{run}-{n}", properties={"i": i}))
                    await asyncio.sleep(0)
                return out

            ids = await asyncio.gather(*(task(n) for n in range(20)))
        return client, {i for per_task in ids for i in per_task}

    client, ids = asyncio.run(main())
    assert (client.stats.delivered, client.stats.dropped) == (1000, 0)
    where = f"project = 'acme' AND user_id LIKE 'a-{run}-%'"
    lands_exactly_once(stack, where, 1000)
    assert {row[0] for row in query(stack, f"SELECT message_id FROM events WHERE {where}")} == ids


@pytest.mark.parametrize("mode", MODES)
def test_a_full_queue_and_oversize_events_are_counted_and_the_rest_lands(stack, mode):
    run = uuid.uuid4().hex[:12]

    def send(client):
        client.track("Big", user_id=f"q-{run}", properties={"blob": "z" * 40_000})
        return [client.track("Queued", user_id=f"q-{run}", properties={"i": i}) for i in range(15)]

    client, _, ok = run_client(mode, stack.collector_url, send, max_queue_size=10, flush_interval=60)
    stats = client.stats
    assert ok and (stats.queued, stats.delivered, stats.dropped_queue_full, stats.dropped_oversize) == (10, 10, 5, 1)
    lands_exactly_once(stack, f"user_id = 'q-{run}'", 10)
    assert query(
        stack,
        f"SELECT min(JSONExtractInt(properties, 'i')), max(JSONExtractInt(properties, 'i')) "
        f"FROM events WHERE user_id = 'q-{run}'",
    ) == [[0, 9]]  # the first ten were kept


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_write_key_is_rejected_once_not_retried(stack, mode):
    errors: list[DeliveryError] = []
    client, _, ok = run_client(mode, stack.collector_url, track_n(3), key="no-such-key", on_error=errors.append)
    assert ok and (client.stats.dropped_rejected, client.stats.retries) == (3, 0)
    assert [(e.status, e.code, e.reason) for e in errors] == [(401, "invalid_write_key", "rejected")]


# --- the guide: every code block of docs/sdk.md runs against the stack -----------

DOC_KEY, DOC_HOST = "demo-write-key", "http://127.0.0.1:8080"


def doc_blocks(path: Path = DOC) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block of a Markdown file (docs/sdk.md by default)."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M)
    ]


DOC_BLOCKS = doc_blocks()
README = DOC.parents[1] / "README.md"
README_BLOCKS = doc_blocks(README)


def test_docs_code_blocks_are_all_python_so_all_of_them_run():
    """Every block runs here, except the install commands, which tests/test_packaging.py performs."""
    text = DOC.read_text()
    installs = re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)
    assert all(line.startswith("pip install ") for block in installs for line in block.splitlines())
    fences = re.findall(r"^```", text, re.M)
    assert len(DOC_BLOCKS) >= 7 and len(fences) == 2 * (len(DOC_BLOCKS) + len(installs))


@pytest.mark.parametrize("line, code", DOC_BLOCKS, ids=[f"docs/sdk.md:{line}" for line, _ in DOC_BLOCKS])
def test_docs_example_runs_and_its_events_land(stack, monkeypatch, line, code):
    run_doc_example(stack, monkeypatch, DOC, line, code)


@pytest.mark.parametrize("line, code", README_BLOCKS, ids=[f"README.md:{line}" for line, _ in README_BLOCKS])
def test_readme_sdk_example_runs_and_its_events_land(stack, monkeypatch, line, code):
    run_doc_example(stack, monkeypatch, README, line, code)


def run_doc_example(stack, monkeypatch, path: Path, line: int, code: str) -> None:
    clients = []  # every client the example makes, to learn how many events it delivered

    class Recorded(Client):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clients.append(self)

    class RecordedAsync(AsyncClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clients.append(self)

    monkeypatch.setattr(eventpipe_sdk, "Client", Recorded)
    monkeypatch.setattr(eventpipe_sdk, "AsyncClient", RecordedAsync)
    assert DOC_HOST in code
    where = "project = 'beta' AND JSONExtractString(context, 'library', 'name') = 'eventpipe-python'"
    before = query(stack, f"SELECT count() FROM events WHERE {where}")[0][0]

    code = code.replace(DOC_KEY, "test-key-beta").replace(DOC_HOST, stack.collector_url)
    exec(compile(code, f"{path}:{line}", "exec"), {"__name__": "__main__"})

    assert clients, "the example makes a client"
    for client in clients:  # each example shuts its clients down: nothing is left queued
        stats = client.stats
        assert stats.queued == stats.delivered + stats.dropped_rejected, stats
    delivered = sum(c.stats.delivered for c in clients)
    if delivered:
        lands_exactly_once(stack, where, before + delivered)
    else:
        assert query(stack, f"SELECT count() FROM events WHERE {where}")[0][0] == before


def test_docs_name_every_option_and_counter():
    text = DOC.read_text()
    options = [name for name in Config.__dataclass_fields__ if name not in ("write_key", "host")]
    counters = [name for name in eventpipe_sdk.Stats.__dataclass_fields__ if name.startswith("dropped_")]
    assert [name for name in options + counters if name not in text] == []
