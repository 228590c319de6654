"""The faust-streaming processor: events.raw bundles → ClickHouse ``events``, in micro-batches.

faust is the worker, consumer-group and web runtime; the state of record is
ClickHouse plus committed Kafka offsets (DESIGN.md §4). ``take_events`` acks a
micro-batch only after the loop body, i.e. after its ClickHouse insert, so an
offset is never committed ahead of the rows before it.

A batch that keeps failing is retried, never skipped, and made loud
(processors/health.py): ``/readyz`` answers 503 after ``processor_stall_seconds``
of failures, two gauges count the failures and the age of the oldest unwritten
record, and SIGTERM gives the batch up (nothing of it committed) rather than
waiting for a store that may not come back.

In embedded mode this process owns the chDB store directory, so it also serves
read-only SQL for analysts at ``/query`` on its web port (``eventpipe query``).
Run it with ``eventpipe processor``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import faust
import pyarrow as pa
import faust.web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from eventpipe.compat import aiokafka as aiokafka_compat
from eventpipe.compat import faust as faust_compat
from eventpipe.gc_tuning import tune_gc
from eventpipe.settings import Settings
from eventpipe.store import Store
from eventpipe.processors.kafka_ranges import KafkaRangeReader
from eventpipe.processors import dashboard, logs
from eventpipe.processors.dead_letters import dead_letter
from eventpipe.processors.health import WriteHealth
from eventpipe.processors.rows import Rules
from eventpipe.processors.writer import EventWriter, Record

log = logging.getLogger("eventpipe.processor")
settings = Settings.from_env()

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
dlq_topic = app.topic(settings.topic_dlq, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")

EVENTS_WRITTEN = Counter("eventpipe_processor_events_written_total", "Rows written to ClickHouse events")
EVENTS_REPLAYED = Counter("eventpipe_processor_events_replayed_total",
                          "Rows re-inserted from the ledger after an assignment (dropped again by token)")
EVENTS_REJECTED = Counter("eventpipe_processor_events_rejected_total", "Events sent to the dead-letter topic",
                          ["reason"])
STORE_ERRORS = Counter("eventpipe_processor_store_errors_total", "Failed micro-batch writes (retried)")
BATCH_ROWS = Histogram("eventpipe_processor_batch_rows", "Rows per micro-batch",
                       buckets=(10, 100, 1e3, 5e3, 1e4, 5e4, 1e5, 5e5))
INSERT_SECONDS = Histogram("eventpipe_processor_insert_seconds", "Decode+insert time of one micro-batch")
FRESHNESS = Histogram("eventpipe_freshness_seconds", "Time from collector receipt to the row being queryable",
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
LAG = Gauge("eventpipe_processor_lag_records", "Records in events.raw not yet processed", ["partition"])
health = WriteHealth(settings.processor_stall_seconds)
health.export()


@functools.cache
def store() -> Store:
    s = Store(settings)
    applied = s.migrate()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return s


@functools.cache
def writer() -> EventWriter:
    return EventWriter(store(), settings.topic_raw, Rules.from_settings(settings), settings.processor_batch_max_bytes)


@functools.cache
def replay_reader() -> KafkaRangeReader:
    return KafkaRangeReader(settings.kafka_bootstrap, settings.topic_raw)


def write_batch(records: list[Record]) -> list[pa.Table]:
    """Decode and insert one micro-batch (blocking: runs in a thread so the event loop keeps going)."""
    started = time.perf_counter()
    rows, rejected = writer().write(records)
    INSERT_SECONDS.observe(time.perf_counter() - started)
    BATCH_ROWS.observe(rows)
    EVENTS_WRITTEN.inc(rows)
    return rejected


@app.task
async def open_store() -> None:
    await asyncio.to_thread(store)
    tune_gc()  # start-up is over: what it made is frozen, and the young generation is collected less often


@app.on_partitions_assigned.connect
async def on_assigned(sender, assigned, **kwargs) -> None:
    writer().reset()


async def send_dead_letters(rejected: list[pa.Table]) -> None:
    """Each rejected event (or undecodable record) as a JSON record of events.dlq; waits for the acks."""
    pending = []
    for table in rejected:
        for row in table.to_pylist():
            EVENTS_REJECTED.labels(row["reason"]).inc()
            pending.append(await dlq_topic.send(key=row["project"].encode(), value=dead_letter(row)))
    if pending:
        await asyncio.gather(*pending)


async def _write_with_retry(records: list[Record]) -> bool:
    """Recover partitions seen for the first time (all of this batch's together), then write; on failure retry
    with backoff, never skip.

    Returns False when the processor began to stop while the batch kept failing: the retry loop
    then gives up at once (also out of its backoff sleep) instead of holding SIGTERM until SIGKILL.
    A healthy batch in flight at SIGTERM is still written (and committed) before the process exits."""
    delay = 0.5
    while True:
        if app.should_stop and health.failures:
            return False  # stopping while the store fails: not even one more attempt
        try:
            starts: dict[int, int] = {}
            for partition, offset, _ in records:
                if partition not in writer().recovered:
                    starts[partition] = min(offset, starts.get(partition, offset))
            if starts:
                rows, rejected = await writer().recover(starts, replay_reader().read, asyncio.to_thread)
                EVENTS_REPLAYED.inc(rows)
                await send_dead_letters(rejected)
            await send_dead_letters(await asyncio.to_thread(write_batch, records))
            health.written()
            return True
        except Exception as exc:  # noqa: BLE001 - the store or Kafka failed: wait, then the same batch again
            STORE_ERRORS.inc()
            health.failed(exc)
            if app.should_stop:
                return False
            log.warning("micro-batch write failed (%r); retrying in %.1fs, offsets not committed", exc, delay)
            await app.sleep(delay)  # wakes early when the processor stops
            delay = min(delay * 2, 30.0)


def _abandon(events) -> None:
    """Give up a batch that was not written, so that faust neither commits it nor waits for it.

    At SIGTERM faust waits until every message its streams took is acked, then commits what was
    acked; and ``take_events`` acks the batch it yielded whenever the loop body exits, even by an
    exception. Marking the messages ``acked`` by hand (not through ``Consumer.ack``) ends both
    waits without adding their offsets to the committable ones: the commit stops before the first
    of them, and the next owner gets the whole batch again."""
    for event in events:
        event.message.acked = True
    health.abandoned()
    log.warning("stopping: abandoned a micro-batch of %d records that could not be written; "
                "its offsets are not committed", len(events))


async def _write_and_commit(records: list[Record], events) -> bool:
    if not await _write_with_retry(records):
        _abandon(events)
        return False
    await _commit_written(events)
    return True


async def _commit_written(events) -> None:
    """Commit what was just written, now rather than at faust's next interval.

    faust forgets acked-but-uncommitted offsets when partitions are revoked, so the new
    owner would replay them. With a shared ClickHouse the ledger makes that harmless;
    with per-process embedded stores it would duplicate rows across stores. Committing
    right after each write shrinks that window to this one call (faust's own commit path,
    which skips partitions no longer assigned: eventpipe.compat.faust.commit_offsets)."""
    written: dict = {}
    for e in events:
        tp = e.message.tp
        written[tp] = max(written.get(tp, -1), e.message.offset + 1)
    try:
        await faust_compat.commit_offsets(app.consumer, written)
    except Exception as exc:  # noqa: BLE001 - faust commits again at its interval; the ledger covers replays
        log.info("early commit failed (%r); faust's periodic commit follows", exc)


@app.agent(raw_topic)
async def write_events(stream):
    # take_events acks a batch only after this loop body: offsets follow the inserts, never lead them.
    async for events in stream.take_events(settings.processor_batch_records, within=settings.processor_batch_seconds):
        records = [(e.message.partition, e.message.offset, e.value) for e in events]
        health.started(min(e.message.timestamp for e in events))  # faust: seconds
        work = asyncio.ensure_future(_write_and_commit(records, events))
        try:
            written = await asyncio.shield(work)
        except asyncio.CancelledError:  # the agent is stopped: finish (or abandon) the batch in hand first
            await work
            raise
        if written:
            # the record timestamp is when the collector closed the bundle (<= one bundle window after receipt)
            FRESHNESS.observe(time.time() - min(e.message.timestamp for e in events))


_empty_since: list[float] = []


async def _rejoin_if_assigned_nothing(consumer) -> None:
    """Rejoin the group when this processor has had no partition for a while.

    A processor that joins while the broker is still loading its metadata (e.g. right
    after a broker restart) is assigned nothing ("Ignoring missing topic") and, since
    nobody else joins or leaves, would idle forever. Replicas are capped at the
    partition count (deploy/k8s), so an empty assignment is never the intended state.
    A rejoin alone assigns nothing again: the client keeps metadata without the topic
    until ``metadata.max.age`` (5 minutes), so the metadata is refreshed first
    (tests/test_processor_faults.py reproduces it by creating the topic late)."""
    if consumer.assignment():
        _empty_since.clear()
        return
    now = time.monotonic()
    if not _empty_since:
        _empty_since.append(now)
    elif now - _empty_since[0] > 3 * settings.processor_session_timeout:
        log.warning("no partitions assigned for %.0fs: rejoining the consumer group", now - _empty_since[0])
        _empty_since[0] = now
        await faust_compat.rejoin_group(consumer)


@app.timer(interval=5.0)
async def report_lag() -> None:
    consumer = app.consumer
    await _rejoin_if_assigned_nothing(consumer)
    for tp in consumer.assignment():
        position, highwater = await consumer.position(tp), consumer.highwater(tp)
        if position is not None and highwater is not None:  # both unknown while the broker is away
            LAG.labels(str(tp.partition)).set(max(0, highwater - position))


@app.page("/query")
class QueryView(faust.web.View):
    """Read-only SQL over the store this process owns (``GET ?sql=`` or ``POST`` body)."""

    async def get(self, request):
        return await self._run(request.query.get("sql", ""))

    async def post(self, request):
        return await self._run(await request.text())

    async def _run(self, sql: str):
        if not sql.strip():
            return self.json({"error": "send SQL as the POST body or ?sql="}, status=400)
        try:
            result = await asyncio.to_thread(store().query, sql, True)
        except Exception as exc:  # noqa: BLE001 - the analyst sees ClickHouse's own message
            return self.json({"error": str(exc)}, status=400)
        return self.json(result.to_json())


@app.page("/healthz")
async def healthz(web, request):
    """Liveness: the web server runs on the worker's event loop, so an answer means the loop is not blocked."""
    return web.json({"ok": True})


@app.page("/readyz")
async def readyz(web, request):
    """Readiness: 503 once writes have failed without a break for ``processor_stall_seconds``; 200 again after
    the next successful write."""
    state = health.state()
    return web.json(state, status=503 if state["stalled"] else 200)


@app.page("/metrics")
async def prometheus(web, request):
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


dashboard.register(app, store, health=health)


def main() -> None:
    aiokafka_compat.check()  # the private names this process uses: a clear error now, not in the rare state
    faust_compat.check()
    # faust, mode and aiokafka at warning level, this process's own loggers at info (processors/logs.py);
    # "info" here only keeps faust's terminal spinner off, and print() goes to stdout as it is
    worker = faust.Worker(app, loglevel="info", logging_config=logs.install(app), redirect_stdouts=False)
    worker.execute_from_commandline()
