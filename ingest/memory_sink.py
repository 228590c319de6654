"""A sink that keeps accepted requests in memory: the collector without Kafka, for tests and benchmarks.

It implements the sink contract (eventpipe.ingest.sink.Sink) and answers at
once. Tests read what reached it (``requests``, ``events``) and can make it
fail (``failure``) or unready; benchmarks use ``keep=False`` (a null sink) to
measure the HTTP side alone.
"""

from __future__ import annotations

import orjson

from eventpipe.schemas.bundle import AcceptedRequest


class MemorySink:
    def __init__(self, keep: bool = True):
        self.keep = keep
        self.requests: list[tuple[bytes, AcceptedRequest]] = []  # (partition key, request), in submit order
        self.ready = True
        self.failure: BaseException | None = None  # raised by every submit while set
        self.started = self.stopped = False

    async def submit(self, key: bytes, request: AcceptedRequest) -> None:
        if self.failure is not None:
            raise self.failure
        if self.keep:
            self.requests.append((key, request))

    def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def events(self) -> list[dict]:
        """Every event that reached the sink, in order, as stored (each with its request's ``project``)."""
        return [
            {**event, "project": request.project}
            for _, request in self.requests
            for event in orjson.loads(request.body)["batch"]
        ]
