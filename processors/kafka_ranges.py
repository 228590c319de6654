"""Reading an exact range of offsets of one partition, outside the consumer group.

Recovery after an assignment must re-insert exactly the offsets a ledger range
names (processors.writer). faust's stream starts at the committed offset, which
may lie inside such a range, so the range is read again with a plain aiokafka
consumer that has no group and commits nothing.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


class KafkaRangeReader:
    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, partition: int, first: int, last: int) -> list[tuple[int, int, bytes]]:
        """Records [first, last] of ``partition`` as (partition, offset, value); fewer if retention removed some."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                              group_id=None, client_id="eventpipe-processor-replay")
            await self._consumer.start()
        consumer = self._consumer
        tp = TopicPartition(self.topic, partition)
        consumer.assign([tp])
        end = min(last + 1, (await consumer.end_offsets([tp]))[tp])
        start = max(first, (await consumer.beginning_offsets([tp]))[tp])
        consumer.seek(tp, start)
        out: list[tuple[int, int, bytes]] = []
        while start < end and (await consumer.position(tp)) < end:
            for message in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if message.offset <= last:
                    out.append((partition, message.offset, message.value))
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
