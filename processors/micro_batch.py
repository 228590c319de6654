"""The life of one micro-batch: recover, write, dead-letter, commit — or retry, and give it up at SIGTERM.

This is the processor's commit policy, the part the exactly-once effect rests on
(docs/exactly-once.md): partitions seen for the first time are recovered from the
ledger before anything new is written; a batch is written whole or retried with
backoff, never skipped (only store or broker failures retry, judging is total);
offsets are committed right after the write, never ahead of it; and a batch that
keeps failing while the processor stops is abandoned unacked and uncommitted, so
the next owner gets all of it. processors/health.py makes the failures loud.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pyarrow as pa

from eventpipe.compat import faust as faust_compat
from eventpipe.processors import forgetting, metrics
from eventpipe.processors.dead_letters import dead_letter
from eventpipe.processors.health import WriteHealth
from eventpipe.processors.kafka_ranges import KafkaRangeReader
from eventpipe.processors.writer import EventWriter, Record

log = logging.getLogger("eventpipe.processor")


class MicroBatches:
    """Writes and commits the micro-batches of one faust app; ``writer`` and ``reader`` are built on first use."""

    def __init__(self, app, dlq_topic, health: WriteHealth, writer, reader):
        self.app = app
        self.dlq_topic = dlq_topic
        self.health = health
        self.writer: Callable[[], EventWriter] = writer
        self.reader: Callable[[], KafkaRangeReader] = reader

    async def handle(self, records: list[Record], events) -> bool:
        """Write ``records`` and commit their offsets; False if the batch was abandoned (the processor stops)."""
        if not await self._write_with_retry(records):
            self._abandon(events)
            return False
        await self._commit_written(events)
        return True

    def _write_blocking(self, records: list[Record]) -> list[pa.Table]:
        """Decode and insert one micro-batch (blocking: runs in a thread so the event loop keeps going)."""
        started = time.perf_counter()
        with forgetting.EXCLUSIVE:  # a forget's rollup recompute runs between batches (processors/forgetting.py)
            rows, rejected = self.writer().write(records)
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.observe(rows)
        metrics.EVENTS_WRITTEN.inc(rows)
        return rejected

    async def _send_dead_letters(self, rejected: list[pa.Table]) -> None:
        """Each rejected event (or undecodable record) as a JSON record of events.dlq; waits for the acks."""
        pending = []
        for table in rejected:
            for row in table.to_pylist():
                metrics.EVENTS_REJECTED.labels(row["reason"]).inc()
                pending.append(await self.dlq_topic.send(key=row["project"].encode(), value=dead_letter(row)))
        if pending:
            await asyncio.gather(*pending)

    async def _write_with_retry(self, records: list[Record]) -> bool:
        """Recover partitions seen for the first time (all of this batch's together), then write; on failure
        retry with backoff, never skip.

        Returns False when the processor began to stop while the batch kept failing: the retry loop
        then gives up at once (also out of its backoff sleep) instead of holding SIGTERM until SIGKILL.
        A healthy batch in flight at SIGTERM is still written (and committed) before the process exits."""
        app, health = self.app, self.health
        delay = 0.5
        while True:
            if app.should_stop and health.failures:
                return False  # stopping while the store fails: not even one more attempt
            try:
                writer = self.writer()
                starts: dict[int, int] = {}
                for partition, offset, _ in records:
                    if partition not in writer.recovered:
                        starts[partition] = min(offset, starts.get(partition, offset))
                if starts:
                    rows, rejected = await writer.recover(starts, self.reader().read, asyncio.to_thread)
                    metrics.EVENTS_REPLAYED.inc(rows)
                    await self._send_dead_letters(rejected)
                await self._send_dead_letters(await asyncio.to_thread(self._write_blocking, records))
                health.written()
                return True
            except Exception as exc:  # noqa: BLE001 - the store or Kafka failed: wait, then the same batch again
                metrics.STORE_ERRORS.inc()
                health.failed(exc)
                if app.should_stop:
                    return False
                log.warning("micro-batch write failed (%r); retrying in %.1fs, offsets not committed", exc, delay)
                await app.sleep(delay)  # wakes early when the processor stops
                delay = min(delay * 2, 30.0)

    def _abandon(self, events) -> None:
        """Give up a batch that was not written, so that faust neither commits it nor waits for it.

        At SIGTERM faust waits until every message its streams took is acked, then commits what was
        acked; and ``take_events`` acks the batch it yielded whenever the loop body exits, even by an
        exception. Marking the messages ``acked`` by hand (not through ``Consumer.ack``) ends both
        waits without adding their offsets to the committable ones: the commit stops before the first
        of them, and the next owner gets the whole batch again."""
        for event in events:
            event.message.acked = True
        self.health.abandoned()
        log.warning(
            "stopping: abandoned a micro-batch of %d records that could not be written; its offsets are not committed",
            len(events),
        )

    async def _commit_written(self, events) -> None:
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
            await faust_compat.commit_offsets(self.app.consumer, written)
        except Exception as exc:  # noqa: BLE001 - faust commits again at its interval; the ledger covers replays
            log.info("early commit failed (%r); faust's periodic commit follows", exc)
