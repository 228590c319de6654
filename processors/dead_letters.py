"""The dead-letter record format of events.dlq, and replaying dead letters.

A dead letter is JSON: why it was rejected (a machine-readable ``reason`` and a
``message``), where it came from in events.raw (topic, partition, offset and
its request/event index: the DLQ is at-least-once, so readers drop repeats by
this source), and the original payload (the event as sent, or the undecodable
record). ``eventpipe dlq replay`` feeds chosen dead letters back into
events.raw once the cause is fixed (a schema relaxed, a clock corrected), each
onto the partition the collector would choose for it
(eventpipe.ingest.partitioning), never the producer's default partitioner:
a device's events stay on its partition, where messageId dedup looks.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventpipe.ingest.partitioning import event_partition_key, partition_for
from eventpipe.processors.kafka_ranges import read_to_end
from eventpipe.progress import Progress
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

REPLAYABLE = {"schema_violation", "too_old", "invalid_field"}
# A dead letter must fit the DLQ topic's max.message.bytes (1 MiB) and the producer's request limit
# (1,000,000 bytes), or sending it would fail again and again and stall its batch.
MAX_LETTER_BYTES = 512 * 1024
_MAX_NAME_CHARS = 1024


def dead_letter(row: dict) -> bytes:
    """One events_rejected row (a dict) as a dead-letter record value, at most MAX_LETTER_BYTES.

    A payload that would not fit (an undecodable record can be as large as the broker allows) is cut,
    and the letter says so with ``"payload_truncated": true``; ClickHouse's events_rejected keeps more."""
    received = row["received_at"]
    if isinstance(received, datetime):
        received = received.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    letter = {
        "reason": row["reason"],
        "message": row["message"],
        "project": row["project"],
        "event": row["event"],
        "message_id": row["message_id"],
        "received_at": received,
        "source": {
            "topic": row["kafka_topic"],
            "partition": row["kafka_partition"],
            "offset": row["kafka_offset"],
            "request_index": row["request_index"],
            "event_index": row["event_index"],
        },
        "payload": row["payload"],
    }
    encoded = orjson.dumps(letter)
    if len(encoded) <= MAX_LETTER_BYTES:
        return encoded
    for name in ("message", "project", "event", "message_id"):
        letter[name] = letter[name][:_MAX_NAME_CHARS]
    # JSON escapes a character to at most 6 bytes: this many characters always fit
    letter["payload"] = letter["payload"][: (MAX_LETTER_BYTES - 4 * 6 * _MAX_NAME_CHARS - 1024) // 6]
    letter["payload_truncated"] = True
    return orjson.dumps(letter)


def _received_ms(value) -> int:
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return int(time.time() * 1000)


async def replay(bootstrap: str, dlq: str, raw: str, reasons: set[str] | None = None, out=None) -> tuple[int, int]:
    """Re-feed dead letters whose reason is in ``reasons`` into ``raw``; return (replayed, skipped).

    Reads the whole DLQ once (no consumer group: replays are deliberate, not continuous)."""
    wanted = reasons or REPLAYABLE
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    replayed = skipped = 0
    seen: set[tuple] = set()
    progress = Progress(out)
    try:
        raw_partitions = len(await producer.partitions_for(raw))
        partitions = [TopicPartition(dlq, p) for p in sorted(await producer.partitions_for(dlq))]
        pending = []
        async for batch in read_to_end(consumer, partitions):
            for message in batch:
                letter = orjson.loads(message.value)
                source = tuple(letter["source"].values())
                if letter["reason"] not in wanted or source in seen:
                    skipped += 1
                    continue
                seen.add(source)
                event = orjson.loads(letter["payload"])
                body = orjson.dumps({"batch": [event]})
                request = AcceptedRequest(letter["project"], _received_ms(letter["received_at"]), "", "", body)
                key = event_partition_key(event)
                pending.append(
                    await producer.send(
                        raw, encode_bundle([request]), key=key, partition=partition_for(key, raw_partitions)
                    )
                )
                replayed += 1
                if replayed % 1000 == 0:
                    progress.update(f"  replayed {replayed}")
        await asyncio.gather(*pending)
    finally:
        progress.done()
        await consumer.stop()
        await producer.stop()
    return replayed, skipped
