"""Reading exact ranges of offsets, outside the consumer group.

Recovery after an assignment must re-insert exactly the offsets a ledger batch
names (eventpipe.processors.writer). faust's stream starts at the committed offset, which
may lie inside such a range, so the ranges are read again with a plain aiokafka
consumer that has no group and commits nothing. A batch spans many partitions:
all the ranges of a recovery are read together, with one offset look-up and
one fetch loop over their partitions, not one partition after another.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


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
            self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                              group_id=None, client_id="eventpipe-processor-replay")
            await self._consumer.start()
        consumer = self._consumer
        spans: dict[int, tuple[int, int]] = {}
        for p, first, last in ranges:
            lo, hi = spans.get(p, (first, last))
            spans[p] = (min(lo, first), max(hi, last))
        tps = {p: TopicPartition(self.topic, p) for p in spans}
        ends = await consumer.end_offsets(list(tps.values()))
        beginnings = await consumer.beginning_offsets(list(tps.values()))
        todo: dict[TopicPartition, int] = {}  # partition -> the offset after the last one to read
        starts: dict[TopicPartition, int] = {}
        for p, (first, last) in spans.items():
            tp = tps[p]
            start, end = max(first, beginnings[tp]), min(last + 1, ends[tp])
            if start < end:
                todo[tp], starts[tp] = end, start
        consumer.assign(list(todo))
        for tp, start in starts.items():
            consumer.seek(tp, start)
        wanted = {p: [(first, last) for q, first, last in ranges if q == p] for p in spans}
        out: list[tuple[int, int, bytes]] = []
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, messages in fetched.items():
                for m in messages:
                    if m.offset < todo.get(tp, -1) and any(f <= m.offset <= l for f, l in wanted[tp.partition]):
                        out.append((tp.partition, m.offset, m.value))
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
        out.sort(key=lambda r: (r[0], r[1]))
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
