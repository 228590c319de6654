"""Bundling accepted requests into Kafka records, and acking them only when the broker has.

Per-record cost dominates aiokafka and faust (schemas/bundle.py), so each partition
has one open bundle that goes to Kafka as one record. A bundle ships when its
window has passed (one timer for all partitions, so their records reach the
producer together and share one produce request) *and* its partition has no
record waiting for an ack: while the broker is busy with one record, the
next bundle keeps filling instead of queueing behind it as a record of its
own (aiokafka sends at most one produce request per broker at a time), and it
ships the moment the ack arrives. So the busier the collector, the more
requests a record carries, with no added wait. A bundle also ships early at
a byte cap.

Each record is laid out by eventpipe.ingest.records (one CRC-32C pass in hardware,
optional lz4/zstd) and handed to aiokafka as a ready batch, whose sender keeps
the idempotent producer's sequence numbers, retries and acks (acks=all).
Every request in a bundle waits for the broker's ack of its record before its
HTTP 200. In-flight bytes are bounded: past the bound the collector refuses
(503) instead of buffering without limit. The wait for the ack is bounded too
(one timer per bundle, not per request): a bundle not acked within
``ack_timeout`` answers its requests 503 so clients retry while their own
timeouts are far off; the record may still be written later, and the
duplicates the retries make are removed downstream by messageId.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)

from eventpipe.ingest import metrics
from eventpipe.ingest.errors import Unavailable
from eventpipe.ingest.partitioning import partition_for
from eventpipe.ingest.records import RecordBatch, compressor
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle, encoded_size


# After these an idempotent producer can never send again (its sequence state is broken,
# e.g. after a broker restart lost in-flight batches): only a new producer helps.
FATAL_PRODUCER_ERRORS = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
    ProducerClosed,
)

log = logging.getLogger("eventpipe.collector")


class Overloaded(Unavailable):
    """Too many bytes are waiting for Kafka; the client should retry later."""

    code = "overloaded"


class AckTimeout(Unavailable):
    """Kafka did not ack in time; the record may still land, the client should retry."""

    code = "kafka_timeout"


class _Open:
    """One open bundle: its requests and one future per waiting request (``asyncio.shield`` of a shared
    future cost two callbacks per request; a client that disconnects cancels only its own future)."""

    __slots__ = ("requests", "size", "waiters", "settled", "deadline", "due", "shipped", "released")

    def __init__(self):
        self.requests: list[AcceptedRequest] = []
        self.size = 0
        self.waiters: list[asyncio.Future] = []
        self.settled = False  # every waiter has been answered (acked, failed or timed out)
        self.deadline: asyncio.TimerHandle | None = None
        self.due = False  # its window has passed: it ships as soon as its partition has no record in flight
        self.shipped = False  # handed to the producer
        self.released = False  # its partition no longer waits for it (acked, failed or timed out)

    def settle(self, exc: BaseException | None = None) -> None:
        self.settled = True
        for waiter in self.waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)


class Bundler:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        partitions: int,
        window_ms: float,
        max_bytes: int,
        max_inflight_bytes: int,
        on_fatal=None,
        ack_timeout_ms: float = 2000,
        on_failure=None,
        compression: str | None = None,
    ):
        self.producer = producer
        self.on_fatal = on_fatal  # called once when the producer is beyond repair
        self.on_failure = on_failure  # called on every failed or timed-out bundle (readiness)
        self.ack_timeout = ack_timeout_ms / 1000.0
        self.topic = topic
        self.partitions = partitions
        self.window = window_ms / 1000.0
        self.max_bytes = max_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self.compression = compression
        self._compress = compressor(compression)
        self.inflight_bytes = 0
        self.last_error: BaseException | None = None
        self._open: dict[int, _Open] = {}
        self._busy: dict[int, int] = {}  # partition -> its records sent and not yet acked (or failed)
        self._tick: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop()

    async def submit(self, key: bytes, request: AcceptedRequest) -> None:
        """Return once the record holding ``request`` is acked; raise if it could not be written."""
        size = encoded_size(request)
        if self.inflight_bytes + size > self.max_inflight_bytes:
            raise Overloaded(f"{self.inflight_bytes} bytes are already waiting for Kafka; retry later")
        partition = partition_for(key, self.partitions)
        bundle = self._open.get(partition)
        if bundle is not None and bundle.size + size > self.max_bytes:
            self._ship(partition, bundle)  # full: it goes now, even behind a record in flight
            bundle = None
        if bundle is None:
            bundle = self._open[partition] = _Open()
            if self._tick is None:
                self._tick = self._loop.call_later(self.window, self._window_passed)
        bundle.requests.append(request)
        bundle.size += size
        self.inflight_bytes += size
        waiter = self._loop.create_future()
        bundle.waiters.append(waiter)
        await waiter

    def _window_passed(self) -> None:
        """One timer for all partitions: their bundles reach the producer together, and its sender ships
        them in one produce request per broker rather than one each. A partition whose last record is still
        unacked keeps its bundle open (filling) until the ack; its ack timeout runs from now all the same."""
        self._tick = None
        busy = self._busy
        for partition, bundle in list(self._open.items()):
            if partition not in busy:
                self._ship(partition, bundle)
            elif not bundle.due:
                bundle.due = True
                bundle.deadline = self._loop.call_later(self.ack_timeout, self._expire, partition, bundle)

    def _ship(self, partition: int, bundle: _Open) -> None:
        if self._open.get(partition) is bundle:
            del self._open[partition]
        self._busy[partition] = self._busy.get(partition, 0) + 1
        bundle.shipped = True
        if bundle.deadline is None:
            bundle.deadline = self._loop.call_later(self.ack_timeout, self._expire, partition, bundle)
        task = self._loop.create_task(self._send(partition, bundle))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _release(self, partition: int, bundle: _Open) -> None:
        """``partition`` need not wait for ``bundle`` any longer (acked, failed or timed out): its next bundle
        ships now if its window has passed."""
        if bundle.released:
            return
        bundle.released = True
        left = self._busy[partition] - 1
        if left:
            self._busy[partition] = left
            return
        del self._busy[partition]
        following = self._open.get(partition)
        if following is not None and following.due:
            self._ship(partition, following)

    def _expire(self, partition: int, bundle: _Open) -> None:
        """The ack is late: answer the waiting requests 503 now. A shipped bundle's send goes on (its bytes stay
        counted) but no longer holds its partition back; one that never left (its partition's previous record
        still unacked) is dropped: its clients retry."""
        if bundle.settled:
            return
        metrics.BUNDLES.labels("ack_timeout").inc()
        self._fail(bundle, AckTimeout(f"Kafka did not acknowledge within {self.ack_timeout:g}s; retry later"))
        if bundle.shipped:
            self._release(partition, bundle)
        elif self._open.get(partition) is bundle:
            del self._open[partition]
            self.inflight_bytes -= bundle.size

    def _fail(self, bundle: _Open, exc: BaseException) -> None:
        if not bundle.settled:
            bundle.settle(exc)
        if self.on_failure is not None:
            self.on_failure(exc)

    async def _send(self, partition: int, bundle: _Open) -> None:
        started = time.perf_counter()
        try:
            value = encode_bundle(bundle.requests)
            batch = RecordBatch([value], int(time.time() * 1000), self.compression, self._compress)
            ack = await self.producer.send_batch(batch, self.topic, partition=partition)
            await ack
        except asyncio.CancelledError:
            for waiter in bundle.waiters:
                waiter.cancel()
            raise
        except Exception as exc:  # every waiter must hear of it
            self.last_error = exc
            metrics.BUNDLES.labels("failed").inc()
            log.warning(
                "Kafka write of a bundle (%d requests, partition %d) failed: %r", len(bundle.requests), partition, exc
            )
            if isinstance(exc, FATAL_PRODUCER_ERRORS) and self.on_fatal is not None:
                on_fatal, self.on_fatal = self.on_fatal, None
                on_fatal(exc)
            self._fail(bundle, exc)
        else:
            self.last_error = None
            if not bundle.settled:  # else: answered 503 already (ack timeout); the record is in Kafka anyway
                bundle.settle()
            _ACKED.inc()
            metrics.BUNDLE_BYTES.observe(len(value))
            metrics.RECORD_BYTES.observe(batch.size())
            metrics.BUNDLE_REQUESTS.observe(len(bundle.requests))
            metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        finally:
            if bundle.deadline is not None:
                bundle.deadline.cancel()
            self.inflight_bytes -= bundle.size
            self._release(partition, bundle)

    async def flush(self) -> None:
        """Ship every open bundle and wait for all sends: graceful shutdown."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        while self._open or self._sending:
            for partition, bundle in list(self._open.items()):
                self._ship(partition, bundle)
            if self._sending:
                await asyncio.gather(*self._sending, return_exceptions=True)


_ACKED = metrics.BUNDLES.labels("acked")
