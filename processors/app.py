"""The faust-streaming processor: events.raw bundles → ClickHouse ``events``, in micro-batches.

faust is the worker, consumer-group and web runtime; the state of record is
ClickHouse plus committed Kafka offsets (DESIGN.md §4). ``take_events`` acks a
micro-batch only after the loop body, i.e. after its ClickHouse insert, so an
offset is never committed ahead of the rows before it.

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
import faust.web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from eventpipe.settings import Settings
from eventpipe.store import Store
from processors.rows import bundles_to_table

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
)
raw_topic = app.topic(settings.topic_raw, value_type=bytes, value_serializer="raw")

EVENTS_WRITTEN = Counter("eventpipe_processor_events_written_total", "Rows written to ClickHouse events")
BATCH_ROWS = Histogram("eventpipe_processor_batch_rows", "Rows per ClickHouse insert",
                       buckets=(10, 100, 1e3, 5e3, 1e4, 5e4, 1e5, 5e5))
INSERT_SECONDS = Histogram("eventpipe_processor_insert_seconds", "Decode+insert time of one micro-batch")
FRESHNESS = Histogram("eventpipe_freshness_seconds", "Time from collector receipt to the row being queryable",
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))


@functools.cache
def store() -> Store:
    s = Store(settings)
    applied = s.migrate()
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return s


def write_batch(records: list[tuple[int, int, bytes]]) -> int:
    """Decode and insert one micro-batch; runs in a thread so the event loop keeps heartbeating."""
    started = time.perf_counter()
    table = bundles_to_table(records)
    store().insert_arrow("events", table)
    now_ms = time.time() * 1000
    oldest = table.column("received_at").cast("int64")
    FRESHNESS.observe((now_ms - oldest[0].as_py()) / 1000 if len(oldest) else 0)
    BATCH_ROWS.observe(table.num_rows)
    INSERT_SECONDS.observe(time.perf_counter() - started)
    EVENTS_WRITTEN.inc(table.num_rows)
    return table.num_rows


@app.task
async def open_store() -> None:
    await asyncio.to_thread(store)


@app.agent(raw_topic)
async def write_events(stream):
    async for events in stream.take_events(settings.processor_batch_records, within=settings.processor_batch_seconds):
        records = [(e.message.partition, e.message.offset, e.value) for e in events]
        rows = await asyncio.to_thread(write_batch, records)
        log.debug("wrote %d rows from %d records", rows, len(records))


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


@app.page("/metrics")
async def prometheus(web, request):
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def main() -> None:
    faust.Worker(app, loglevel="info").execute_from_commandline()
