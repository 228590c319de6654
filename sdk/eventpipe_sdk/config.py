"""Every knob of the SDK in one place, with its default and the reason for it.

Both clients take the same options (``Client(write_key, host, **options)``),
so they are declared once here and checked once, when the client is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from urllib.parse import urlsplit

DEFAULT_HOST = "http://127.0.0.1:8080"


@dataclasses.dataclass(frozen=True)
class Config:
    # The write key (sent as the HTTP Basic username) picks the project.
    write_key: str
    # Base URL of the collector, or of any Segment-compatible endpoint; requests go to {host}/v1/batch.
    host: str = DEFAULT_HOST

    # A batch is sent when it holds this many events ...
    max_batch_events: int = 100
    # ... or when one more event would take its JSON body past this many bytes (uncompressed:
    # the collector's limit, 500 KiB, applies after gunzip; this leaves room below it) ...
    max_batch_bytes: int = 500_000
    # ... or when its oldest event has waited this many seconds.
    flush_interval: float = 0.5
    # An event whose JSON is larger than this is dropped (and counted): the Segment limit, 32 KiB.
    max_event_bytes: int = 32 * 1024
    # Events waiting to be sent; further events are dropped (and counted) rather than using unbounded memory.
    max_queue_size: int = 10_000

    # A failed request (429, 5xx, no connection) is retried this many times ...
    max_retries: int = 8
    # ... after a random delay in [0, min(backoff_max, backoff_base * 2**retry)] ("full jitter"),
    # and never sooner than the server's Retry-After.
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # Seconds for one HTTP request (connect + send + answer); the collector answers after Kafka acked.
    timeout: float = 10.0
    # Gzip request bodies (the collector and Segment accept Content-Encoding: gzip).
    gzip: bool = True
    # Called with a `DeliveryError` for every batch given up (rejected, out of retries, shutdown), on the
    # sending thread: keep it quick, and don't call flush() or shutdown() from it.
    on_error: Callable | None = None

    def __post_init__(self) -> None:
        if not self.write_key or not isinstance(self.write_key, str):
            raise ValueError("write_key must be a non-empty string")
        parts = urlsplit(self.host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"host must be an http(s) URL, got {self.host!r}")
        if self.max_event_bytes > self.max_batch_bytes - 64:
            raise ValueError("max_event_bytes must leave room for the batch envelope under max_batch_bytes")
        for name in ("max_batch_events", "max_batch_bytes", "max_event_bytes", "max_queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("flush_interval", "max_retries", "backoff_base", "backoff_max", "timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def batch_url(self) -> str:
        return self.host.rstrip("/") + "/v1/batch"
