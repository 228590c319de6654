"""Exactly-once effect under crashes: SIGKILLed processors and a restarted broker lose and double nothing.

Events stream through the collector while the processor is SIGKILLed at random
moments (the first after an insert went through but before its commit, so a
written batch is surely replayed) and the broker is restarted once. The load generator behaves like an
SDK: it retries 503s and connection errors until it gets a 200, and counts
each event once, when its request is answered 200. At the end ClickHouse must
hold exactly the accepted events, each messageId once, and the rollups must
equal a recomputation from the raw rows.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import aiohttp
import orjson
import pytest

from eventpipe.verify import verify
from tests.conftest import private_stack, query, wait_for
from tests.http import basic

REQUESTS = 20_000
EVENTS_PER_REQUEST = 10
KILLS = 5


class Loader:
    """An open-loop-ish sender in its own thread: a fixed number of requests, each retried until 200."""

    def __init__(self, url: str, key: str, requests: int, rate: float, seed: int):
        self.url, self.key, self.requests, self.rate = url, key, requests, rate
        self.rng = random.Random(seed)
        self.accepted_events = 0
        self.retries = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def body(self, n: int) -> bytes:
        device = f"device-{self.rng.randrange(500)}"
        return orjson.dumps(
            {
                "sentAt": "2026-11-27T00:00:00.000Z",
                "batch": [
                    {
                        "type": "track",
                        "event": self.rng.choice(["View", "Add", "Buy"]),
                        "anonymousId": device,
                        "userId": f"user-{self.rng.randrange(300)}" if self.rng.random() < 0.5 else None,
                        "messageId": f"kill-{n}-{i}",
                        "timestamp": "2026-11-27T00:00:00.000Z",
                        "properties": {"revenue": round(self.rng.random() * 50, 2)},
                        "context": {"os": {"name": self.rng.choice(["iOS", "Android"])}, "app": {"version": "1.0"}},
                    }
                    for i in range(EVENTS_PER_REQUEST)
                ],
            }
        )

    async def _send(self, session: aiohttp.ClientSession, body: bytes) -> None:
        headers = {"Authorization": basic(self.key), "Content-Type": "application/json"}
        while True:
            try:
                async with session.post(
                    self.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        self.accepted_events += EVENTS_PER_REQUEST
                        return
                    assert resp.status == 503, resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            self.retries += 1
            await asyncio.sleep(0.2 + self.rng.random() * 0.3)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            tasks = []
            started = time.monotonic()
            for n in range(self.requests):
                delay = started + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._send(session, self.body(n))))
            await asyncio.gather(*tasks)


def first_row_after(stack, t: float) -> float | None:
    """When the first row inserted after ``t`` was inserted (``inserted_at``: the store's clock, this machine's)."""
    ((first,),) = query(
        stack,
        "SELECT toUnixTimestamp64Milli(min(inserted_at)) FROM events "
        f"WHERE inserted_at > fromUnixTimestamp64Milli({int(t * 1000)})",
    )
    return first / 1000 if first else None


def recovery_seconds(stack, restarts: list[float]) -> list[float | None]:
    """For each restart of a killed processor: seconds until the new process inserted its first row; None if
    the next kill came first."""
    out = []
    for t, until in zip(restarts, restarts[1:] + [float("inf")]):
        first = first_row_after(stack, t)
        out.append(first - t if first and first < until else None)
    return out


@pytest.fixture
def chaos_stack(tmp_path):
    with private_stack(tmp_path, processor_session_timeout=6.0) as stack:
        yield stack


def test_kills_and_broker_restart_lose_and_double_nothing(chaos_stack):
    stack, rng = chaos_stack, random.Random()
    loader = Loader(stack.collector_url + "/v1/batch", "test-key-acme", REQUESTS, rate=400, seed=rng.randrange(1000))
    loader.thread.start()
    duration = REQUESTS / 400
    moments = sorted(rng.uniform(0.05, 0.9) * duration for _ in range(KILLS))
    broker_restart_at = rng.uniform(0.2, 0.8) * duration
    started = time.monotonic()
    restarted_broker = False
    restarts: list[float] = []  # wall-clock moments a killed processor was started again
    # The first kill surely lands after an insert and before its commit: the store failpoint lets inserts go
    # through and then report failure (a lost acknowledgement), so the processor retries a batch that is
    # already written, and is killed while it does.
    time.sleep(max(0, started + moments.pop(0) - time.monotonic()))
    log = stack.settings.data_dir / "stack.log"
    failed_before = log.read_text().count("micro-batch write failed")
    stack.settings.store_failpoint.write_text("after")
    try:
        assert wait_for(lambda: log.read_text().count("micro-batch write failed") > failed_before, timeout=30)
        stack.processor.stop(sig=9)
    finally:
        stack.settings.store_failpoint.unlink()
    restarts.append(time.time())
    stack.start_processor()
    # The random kills and the broker restart wait until this restart wrote its first row, so that the
    # recovery of the kill before a commit is measured alone in every run (later restarts may be cut short).
    wait_for(lambda: first_row_after(stack, restarts[0]), timeout=120)
    for moment in moments:
        if not restarted_broker and moment > broker_restart_at:
            time.sleep(max(0, started + broker_restart_at - time.monotonic()))
            stack.broker.stop()
            time.sleep(1)
            stack.broker.start()
            restarted_broker = True
        time.sleep(max(0, started + moment - time.monotonic()))
        stack.processor.stop(sig=9)  # SIGKILL: no flush, no commit
        restarts.append(time.time())
        stack.start_processor()
    if not restarted_broker:
        stack.broker.stop()
        stack.broker.start()
    loader.thread.join(timeout=600)
    assert not loader.thread.is_alive()
    assert loader.accepted_events == REQUESTS * EVENTS_PER_REQUEST  # every request got its 200 in the end

    expected = loader.accepted_events
    done = wait_for(lambda: query(stack, "SELECT count() FROM events")[0][0] >= expected, timeout=180)
    time.sleep(2)  # let a straggling duplicate, if any, land before we count
    count, unique = query(stack, "SELECT count(), uniqExact(message_id) FROM events")[0]
    replays = (stack.settings.data_dir / "stack.log").read_text().count("ledger batch(es)")
    print(
        f"accepted {expected} events, stored {count} ({unique} unique), client retries {loader.retries}, "
        f"recoveries that replayed ledger batches {replays}"
    )
    assert done and (count, unique) == (expected, expected)
    assert replays >= 1, "the kill before a commit left no batch to replay: the mechanism was not exercised"
    recoveries = recovery_seconds(stack, restarts)
    print(
        "seconds from each restart to its first new row (the first: after the kill before a commit; "
        "-: killed again before):",
        ", ".join("-" if s is None else f"{s:.1f}" for s in recoveries),
    )
    checks = verify(lambda sql: query(stack, sql))
    assert all(c.ok for c in checks), checks
    assert query(stack, "SELECT sum(events) FROM events_1m")[0][0] == expected
