"""Small Kafka helpers for tests: write one record, read partitions to their end."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventpipe.processors.kafka_ranges import read_to_end as read_partitions_to_end


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
        records = [m async for batch in read_partitions_to_end(consumer, tps, last) for m in batch]
        return [m.value for m in sorted(records, key=lambda m: (partitions.index(m.partition), m.offset))]
    finally:
        await consumer.stop()
