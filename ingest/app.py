"""The collector's HTTP application: a thin RSGI handler served by granian.

granian's RSGI interface was the fastest server that still has timeouts and
limits (benchmarks/servers/, DESIGN.md §3), so the ingest path is a plain
RSGI callable with no framework: route, judge the request (ingest.batch),
hand it to the bundler, answer once Kafka has acked it.

Run it with ``eventpipe collector`` (granian, uvloop). granian calls
``__rsgi_init__`` in each worker before serving and ``__rsgi_del__`` after
its last request, which is where the producer starts and is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eventpipe.settings import Settings
from ingest import metrics
from ingest.batch import Rejected, decompress, parse_batch, write_key_from_basic
from ingest.bundler import Bundler, Overloaded
from schemas.bundle import AcceptedRequest

log = logging.getLogger("eventpipe.collector")

JSON = [("content-type", "application/json")]
OK_BODY = orjson.dumps({"success": True})
RETRY_AFTER_S = "1"


class Collector:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings
        self.keys: dict[str, str] = {}
        self.producer: AIOKafkaProducer | None = None
        self.bundler: Bundler | None = None
        self._connector: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.start())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def start(self) -> None:
        self.settings = self.settings or Settings.from_env()
        self.keys = self.settings.project_for_key()
        self._connector = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        """Connect to Kafka, retrying: the collector serves /healthz (and 503s) while the broker is away."""
        s = self.settings
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",  # aiokafka defaults to acks=1: durability needs every in-sync replica
                enable_idempotence=True,
                linger_ms=0,  # the bundler already waits; don't wait twice
                max_request_size=max(1024 * 1024, s.bundle_max_bytes + 64 * 1024),
                request_timeout_ms=10_000,
                client_id="eventpipe-collector",
            )
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
            self.bundler = Bundler(producer, s.topic_raw, partitions, s.bundle_window_ms, s.bundle_max_bytes,
                                   max_inflight_bytes=64 * s.bundle_max_bytes, on_fatal=self._replace_producer)
            log.info("collector connected to Kafka %s (%s: %d partitions)", s.kafka_bootstrap, s.topic_raw,
                     partitions)
            return

    def _replace_producer(self, exc: BaseException) -> None:
        """A producer beyond repair: answer 503 until a new one (new producer id) is connected."""
        log.warning("Kafka producer unusable (%r): replacing it", exc)
        old, self.producer, self.bundler = self.producer, None, None
        loop = asyncio.get_running_loop()
        if old is not None:
            loop.create_task(old.stop())
        self._connector = loop.create_task(self._connect())

    async def stop(self) -> None:
        if self._connector and not self._connector.done():
            self._connector.cancel()
        if self.bundler:
            await self.bundler.flush()
        if self.producer:
            await self.producer.stop()

    @property
    def ready(self) -> bool:
        return self.bundler is not None and self.bundler.last_error is None

    # --- requests --------------------------------------------------------
    async def __rsgi__(self, scope, proto) -> None:
        path = scope.path
        if scope.method == "POST" and path == "/v1/batch":
            status, headers, body = await self._batch(scope, proto)
        elif scope.method == "GET" and path == "/healthz":
            status, headers, body = 200, JSON, b'{"alive":true}'
        elif scope.method == "GET" and path == "/readyz":
            status, headers, body = (200, JSON, b'{"ready":true}') if self.ready else (503, JSON, b'{"ready":false}')
        elif scope.method == "GET" and path == "/metrics":
            status, headers, body = 200, [("content-type", CONTENT_TYPE_LATEST)], generate_latest()
        else:
            status, headers, body = 404, JSON, Rejected(404, "not_found", f"no route {scope.method} {path}").body()
        metrics.REQUESTS.labels(path if status != 404 else "other", str(status)).inc()
        proto.response_bytes(status, headers, body)

    async def _batch(self, scope, proto) -> tuple[int, list, bytes]:
        started = time.perf_counter()
        events = 0
        try:
            headers = scope.headers
            key = write_key_from_basic(headers.get("authorization"))
            project = self.keys.get(key) if key else None
            if project is None:
                raise Rejected(401, "invalid_write_key", "unknown or missing write key (HTTP Basic username)")
            limit = self.settings.max_batch_bytes
            declared = headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise Rejected(413, "body_too_large", f"the body exceeds {limit} bytes")
            raw = await proto()
            parsed = parse_batch(decompress(raw, headers.get("content-encoding"), limit), limit)
            events = parsed.events
            if self.bundler is None:
                raise Overloaded("not connected to Kafka yet")
            request = AcceptedRequest(project, int(time.time() * 1000), scope.client.rsplit(":", 1)[0],
                                      headers.get("user-agent") or "", parsed.body)
            await self.bundler.submit(parsed.partition_key, request)
        except Rejected as rej:
            metrics.REJECTED.labels(rej.code).inc()
            metrics.EVENTS.labels("rejected").inc(events)
            return rej.status, JSON, rej.body()
        except Overloaded as exc:
            return self._unavailable("overloaded", str(exc), events)
        except Exception:  # noqa: BLE001 - a Kafka failure (logged per bundle): nothing acked, the client retries
            return self._unavailable("kafka_unavailable", "the event store is unavailable; retry later", events)
        metrics.EVENTS.labels("accepted").inc(events)
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
        return 200, JSON, OK_BODY

    @staticmethod
    def _unavailable(code: str, message: str, events: int) -> tuple[int, list, bytes]:
        metrics.REJECTED.labels(code).inc()
        metrics.EVENTS.labels("unavailable").inc(events)
        return 503, JSON + [("retry-after", RETRY_AFTER_S)], Rejected(503, code, message).body()


app = Collector()
