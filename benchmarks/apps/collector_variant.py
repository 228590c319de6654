"""The real collector with another sink passed in, to measure what the Kafka side costs.

(Record compression is a setting now, EVENTPIPE_RECORD_COMPRESSION: the collector-lz4/-zstd/-none servers
run the plain collector with it.) Everything but the sink is ``eventpipe collector``: the same handler,
served by granian with the same limits (eventpipe.ingest.server), given its sink through
``Collector(sink=...)``; nothing is patched.

* ``EVENTPIPE_BENCH_NULL_SINK=1``: a MemorySink that keeps nothing; submit returns at once (no bundle, no
  ack, no suspension). Its distance to the bare server is the HTTP-side cost; its distance to the real
  collector is what bundling + aiokafka + waiting for the ack cost.
* ``EVENTPIPE_BENCH_TIMER_SINK=1``: :class:`TimerSink`, the collector's suspension without Kafka. Its
  distance to the null sink is what suspending a request costs; its distance to the real collector is
  what bundles and aiokafka cost.

Used by ``eventpipe bench collector --servers bare collector collector-nullsink collector-timersink``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from eventpipe.ingest.app import Collector
from eventpipe.ingest.memory_sink import MemorySink


class TimerSink:
    """Every request waits on its own future, and one timer answers all waiting requests every 5 ms
    (the bundle window)."""

    ready = True

    def __init__(self, window_s: float = 0.005):
        self.window_s = window_s
        self._waiting: list[asyncio.Future] = []

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._answer_all()

    def _answer_all(self) -> None:
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    async def submit(self, key, request) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_later(self.window_s, self._answer_all)
        fut = loop.create_future()
        self._waiting.append(fut)
        await fut


def _sink():
    if os.environ.get("EVENTPIPE_BENCH_NULL_SINK"):
        return MemorySink(keep=False)
    if os.environ.get("EVENTPIPE_BENCH_TIMER_SINK"):
        return TimerSink()
    return None  # the Kafka sink


app = Collector(sink=_sink())  # what granian's workers serve: they import this file as collector_variant

if __name__ == "__main__":
    from eventpipe.ingest.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(target="collector_variant:app")
