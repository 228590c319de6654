"""The real collector with one thing changed, to measure a proposed change before making it.

(Record compression is a setting now, EVENTPIPE_RECORD_COMPRESSION: the collector-lz4/-zstd/-none servers
run the plain collector with it.) Everything else is ``eventpipe collector``.
``EVENTPIPE_BENCH_NULL_SINK=1`` answers 200 without writing to Kafka (see below).
``EVENTPIPE_BENCH_TIMER_SINK=1`` suspends each request until a 5 ms tick answers all waiting ones.
Used by ``eventpipe bench collector --servers bare collector collector-nullsink collector-timersink``.
"""

import os
import sys

if os.environ.get("EVENTPIPE_BENCH_NULL_SINK"):
    # Everything of the collector but the Kafka write: submit returns at once (no bundle, no ack,
    # no suspension). Its distance to the bare server is the HTTP-side cost; its distance to the
    # real collector is what bundling + aiokafka + waiting for the ack cost.
    import eventpipe.ingest.sink

    async def _null_submit(self, key, request):
        return None

    eventpipe.ingest.sink.KafkaSink.submit = _null_submit

if os.environ.get("EVENTPIPE_BENCH_TIMER_SINK"):
    # The collector's suspension without Kafka: every request waits on its own future, and one
    # timer answers all waiting requests every 5 ms (the bundle window). Its distance to the
    # null sink is what suspending a request costs; its distance to the real collector is what
    # bundles and aiokafka cost.
    import asyncio

    import eventpipe.ingest.sink

    _waiting: list = []

    def _answer_all() -> None:
        waiting = _waiting[:]
        _waiting.clear()
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    async def _timer_submit(self, key, request):
        loop = asyncio.get_running_loop()
        if not _waiting:
            loop.call_later(0.005, _answer_all)
        fut = loop.create_future()
        _waiting.append(fut)
        await fut

    eventpipe.ingest.sink.KafkaSink.submit = _timer_submit

from eventpipe.cli import main  # noqa: E402

sys.exit(main(["collector"]))
