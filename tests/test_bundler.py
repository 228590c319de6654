"""The bundler without a broker: a partition's next bundle fills while its record waits for the ack, ships at the
ack, and every request is answered (200 or 503) within the window plus the ack timeout, whatever the broker does."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventpipe.ingest.bundler import AckTimeout, Bundler
from eventpipe.ingest.partitioning import partition_for
from eventpipe.ingest.records import RecordBatch
from eventpipe.schemas.bundle import AcceptedRequest, decode_bundle


class FakeProducer:
    """send_batch that records each batch and returns a future the test resolves (the broker's ack)."""

    def __init__(self):
        self.sent: list[tuple[int, RecordBatch, asyncio.Future]] = []

    async def send_batch(self, batch, topic, *, partition):
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((partition, batch, fut))
        return fut

    def ack(self, i: int) -> None:
        self.sent[i][2].set_result(None)


def request(n: int) -> AcceptedRequest:
    return AcceptedRequest("p", 1, "ip", "ua", b'{"batch":[%d]}' % n)


def key_for(partition: int, partitions: int = 4) -> bytes:
    return next(k for k in (str(i).encode() for i in range(1000)) if partition_for(k, partitions) == partition)


def requests_in(batch: RecordBatch) -> list[bytes]:
    return [r.body for r in decode_bundle(batch._values[0])]


def run(coro):
    return asyncio.run(coro)


def test_a_busy_partition_keeps_filling_and_ships_at_the_ack():
    async def go():
        producer = FakeProducer()
        b = Bundler(producer, "t", 4, window_ms=1, max_bytes=1 << 20, max_inflight_bytes=1 << 30)
        k0, k1 = key_for(0), key_for(1)
        first = [asyncio.create_task(b.submit(k0, request(0))), asyncio.create_task(b.submit(k1, request(1)))]
        await asyncio.sleep(0.01)
        assert sorted(p for p, _, _ in producer.sent) == [0, 1]  # one window: both partitions together
        later = [asyncio.create_task(b.submit(k0, request(n))) for n in (2, 3, 4)]
        await asyncio.sleep(0.01)  # the window passed, but partition 0 waits for its ack
        assert len(producer.sent) == 2
        producer.ack(0)
        await asyncio.gather(first[0])
        await asyncio.sleep(0.001)
        assert len(producer.sent) == 3 and producer.sent[2][0] == 0  # shipped at the ack, as one record
        assert requests_in(producer.sent[2][1]) == [b'{"batch":[%d]}' % n for n in (2, 3, 4)]
        producer.ack(1)
        producer.ack(2)
        await asyncio.gather(first[1], *later)
        assert b.inflight_bytes == 0 and not b._busy and not b._open

    run(go())


def test_an_ack_that_never_comes_is_a_prompt_503_for_the_bundles_behind_it_too():
    async def go():
        producer = FakeProducer()
        b = Bundler(producer, "t", 4, window_ms=1, max_bytes=1 << 20, max_inflight_bytes=1 << 30, ack_timeout_ms=100)
        k = key_for(2)
        started = time.monotonic()
        first = asyncio.create_task(b.submit(k, request(0)))
        await asyncio.sleep(0.01)
        behind = asyncio.create_task(b.submit(k, request(1)))  # waits behind the unacked record
        for task in (first, behind):
            with pytest.raises(AckTimeout):
                await task
        assert time.monotonic() - started < 0.3
        # once the first record timed out the partition no longer waits for it: the one behind was shipped too
        assert [p for p, _, _ in producer.sent] == [2, 2] and b.inflight_bytes > 0 and not b._busy
        for _, _, fut in producer.sent:
            fut.set_exception(ConnectionError("broker gone"))  # the sends end at last: their bytes are freed
        await asyncio.sleep(0.01)
        assert b.inflight_bytes == 0

    run(go())


def test_a_full_bundle_ships_at_once_and_the_rest_follows_at_the_ack():
    async def go():
        producer = FakeProducer()
        b = Bundler(producer, "t", 4, window_ms=50, max_bytes=200, max_inflight_bytes=1 << 30)
        k = key_for(3)
        tasks = [asyncio.create_task(b.submit(k, request(n))) for n in range(6)]
        await asyncio.sleep(0.005)  # long before the window: the first four (200 bytes) went at the cap
        assert len(producer.sent) == 1 and len(requests_in(producer.sent[0][1])) == 4
        await asyncio.sleep(0.06)  # the window passed, the first record is unacked: the rest waits
        assert len(producer.sent) == 1
        producer.ack(0)
        await asyncio.sleep(0.001)
        assert len(producer.sent) == 2
        producer.ack(1)
        await asyncio.gather(*tasks)
        assert [body for _, batch, _ in producer.sent for body in requests_in(batch)] == [
            b'{"batch":[%d]}' % n for n in range(6)
        ]

    run(go())


def test_flush_ships_everything_and_waits():
    async def go():
        producer = FakeProducer()
        b = Bundler(producer, "t", 4, window_ms=10_000, max_bytes=1 << 20, max_inflight_bytes=1 << 30)
        tasks = [asyncio.create_task(b.submit(key_for(p), request(p))) for p in range(4)]
        await asyncio.sleep(0)
        flushing = asyncio.create_task(b.flush())
        await asyncio.sleep(0.01)
        assert len(producer.sent) == 4
        for i in range(4):
            producer.ack(i)
        await flushing
        await asyncio.gather(*tasks)

    run(go())
