"""Bundling accepted requests into Kafka records, and acking them only when the broker has.

Per-record cost dominates aiokafka and faust (DESIGN.md §3), so each partition
has one open bundle that closes after a few milliseconds or at a byte cap and
goes to Kafka as one record. Every request in it waits for the broker's ack of
that record (acks=all, idempotent producer) before its HTTP 200. In-flight
bytes are bounded: past the bound the collector refuses (503) instead of
buffering without limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (InvalidProducerEpoch, OutOfOrderSequenceNumber, ProducerClosed, ProducerFenced,
                             UnknownProducerId)

from ingest import metrics
from schemas.bundle import AcceptedRequest, encode_bundle, encoded_size


# After these an idempotent producer can never send again (its sequence state is broken,
# e.g. after a broker restart lost in-flight batches): only a new producer helps.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced,
                         ProducerClosed)

log = logging.getLogger("eventpipe.collector")


class Overloaded(Exception):
    """Too many bytes are waiting for Kafka; the client should retry later."""


class _Open:
    __slots__ = ("requests", "size", "done", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.requests: list[AcceptedRequest] = []
        self.size = 0
        self.done: asyncio.Future = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None


def partition_for(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


class Bundler:
    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: int, window_ms: float,
                 max_bytes: int, max_inflight_bytes: int, on_fatal=None):
        self.producer = producer
        self.on_fatal = on_fatal  # called once when the producer is beyond repair
        self.topic = topic
        self.partitions = partitions
        self.window = window_ms / 1000.0
        self.max_bytes = max_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_bytes = 0
        self.last_error: BaseException | None = None
        self._open: dict[int, _Open] = {}
        self._sending: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop()

    async def submit(self, key: bytes, request: AcceptedRequest) -> None:
        """Return once the record holding ``request`` is acked; raise if it could not be written."""
        size = encoded_size(request)
        if self.inflight_bytes + size > self.max_inflight_bytes:
            raise Overloaded(f"{self.inflight_bytes} bytes are waiting for Kafka")
        partition = partition_for(key, self.partitions)
        bundle = self._open.get(partition)
        if bundle is not None and bundle.size + size > self.max_bytes:
            self._close(partition, bundle)
            bundle = None
        if bundle is None:
            bundle = self._open[partition] = _Open(self._loop)
            bundle.timer = self._loop.call_later(self.window, self._close, partition, bundle)
        bundle.requests.append(request)
        bundle.size += size
        self.inflight_bytes += size
        # shield: a client that disconnects must not cancel the bundle others wait on
        await asyncio.shield(bundle.done)

    def _close(self, partition: int, bundle: _Open) -> None:
        if self._open.get(partition) is bundle:
            del self._open[partition]
        if bundle.timer:
            bundle.timer.cancel()
        task = self._loop.create_task(self._send(partition, bundle))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, partition: int, bundle: _Open) -> None:
        started = time.perf_counter()
        try:
            value = encode_bundle(bundle.requests)
            ack = await self.producer.send(self.topic, value, partition=partition)
            await ack
        except asyncio.CancelledError:
            bundle.done.cancel()
            raise
        except Exception as exc:  # every waiter must hear of it
            self.last_error = exc
            metrics.BUNDLES.labels("failed").inc()
            log.warning("Kafka write of a bundle (%d requests, partition %d) failed: %r",
                        len(bundle.requests), partition, exc)
            if isinstance(exc, FATAL_PRODUCER_ERRORS) and self.on_fatal is not None:
                on_fatal, self.on_fatal = self.on_fatal, None
                on_fatal(exc)
            bundle.done.set_exception(exc)
            bundle.done.exception()  # retrieved: waiters that left must not log "never retrieved"
        else:
            self.last_error = None
            metrics.BUNDLES.labels("acked").inc()
            metrics.BUNDLE_BYTES.observe(len(value))
            metrics.BUNDLE_REQUESTS.observe(len(bundle.requests))
            metrics.ACK_SECONDS.observe(time.perf_counter() - started)
            bundle.done.set_result(None)
        finally:
            self.inflight_bytes -= bundle.size

    async def flush(self) -> None:
        """Close every open bundle and wait for all sends: graceful shutdown."""
        for partition, bundle in list(self._open.items()):
            self._close(partition, bundle)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
