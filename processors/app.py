"""The faust-streaming processor: events.raw bundles → ClickHouse ``events``, in micro-batches.

faust is the worker, consumer-group and web runtime; the state of record is
ClickHouse plus committed Kafka offsets (docs/exactly-once.md). ``take_events``
acks a micro-batch only after the loop body, i.e. after its ClickHouse insert,
so an offset is never committed ahead of the rows before it.

This module only wires: :func:`create_app` builds the faust app from one
``Settings`` and hands each job to its module — the life of a micro-batch
(processors/micro_batch.py: recovery, retry, dead letters, commit, abandon),
write health (processors/health.py), metrics (processors/metrics.py), the
consumer-group watchdog (processors/membership.py), the web pages
(processors/pages.py) and the dashboard (processors/dashboard.py).
Run it with ``eventpipe processor``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import faust

from eventpipe.compat import aiokafka as aiokafka_compat
from eventpipe.compat import faust as faust_compat
from eventpipe.gc_tuning import tune_gc
from eventpipe.processors import dashboard, forgetting, logs, metrics, pages, quota_usage
from eventpipe.processors.health import WriteHealth
from eventpipe.processors.kafka_ranges import KafkaRangeReader
from eventpipe.processors.membership import Membership
from eventpipe.processors.micro_batch import MicroBatches
from eventpipe.processors.rows import Rules
from eventpipe.processors.writer import EventWriter
from eventpipe.settings import Settings
from eventpipe.store import Store

log = logging.getLogger("eventpipe.processor")


def create_app(settings: Settings) -> faust.App:
    """The processor's faust app for ``settings``: its agent, timers and pages registered (one per process:
    the metrics it exports are process-wide)."""
    app = faust.App(
        "eventpipe-processor",
        broker=f"kafka://{settings.kafka_bootstrap}",
        web_bind=settings.processor_web_host,
        web_port=settings.processor_web_port,
        web_host=settings.processor_web_host,
        datadir=str(settings.data_dir / "faust"),  # not the working directory
        topic_disable_leader=True,
        topic_allow_declare=False,  # topics are specs in schemas/topics.py, created by whoever runs the broker
        consumer_auto_offset_reset="earliest",
        value_serializer="raw",
        broker_commit_interval=1.0,
        # a killed processor's partitions move to the others after this long
        broker_session_timeout=settings.processor_session_timeout,
        broker_heartbeat_interval=settings.processor_session_timeout / 4,
    )
    raw_topic = app.topic(settings.topic_raw, value_type=bytes, value_serializer="raw")
    dlq_topic = app.topic(
        settings.topic_dlq, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    health = WriteHealth(settings.processor_stall_seconds)
    health.export()

    @functools.cache
    def store() -> Store:
        s = Store(settings)
        applied = s.migrate()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        return s

    suppressor = forgetting.Suppressor(settings.topic_raw)

    @functools.cache
    def writer() -> EventWriter:
        suppressor.refresh(store())  # before the first batch: a forgotten id is not stored even right after a start
        return EventWriter(
            store(),
            settings.topic_raw,
            Rules.from_settings(settings),
            settings.processor_batch_max_bytes,
            suppress=suppressor.apply,
        )

    @functools.cache
    def replay_reader() -> KafkaRangeReader:
        return KafkaRangeReader(settings.kafka_bootstrap, settings.topic_raw)

    batches = MicroBatches(app, dlq_topic, health, writer, replay_reader)
    membership = Membership(settings.processor_session_timeout)

    @app.task
    async def open_store() -> None:
        await asyncio.to_thread(store)
        tune_gc()  # start-up is over: what it made is frozen, and the young generation is collected less often

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs) -> None:
        writer().reset()

    @app.agent(raw_topic)
    async def write_events(stream):
        # take_events acks a batch only after this loop body: offsets follow the inserts, never lead them.
        async for events in stream.take_events(
            settings.processor_batch_records, within=settings.processor_batch_seconds
        ):
            records = [(e.message.partition, e.message.offset, e.value) for e in events]
            health.started(min(e.message.timestamp for e in events))  # faust: seconds
            work = asyncio.ensure_future(batches.handle(records, events))
            try:
                written = await asyncio.shield(work)
            except asyncio.CancelledError:  # the agent is stopped: finish (or abandon) the batch in hand first
                await work
                raise
            if written:
                # the record timestamp is when the collector closed the bundle (<= one bundle window after receipt)
                metrics.FRESHNESS.observe(time.time() - min(e.message.timestamp for e in events))

    @app.timer(interval=5.0)
    async def watch_membership() -> None:
        await membership.check(app.consumer)

    pages.register(app, store, health)
    dashboard.register(app, store, settings, health=health)
    forgetting.register(app, store, settings, suppressor)
    quota_usage.register(app, store, settings)
    return app


def main(settings: Settings | None = None) -> None:
    aiokafka_compat.check()  # the private names this process uses: a clear error now, not in the rare state
    faust_compat.check()
    app = create_app(settings or Settings.from_env())
    # faust, mode and aiokafka at warning level, this process's own loggers at info (processors/logs.py);
    # "info" here only keeps faust's terminal spinner off, and print() goes to stdout as it is
    worker = faust.Worker(app, loglevel="info", logging_config=logs.install(app), redirect_stdouts=False)
    worker.execute_from_commandline()
