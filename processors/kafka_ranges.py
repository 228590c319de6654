"""Reading offsets of partitions up to a known end, outside any consumer group: the one loop for it.

Three readers need "read these partitions from here to there, then stop":
recovery after an assignment re-inserts exactly the offsets a ledger batch
names (eventpipe.processors.writer; faust's stream starts at the committed
offset, which may lie inside such a range), ``eventpipe dlq replay`` reads
the dead-letter topic to its end, and tests read what the collector wrote.
All use :func:`read_ranges`: a plain aiokafka consumer with no group that
commits nothing, one offset look-up and one fetch loop over all the
partitions, not one partition after another, and an end fixed before the
loop starts, so records written meanwhile do not keep it going.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord


async def read_ranges(
    consumer: AIOKafkaConsumer, spans: dict[TopicPartition, tuple[int, int]], timeout_ms: int = 1000
) -> AsyncIterator[list[ConsumerRecord]]:
    """Records of each partition from ``spans[tp][0]`` up to (not including) ``spans[tp][1]``, in batches.

    Spans are clamped to what the log holds now (retention may have removed the start, the end may not
    be written yet). ``consumer`` is (re)assigned to exactly these partitions."""
    tps = list(spans)
    beginnings = await consumer.beginning_offsets(tps) if tps else {}
    ends = await consumer.end_offsets(tps) if tps else {}
    todo: dict[TopicPartition, int] = {}  # partition -> the offset after the last one to read
    starts: dict[TopicPartition, int] = {}
    for tp, (first, stop) in spans.items():
        start, end = max(first, beginnings[tp]), min(stop, ends[tp])
        if start < end:
            todo[tp], starts[tp] = end, start
    consumer.assign(list(todo))
    for tp, start in starts.items():
        consumer.seek(tp, start)
    while todo:
        fetched = await consumer.getmany(*todo, timeout_ms=timeout_ms)
        for tp, messages in fetched.items():
            end = todo.get(tp, -1)
            batch = [m for m in messages if m.offset < end]
            if batch:
                yield batch
        for tp in list(todo):
            if await consumer.position(tp) >= todo[tp]:
                del todo[tp]


async def read_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], last: int | None = None
) -> AsyncIterator[list[ConsumerRecord]]:
    """Records of ``tps`` from the beginning (or only the ``last`` N of each) to the end they have now."""
    ends = await consumer.end_offsets(tps) if tps else {}
    spans = {tp: (0 if last is None else ends[tp] - last, ends[tp]) for tp in tps}
    async for batch in read_ranges(consumer, spans):
        yield batch


class KafkaRangeReader:
    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, ranges: list[tuple[int, int, int]]) -> list[tuple[int, int, bytes]]:
        """The records of the ranges [(partition, first, last)] as (partition, offset, value), in partition and
        offset order; fewer if retention removed some."""
        if not ranges:
            return []
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                group_id=None,
                client_id="eventpipe-processor-replay",
            )
            await self._consumer.start()
        spans: dict[int, tuple[int, int]] = {}
        for p, first, last in ranges:
            lo, hi = spans.get(p, (first, last))
            spans[p] = (min(lo, first), max(hi, last))
        wanted = {p: [(first, last) for q, first, last in ranges if q == p] for p in spans}
        out: list[tuple[int, int, bytes]] = []
        async for batch in read_ranges(
            self._consumer, {TopicPartition(self.topic, p): (first, last + 1) for p, (first, last) in spans.items()}
        ):
            out += [
                (m.partition, m.offset, m.value)
                for m in batch
                if any(f <= m.offset <= l for f, l in wanted[m.partition])
            ]
        out.sort(key=lambda r: (r[0], r[1]))
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
