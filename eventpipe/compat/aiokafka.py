"""Every use of aiokafka's private names, and the start-up check that they are all still there.

What eventpipe needs that aiokafka (pinned) has no public API for:

* :func:`throttle_metadata_retries` wraps ``AIOKafkaClient._metadata_update``:
  while the broker refuses connections aiokafka's sender retries metadata in
  a tight loop (~10k attempts a second on the collector's event loop).
* :func:`install_produce_encoding` replaces ``ProduceRequest_v3..v8.encode``
  with eventpipe.ingest.records' one-join encoder (same bytes, tests/test_records.py).
* :func:`rejoin_group` uses ``AIOKafkaConsumer._client`` and ``._coordinator``:
  a processor assigned nothing must refresh metadata and rejoin (processors/membership.py).
* eventpipe.ingest.records.RecordBatch stands in for aiokafka's
  ``BatchBuilder`` in ``send_batch``, so aiokafka calls its private
  ``_set_producer_state`` and ``_build`` on eventpipe's object.

:func:`check` verifies all of them on the installed aiokafka.
"""

from __future__ import annotations

import asyncio
import inspect

import aiokafka
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.consumer import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol import produce

from eventpipe.compat import require

PRODUCE_VERSIONS = range(3, 9)
PRODUCE_FIELDS = ("transactional_id", "required_acks", "timeout", "topics")
# what aiokafka's MessageBatch calls on the builder send_batch hands it (eventpipe.ingest.records.RecordBatch)
BATCH_BUILDER_MEMBERS = ("_set_producer_state", "_build", "size", "record_count", "closed", "close")


def problems() -> list[str]:
    """Every internal used here that the installed aiokafka lacks (or has in another shape)."""
    missing = []
    if not inspect.iscoroutinefunction(getattr(AIOKafkaClient, "_metadata_update", None)):
        missing.append("AIOKafkaClient._metadata_update (a coroutine function)")
    if not callable(getattr(AIOKafkaClient, "force_metadata_update", None)):
        missing.append("AIOKafkaClient.force_metadata_update")
    if not callable(getattr(GroupCoordinator, "request_rejoin", None)):
        missing.append("GroupCoordinator.request_rejoin")
    source = inspect.getsource(AIOKafkaConsumer)  # instance attributes: set in __init__ and start()
    missing += [f"AIOKafkaConsumer.{name}" for name in ("_client", "_coordinator") if f"self.{name} = " not in source]
    for version in PRODUCE_VERSIONS:
        cls = getattr(produce, f"ProduceRequest_v{version}", None)
        if cls is None or tuple(getattr(getattr(cls, "SCHEMA", None), "names", ())) != PRODUCE_FIELDS:
            missing.append(f"ProduceRequest_v{version} with fields {', '.join(PRODUCE_FIELDS)}")
    missing += [
        f"BatchBuilder.{name}" for name in BATCH_BUILDER_MEMBERS if not callable(getattr(BatchBuilder, name, None))
    ]
    return missing


def check() -> None:
    """Raise eventpipe.compat.CompatError naming every missing internal; called at start-up."""
    require("aiokafka", aiokafka.__version__, problems())


def throttle_metadata_retries(producer: aiokafka.AIOKafkaProducer, backoff: float) -> None:
    """Pause ``backoff`` seconds after each failed metadata update of ``producer``'s client.

    While the broker refuses connections and bundles wait for a partition
    leader, aiokafka's sender asks for metadata again as soon as the previous
    attempt failed: measured here, ~10k attempts (and 2 ERROR log lines each)
    per second, all on the event loop that serves HTTP. Pausing after each
    failure bounds that to a few per second; recovery is at most this much slower.
    """
    client = producer.client
    update = client._metadata_update

    async def update_with_backoff(cluster_metadata, topics):
        updated = await update(cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(backoff)
        return updated

    client._metadata_update = update_with_backoff


def install_produce_encoding(encode) -> None:
    """Encode every ProduceRequest v3-v8 with ``encode(request) -> bytes`` (process-wide; idempotent)."""
    for version in PRODUCE_VERSIONS:
        getattr(produce, f"ProduceRequest_v{version}").encode = encode


async def rejoin_group(consumer: AIOKafkaConsumer) -> None:
    """Refresh ``consumer``'s metadata, then ask its group coordinator to rejoin (on the consumer's loop)."""
    await consumer._client.force_metadata_update()
    consumer._coordinator.request_rejoin()
