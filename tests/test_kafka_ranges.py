"""The one "read partitions up to a known end" loop (eventpipe.processors.kafka_ranges), on the real broker."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventpipe.broker import ensure_topics
from eventpipe.processors.kafka_ranges import KafkaRangeReader, read_ranges, read_to_end
from eventpipe.schemas.topics import TopicSpec


def test_reads_stop_at_the_end_fixed_before_the_loop_and_clamp_to_the_log(broker):
    topic = f"ranges-{uuid.uuid4().hex[:8]}"

    async def scenario():
        await ensure_topics(broker.bootstrap, [TopicSpec(topic, partitions=3, retention_ms=3_600_000)])
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            for p in range(3):
                for i in range(5 * p):  # partition 0 stays empty
                    await producer.send_and_wait(topic, f"{p}-{i}".encode(), partition=p)
            tps = [TopicPartition(topic, p) for p in range(3)]
            everything, last_two = [], []
            async for batch in read_to_end(consumer, tps):
                everything += [m.value for m in batch]
                # written while reading: past the end fixed at the start, so not read and no endless loop
                await producer.send_and_wait(topic, b"late", partition=0)
            async for batch in read_to_end(consumer, tps[1:], last=2):
                last_two += [(m.partition, m.offset) for m in batch]
            clamped = [m.offset async for batch in read_ranges(consumer, {tps[1]: (-3, 99)}) for m in batch]
            reader = KafkaRangeReader(broker.bootstrap, topic)
            ranges = await reader.read([(2, 1, 2), (2, 4, 4), (1, 0, 0)])
            await reader.close()
            return everything, last_two, clamped, ranges
        finally:
            await consumer.stop()
            await producer.stop()

    everything, last_two, clamped, ranges = asyncio.run(scenario())
    assert sorted(everything) == sorted([f"1-{i}".encode() for i in range(5)] + [f"2-{i}".encode() for i in range(10)])
    assert sorted(last_two) == [(1, 3), (1, 4), (2, 8), (2, 9)]
    assert clamped == [0, 1, 2, 3, 4]
    assert ranges == [(1, 0, b"1-0"), (2, 1, b"2-1"), (2, 2, b"2-2"), (2, 4, b"2-4")]
