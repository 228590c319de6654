"""The sink contract: the three things the collector's HTTP side needs from wherever accepted requests go.

``submit`` writes one accepted request durably, or raises (`Unavailable` for
a 503 with Retry-After; any other exception is answered 503 too), and
returns only once it is durable: the client's 200 waits for it. ``ready``
says whether a load balancer should send traffic here (``/readyz``).
``start`` (called on the worker's event loop, before the first request) and
``stop`` (after the last one: flush what was accepted) bracket its life.

The collector receives its sink (eventpipe.ingest.app.Collector); the Kafka
sink (eventpipe.ingest.kafka_sink) is the default, the memory sink
(eventpipe.ingest.memory_sink) serves tests and benchmarks. Nothing else of a
sink is used by the HTTP side, so a new one implements these four members.
"""

from __future__ import annotations

from typing import Protocol

from eventpipe.schemas.bundle import AcceptedRequest


class Sink(Protocol):
    @property
    def ready(self) -> bool:
        """Whether this collector should get traffic (its store answers)."""
        ...

    async def submit(self, key: bytes, request: AcceptedRequest) -> None:
        """Return once ``request`` is durable; raise if it is not. ``key`` is its partition key
        (eventpipe.ingest.partitioning): requests of one key keep their order."""
        ...

    def start(self) -> None:
        """Begin (connect, start background tasks); called on the serving event loop."""
        ...

    async def stop(self) -> None:
        """Flush what was submitted and release everything."""
        ...
