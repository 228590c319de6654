"""The collector's HTTP application: a thin RSGI handler served by granian.

granian's RSGI interface was the fastest server that still has timeouts and
limits (benchmarks/servers/, benchmarks/README.md), so the ingest path is a plain
RSGI callable with no framework: route, authenticate, judge the body
(eventpipe.ingest.body, eventpipe.ingest.batch), hand it to the sink, answer once the sink has
it durably. The sink is passed in (the contract: eventpipe.ingest.sink); without one the
collector writes to Kafka (eventpipe.ingest.kafka_sink). The routes are Segment's HTTP Tracking API (docs/segment-compatibility.md).

Run it with ``eventpipe collector`` (granian, uvloop; eventpipe.ingest.server sets the
header limits). granian calls ``__rsgi_init__`` in each worker before serving
and ``__rsgi_del__`` after its last request, which is where the producer
starts and is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eventpipe.gc_tuning import tune_gc
from eventpipe.settings import Settings
from eventpipe.ingest import metrics
from eventpipe.ingest.batch import decode, fast_batch, judge_batch, judge_single, write_key_in
from eventpipe.ingest.body import Body, decompress, too_large
from eventpipe.ingest.cors import Cors
from eventpipe.ingest.errors import RETRY_AFTER_S, Rejected, Unavailable, error_body
from eventpipe.ingest.keys import KeyRing, redact, write_key_from_basic
from eventpipe.ingest.kafka_sink import KafkaSink
from eventpipe.ingest.overflow import HotKeys
from eventpipe.ingest.quotas import Quotas
from eventpipe.ingest.sink import Sink
from eventpipe.schemas.bundle import AcceptedRequest

log = logging.getLogger("eventpipe.collector")

JSON = [("content-type", "application/json")]
OK_BODY = orjson.dumps({"success": True})
CLOSE = [("connection", "close")]

BATCH = "batch"
MAX_GRANTED_HEADERS = 10_000
_CODES = {code: str(code) for code in (200, 204, 400, 401, 404, 405, 408, 413, 415, 429, 503)}
# Segment's endpoints, plus the one-letter paths analytics.js (analytics-next) posts to.
ROUTES = {
    "/v1/batch": BATCH,
    "/v1/b": BATCH,
    "/v1/track": "track",
    "/v1/t": "track",
    "/v1/identify": "identify",
    "/v1/i": "identify",
    "/v1/page": "page",
    "/v1/p": "page",
    "/v1/screen": "screen",
    "/v1/s": "screen",
    "/v1/group": "group",
    "/v1/g": "group",
    "/v1/alias": "alias",
    "/v1/a": "alias",
}


def unknown_key() -> Rejected:
    return Rejected(401, "invalid_write_key", "unknown write key")


def missing_key() -> Rejected:
    return Rejected(
        401, "missing_write_key", "no write key: send it as the HTTP Basic username or as writeKey in the body"
    )


def client_ip(scope) -> str:
    return scope.client.rsplit(":", 1)[0]


class Collector:
    def __init__(self, settings: Settings | None = None, sink: Sink | None = None):
        """``settings`` default to the environment's and ``sink`` to a KafkaSink of them, both at start."""
        self.settings = settings
        self.keys: KeyRing | None = None
        self.cors = Cors("")
        self.sink = sink
        self.quotas = Quotas({})  # per-project quotas (eventpipe.ingest.quotas), set at start
        self.hot_keys = HotKeys(0)  # hot-key overflow (eventpipe.ingest.overflow), set at start
        # Authorization headers whose key the KeyRing granted, and what it granted: the base64 decode and the
        # salted digest (~2 us) once per header, not per request. Only granted keys (already in this process's
        # settings) are kept, and at most this many; the ring itself never changes while the process runs.
        self._granted: dict[str, object] = {}

    # --- lifecycle -------------------------------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.start())
        tune_gc()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def start(self) -> None:
        s = self.settings = self.settings or Settings.from_env()
        self.keys = KeyRing.from_settings(s)
        if not len(self.keys):
            log.warning("no write keys configured: every event request will be refused (401)")
        log.info("collector accepts %d write keys for projects %s", len(self.keys), ", ".join(self.keys.projects))
        self.cors = Cors(s.cors_origins)
        if self.sink is None:
            self.sink = KafkaSink(s)
        self.sink.start()
        self.quotas = Quotas.from_settings(s)
        await self.quotas.start()
        self.hot_keys = HotKeys.from_settings(s)

    async def stop(self) -> None:
        if self.sink:
            await self.sink.stop()
        await self.quotas.stop()

    @property
    def ready(self) -> bool:
        return self.sink is not None and self.sink.ready and self.quotas.loaded  # quota usage read: no overshoot

    # --- requests --------------------------------------------------------
    async def __rsgi__(self, scope, proto) -> None:
        path, method = scope.path, scope.method
        kind = ROUTES.get(path)
        if kind is None and path.endswith("/"):
            kind = ROUTES.get(path[:-1])
        incoming = None
        if kind is not None and method == "POST":
            incoming = Body(proto, self.settings.body_timeout_seconds)
            status, headers, body = await self._ingest(scope, incoming, kind)
        elif kind is not None and method == "OPTIONS":  # CORS preflight
            status, headers, body = 204, self.cors.preflight(scope.headers.get("origin")), b""
        elif kind is not None:
            status, headers, body = (
                405,
                JSON + [("allow", "POST, OPTIONS")],
                error_body("method_not_allowed", f"{path} takes POST"),
            )
        elif method == "GET" and path == "/healthz":
            status, headers, body = 200, JSON, b'{"alive":true}'
        elif method == "GET" and path == "/readyz":
            status, headers, body = (200, JSON, b'{"ready":true}') if self.ready else (503, JSON, b'{"ready":false}')
        elif method == "GET" and path == "/metrics":
            status, headers, body = 200, [("content-type", CONTENT_TYPE_LATEST)], generate_latest()
        else:
            status, headers, body = 404, JSON, error_body("not_found", f"no route {method} {path[:200]}")
        metrics.REQUESTS.inc((path if status != 404 else "other", _CODES.get(status) or str(status)))
        if status == 204:
            proto.response_empty(status, headers)
        else:
            proto.response_bytes(status, headers, body)
        if incoming is not None and not incoming.complete:  # refused before the whole body was read
            await incoming.discard()

    async def _ingest(self, scope, incoming: Body, kind: str) -> tuple[int, list, bytes]:
        started = time.perf_counter()
        s = self.settings
        headers = scope.headers
        cors = self.cors.headers(headers.get("origin"))
        events = 0
        try:
            authorization = headers.get("authorization")
            granted = self._granted.get(authorization)
            if granted is None and authorization is not None:
                basic = write_key_from_basic(authorization)
                if basic is not None:
                    granted = self.keys.lookup(basic)
                    if granted is None:
                        raise unknown_key()
                    if len(self._granted) < MAX_GRANTED_HEADERS:
                        self._granted[authorization] = granted
            if granted is not None and granted.bucket is not None:  # in debt already: refuse before the body
                self._check_rate(granted, 0)
            limit = s.max_batch_bytes if kind == BATCH else s.max_event_bytes
            raw = await incoming.read(headers.get("content-length"), limit)
            body = decompress(raw, headers.get("content-encoding"), limit)
            # The one pass (Rust) settles most batches; anything else (every refusal) goes the long way below.
            parsed = (
                fast_batch(body, s.max_event_bytes, s.max_batch_events, s.max_batch_bytes) if kind == BATCH else None
            )
            if parsed is not None:
                if len(body) > limit:
                    raise too_large(limit)
                if granted is None:  # no HTTP Basic: the key must be in the body
                    granted = self._key_in_body(parsed.write_key)
            else:
                doc = decode(body, limit, single=kind != BATCH)
                if granted is None:
                    granted = self._key_in_body(write_key_in(doc))
                if kind == BATCH:
                    parsed = judge_batch(doc, body, s.max_event_bytes, s.max_batch_events, s.max_batch_bytes)
                else:
                    parsed = judge_single(doc, kind)  # re-encoded without the key
                    body = parsed.body
            if kind == BATCH and parsed.write_key is not None:  # stored as sent, less the key
                body = redact(body, parsed.write_key)
            events = parsed.events
            if granted.bucket is not None:
                self._check_rate(granted, events)
            if not self.quotas.admit(granted.project, events):  # over a quota that drops: 200, nothing stored
                metrics.EVENTS.inc(("over_quota",), events)
                return 200, (JSON + cors) if cors else JSON, OK_BODY
        except Rejected as rej:
            metrics.rejected_counter(rej.code).inc()
            metrics.EVENTS.inc(("rejected",), events)
            # refused before the whole body was read: the connection cannot carry another request
            return rej.status, JSON + rej.headers + cors + ([] if incoming.complete else CLOSE), rej.body()
        except Unavailable as exc:  # quota state not read yet
            return self._unavailable(exc.code, str(exc), events, cors)
        key, overflow = self.hot_keys.route(granted.project, parsed.partition_key, events, body)
        request = AcceptedRequest(
            granted.project, int(time.time() * 1000), client_ip(scope), headers.get("user-agent") or "", body, overflow
        )
        try:
            await self.sink.submit(key, request)
        except Unavailable as exc:
            self.quotas.refund(granted.project, events)
            return self._unavailable(exc.code, str(exc), events, cors)
        except Exception:  # noqa: BLE001 - a Kafka failure (logged per bundle): nothing acked, the client retries
            self.quotas.refund(granted.project, events)
            return self._unavailable("kafka_unavailable", "the event store is unavailable; retry later", events, cors)
        metrics.EVENTS.inc(("accepted",), events)
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
        return 200, (JSON + cors) if cors else JSON, OK_BODY

    def _key_in_body(self, key: str | None):
        if key is None:
            raise missing_key()
        granted = self.keys.lookup(key)
        if granted is None:
            raise unknown_key()
        return granted

    @staticmethod
    def _check_rate(granted, events: int) -> None:
        wait = granted.bucket.take(events)
        if wait:
            raise Rejected(
                429,
                "rate_limited",
                f"this write key is over its rate limit; retry in {wait}s",
                [("retry-after", str(wait)), ("x-ratelimit-reset", str(wait))],
            )

    @staticmethod
    def _unavailable(code: str, message: str, events: int, cors: list) -> tuple[int, list, bytes]:
        metrics.rejected_counter(code).inc()
        metrics.EVENTS.inc(("unavailable",), events)
        return 503, JSON + [("retry-after", RETRY_AFTER_S)] + cors, error_body(code, message)


app = Collector()
