"""Processors under faults: a failing store, processors joining and leaving while events flow, and a
processor that joined while its topic was missing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from eventpipe.broker import KafkaBroker, ensure_topics
from eventpipe.settings import Settings
from eventpipe.stack import Child, LocalStack, eventpipe_command, wait_http
from eventpipe.store import Store
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from eventpipe.schemas.topics import topic_specs
from tests.conftest import free_port, make_settings, query, wait_for
from tests.http import get, post
from tests.kafka import produce
from tests.test_exactly_once import Loader


def _metric(url: str, name: str) -> float:
    _, _, raw = get(url)
    return sum(float(line.split()[-1]) for line in raw.decode().splitlines() if line.startswith(name))


def test_a_failing_store_pauses_writes_and_heals_without_loss(stack):
    run = uuid.uuid4().hex
    failpoint = stack.settings.store_failpoint
    metrics = f"http://127.0.0.1:{stack.settings.processor_web_port}/metrics"
    errors_before = _metric(metrics, "eventpipe_processor_store_errors_total")
    failpoint.touch()
    try:
        for i in range(20):
            body = orjson.dumps(
                {
                    "batch": [
                        {
                            "type": "track",
                            "event": f"outage {run}",
                            "anonymousId": f"d{i}",
                            "messageId": f"{run}-{i}-{j}",
                        }
                        for j in range(10)
                    ]
                }
            )
            assert post(stack.collector_url + "/v1/batch", body, "test-key-acme")[0] == 200  # Kafka still takes them
        assert wait_for(
            lambda: _metric(metrics, "eventpipe_processor_store_errors_total") >= errors_before + 2, timeout=30
        )
        assert query(stack, f"SELECT count() FROM events WHERE event = 'outage {run}'")[0][0] == 0
    finally:
        failpoint.unlink()
    # healed: the same batches are retried, nothing lost, nothing doubled
    assert wait_for(
        lambda: (
            query(stack, f"SELECT count(), uniqExact(message_id) FROM events WHERE event = 'outage {run}'")[0]
            == [200, 200]
        ),
        timeout=60,
    )


def _processor(settings: Settings, name: str, out) -> Child:
    env = {**os.environ, **settings.env(), "PYTHONUNBUFFERED": "1"}
    child = Child(name, eventpipe_command("processor"), env, out)
    wait_http(f"http://127.0.0.1:{settings.processor_web_port}/query?sql=SELECT%201", child, 120)
    return child


def _message_ids(settings: Settings) -> list[str]:
    store = Store(settings)
    try:
        return [r[0] for r in store.query("SELECT message_id FROM events").rows]
    finally:
        store.close()


def test_processors_joining_and_leaving_lose_and_double_nothing(tmp_path):
    """Two processors, each on its own embedded store, take turns on the partitions while events flow.

    chDB lets one process own a directory, so the check is over the union of both stores."""
    base = make_settings(tmp_path, processor_session_timeout=6.0)
    broker = KafkaBroker(base).start()
    log = open(tmp_path / "stack.log", "w")
    a = dataclasses.replace(base, store_path=tmp_path / "store-a")
    b = dataclasses.replace(base, store_path=tmp_path / "store-b", processor_web_port=free_port())
    stack = LocalStack(a, out=log, broker=broker)
    proc_b = None
    try:
        stack.start_processor()
        stack.start_collector()
        loader = Loader(stack.collector_url + "/v1/batch", "test-key-acme", 6000, rate=300, seed=11)
        loader.thread.start()
        assert wait_for(lambda: query(stack, "SELECT count() FROM events")[0][0] > 0, timeout=90)  # A writes
        proc_b = _processor(b, "proc-b", log)  # B joins: partitions split between A and B
        b_url = f"http://127.0.0.1:{b.processor_web_port}/query?sql="
        b_rows = lambda: orjson.loads(get(b_url + "SELECT%20count()%20FROM%20events")[2])["rows"][0][0]  # noqa: E731
        # B must have taken part before it leaves: a fixed sleep was too short when the machine was busy
        # (B joined as it was being stopped, wrote nothing, and "both processors must have written" failed)
        assert wait_for(lambda: b_rows() > 0, timeout=90), "B never wrote while it had partitions"
        time.sleep(2)
        proc_b.stop()  # B leaves gracefully: A takes all again
        time.sleep(3)
        proc_b = _processor(b, "proc-b", log)  # B joins again
        time.sleep(3)
        stack.processor.stop()  # A leaves: B takes all
        loader.thread.join(timeout=300)
        assert loader.accepted_events == 60_000
        assert wait_for(lambda: b_rows() + len(_message_ids(a)) >= 60_000, timeout=120)
        proc_b.stop()
        ids_a, ids_b = _message_ids(a), _message_ids(b)
        print(f"store A {len(ids_a)} rows, store B {len(ids_b)} rows")
        assert ids_a and ids_b, "both processors must have written"
        union = ids_a + ids_b
        assert (len(union), len(set(union))) == (60_000, 60_000)
    finally:
        for child in (proc_b, stack.processor, stack.collector):
            if child is not None:
                child.stop()
        broker.stop()
        log.close()


def test_a_processor_assigned_nothing_because_its_topic_was_missing_recovers(tmp_path):
    """Right after a broker restart a processor can join the group while the broker has no metadata for
    events.raw yet: it is assigned nothing, and its client keeps that view for the 5 minutes of
    metadata.max.age. Here the topic is deleted before the processor starts and created again once it
    has joined; the processor must refresh its metadata, rejoin, and write what arrives."""
    settings = make_settings(tmp_path, processor_session_timeout=6.0)  # the broker's minimum
    broker = KafkaBroker(settings).start()
    log = open(tmp_path / "stack.log", "w")
    stack = LocalStack(settings, out=log, broker=broker)
    try:
        asyncio.run(_delete_topic(broker.bootstrap, settings.topic_raw))
        stack.start_processor()
        assert wait_for(lambda: "Ignoring missing topic" in (tmp_path / "stack.log").read_text(), timeout=60)
        asyncio.run(ensure_topics(broker.bootstrap, topic_specs(settings.topic_raw, settings.topic_dlq)))
        body = orjson.dumps(
            {"batch": [{"type": "track", "event": "e", "anonymousId": "d", "messageId": f"m{i}"} for i in range(5)]}
        )
        record = encode_bundle([AcceptedRequest("acme", int(time.time() * 1000), "", "", body)])
        asyncio.run(produce(broker.bootstrap, settings.topic_raw, record, partition=3))
        assert wait_for(lambda: query(stack, "SELECT count() FROM events")[0][0] == 5, timeout=90)
        assert "no partitions assigned" in (tmp_path / "stack.log").read_text()  # the watchdog did it
    finally:
        stack.stop()
        broker.stop()
        log.close()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        for _ in range(50):  # deletion is asynchronous on the broker
            if topic not in await admin.list_topics():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{topic} was not deleted")
    finally:
        await admin.close()
