"""The collector's Kafka sink: a producer that is always being connected, a bundler, and a health probe.

It implements the sink contract (eventpipe.ingest.sink.Sink: ``submit``,
``ready``, ``start``/``stop``) and is the collector's sink unless another is
passed in. Everything Kafka-specific lives here: connecting with retries
while the broker is away, replacing a producer that is beyond repair, and a
probe that asks the broker for metadata every second, so ``/readyz`` turns 503
within about a second of the broker going away and back to 200 once it
answers again, whether or not traffic flows.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from eventpipe.compat import aiokafka as aiokafka_compat
from eventpipe.settings import Settings
from eventpipe.ingest import metrics
from eventpipe.ingest.bundler import Bundler
from eventpipe.ingest.errors import Unavailable
from eventpipe.ingest.records import encode_produce_request
from eventpipe.schemas.bundle import AcceptedRequest

log = logging.getLogger("eventpipe.collector")

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
METADATA_RETRY_BACKOFF_S = 0.5  # after a failed metadata update (eventpipe.compat.aiokafka.throttle_metadata_retries)

RECORD_COMPRESSIONS = ("lz4", "zstd", "none")


class KafkaSink:
    def __init__(self, settings: Settings):
        if settings.record_compression not in RECORD_COMPRESSIONS:
            raise ValueError(
                f"EVENTPIPE_RECORD_COMPRESSION must be one of {', '.join(RECORD_COMPRESSIONS)}, "
                f"not {settings.record_compression!r}"
            )
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.bundler: Bundler | None = None
        self.reachable = False
        self._connector: asyncio.Task | None = None
        self._prober: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        return self.bundler is not None and self.reachable

    async def submit(self, key: bytes, request: AcceptedRequest) -> None:
        """Return once Kafka has acked the record holding ``request``; `Unavailable` (or a Kafka error) if not."""
        if self.bundler is None:
            raise Unavailable("not connected to Kafka yet; retry later")
        await self.bundler.submit(key, request)

    def start(self) -> None:
        aiokafka_compat.check()  # a clear error at start, not a failure in the rare state a private name serves
        aiokafka_compat.install_produce_encoding(encode_produce_request)
        loop = asyncio.get_running_loop()
        self._connector = loop.create_task(self._connect())
        self._prober = loop.create_task(self._probe())

    async def stop(self) -> None:
        for task in (self._connector, self._prober):
            if task and not task.done():
                task.cancel()
        if self.bundler:
            await self.bundler.flush()
        if self.producer:
            await self.producer.stop()

    async def _connect(self) -> None:
        """Connect to Kafka, retrying: the collector serves /healthz (and 503s) while the broker is away."""
        s = self.settings
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",  # aiokafka defaults to acks=1: durability needs every in-sync replica
                enable_idempotence=True,
                linger_ms=0,  # the bundler already waits; don't wait twice (and hands over closed batches)
                max_request_size=max(1024 * 1024, s.bundle_max_bytes + 64 * 1024),
                request_timeout_ms=10_000,
                client_id="eventpipe-collector",
            )
            aiokafka_compat.throttle_metadata_retries(producer, METADATA_RETRY_BACKOFF_S)
            try:
                await producer.start()
                partitions = len(await producer.partitions_for(s.topic_raw))
            except Exception as exc:  # noqa: BLE001 - any failure to connect means: try again
                log.warning("Kafka at %s not reachable yet (%s); retrying in %.1fs", s.kafka_bootstrap, exc, delay)
                await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.producer = producer
            self.bundler = Bundler(
                producer,
                s.topic_raw,
                partitions,
                s.bundle_window_ms,
                s.bundle_max_bytes,
                max_inflight_bytes=s.max_inflight_bytes,
                on_fatal=self._replace_producer,
                ack_timeout_ms=s.ack_timeout_ms,
                on_failure=self._on_failure,
                compression=None if s.record_compression == "none" else s.record_compression,
            )
            self._set_reachable(True)
            log.info("collector connected to Kafka %s (%s: %d partitions)", s.kafka_bootstrap, s.topic_raw, partitions)
            return

    def _replace_producer(self, exc: BaseException) -> None:
        """A producer beyond repair: answer 503 until a new one (new producer id) is connected."""
        log.warning("Kafka producer unusable (%r): replacing it", exc)
        old, self.producer, self.bundler = self.producer, None, None
        loop = asyncio.get_running_loop()
        if old is not None:
            loop.create_task(old.stop())
        self._connector = loop.create_task(self._connect())

    def _on_failure(self, exc: BaseException) -> None:
        """A bundle failed or timed out: unready at once; the probe says when the broker answers again."""
        self._set_reachable(False)

    def _set_reachable(self, value: bool) -> None:
        if value != self.reachable:
            self.reachable = value
            metrics.KAFKA_REACHABLE.set(1 if value else 0)
            if value:
                log.info("Kafka at %s is reachable", self.settings.kafka_bootstrap)
            else:
                log.warning("Kafka at %s is not reachable: /readyz answers 503", self.settings.kafka_bootstrap)

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            producer = self.producer
            if producer is None:
                continue
            try:
                await asyncio.wait_for(producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure to get metadata means: not reachable
                self._set_reachable(False)
            else:
                self._set_reachable(True)
