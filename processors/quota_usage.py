"""Quota usage into ClickHouse: the collectors' ``events.quota`` records become rows of ``quota_usage``.

Users look for what a quota dropped where they look for everything else: in SQL and on the dashboard.
The collectors count per (project, period) in Kafka (ingest/quotas.py), and only the processor may write
the embedded store, so this task follows that topic (one partition, no consumer group: it is re-read from
the start after a restart, and ``quota_usage`` keeps the latest record per project, period and replica,
so a record read twice is one row) and inserts what it read about once a second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from eventpipe.schemas.topics import QUOTA_TOPIC

log = logging.getLogger("eventpipe.processor")

COLUMNS = ["project", "period", "period_seconds", "quota", "replica", "accepted", "dropped", "refused", "updated_at"]
USAGE_SQL = (
    "SELECT project, period, max(quota) AS quota, sum(accepted) AS accepted, sum(dropped) AS dropped, "
    "sum(refused) AS refused FROM quota_usage FINAL WHERE period >= now() - INTERVAL 1 DAY "
    "GROUP BY project, period ORDER BY period DESC, project"
)


def row(value: bytes) -> list | None:
    """A ``quota_usage`` row from one record, or None for a record that is not a usage record."""
    try:
        doc = orjson.loads(value)
        return [
            str(doc["project"]),
            dt.datetime.fromtimestamp(int(doc["period"]), dt.timezone.utc),
            int(doc["period_seconds"]),
            int(doc["quota"]),
            str(doc["replica"]),
            int(doc["accepted"]),
            int(doc["dropped"]),
            int(doc["refused"]),
            dt.datetime.fromtimestamp(int(doc["at"]) / 1000, dt.timezone.utc),
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


async def follow(bootstrap: str, store_fn, topic: str = QUOTA_TOPIC, interval: float = 1.0) -> None:
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, client_id="eventpipe-processor-quotas"
        )
        try:
            await consumer.start()
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batches = await consumer.getmany(tp, timeout_ms=int(interval * 1000), max_records=10_000)
                rows = [r for m in batches.get(tp, []) if m.value and (r := row(m.value)) is not None]
                if rows:
                    await asyncio.to_thread(store_fn().insert_rows, "quota_usage", rows, COLUMNS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - broker or store away: re-read from the start (idempotent)
            log.warning("copying %s to quota_usage failed (%r); retrying", topic, exc)
            await asyncio.sleep(2.0)
        finally:
            await consumer.stop()


def register(app, store_fn, settings) -> None:
    @app.task
    async def copy_quota_usage() -> None:
        await follow(settings.kafka_bootstrap, store_fn)
