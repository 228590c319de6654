"""Small Kafka helpers for tests: write one record, read partitions to their end."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def produce(bootstrap: str, topic: str, value: bytes, partition: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def read_to_end(bootstrap: str, topic: str, partitions: list[int], last: int | None = None) -> list[bytes]:
    """Values of ``partitions`` from the beginning (or only the ``last`` N of each) to their current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        values = []
        for tp in tps:
            consumer.seek(tp, starts[tp] if last is None else max(starts[tp], ends[tp] - last))
            while (await consumer.position(tp)) < ends[tp]:
                values += [m.value for m in (await consumer.getmany(tp, timeout_ms=2000)).get(tp, [])]
        return values
    finally:
        await consumer.stop()
