"""What processors judge: types, timestamps, property schemas, poison pills — and where rejects go."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from aiokafka import AIOKafkaProducer

from eventpipe.broker import ensure_topics
from eventpipe.ingest.batch import parse_batch
from eventpipe.ingest.partitioning import partition_for
from eventpipe.processors.dead_letters import dead_letter, replay
from eventpipe.processors.rows import Rules, anonymize_ip, explode
from eventpipe.schemas.bundle import AcceptedRequest, decode_bundle, encode_bundle
from eventpipe.schemas.topics import topic_specs
from tests.conftest import query, wait_for
from tests.http import post
from tests.kafka import produce, read_to_end

RECEIVED = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _explode(*events: dict, rules: Rules = Rules(), ip: str = "203.0.113.77"):
    body = orjson.dumps({"batch": list(events), "sentAt": "2026-01-01T00:00:00.000Z"})
    return explode([(2, 40, encode_bundle([AcceptedRequest("acme", RECEIVED, ip, "ua", body)]))], rules)


def test_field_types_and_timestamps_are_judged_per_event():
    out = _explode(
        {"type": "track", "event": "ok", "anonymousId": "a", "messageId": "m1", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "track", "event": "bad props", "anonymousId": "a", "messageId": "m2", "properties": [1, 2]},
        {"type": "track", "event": "old", "anonymousId": "a", "messageId": "m3", "timestamp": "2025-06-01T00:00:00Z"},
        {
            "type": "track",
            "event": "future",
            "anonymousId": "a",
            "messageId": "m4",
            "timestamp": "2026-01-03T00:00:00Z",
        },
        {"type": "track", "event": "garbled", "anonymousId": "a", "messageId": "m5", "timestamp": "next tuesday"},
        {"type": "track", "event": "no id", "anonymousId": "a"},
        {"type": "track", "event": "bad id", "anonymousId": {"x": 1}, "messageId": "m7"},
        {"type": "track", "event": "bad id", "userId": "u", "anonymousId": {"x": 1}, "messageId": "m8"},
    )
    stored = {r["message_id"]: r for r in out.events.to_pylist()}
    rejected = {r["message_id"]: r for r in out.rejected.to_pylist()}
    assert set(rejected) == {"m2", "m3", "m7", "m8"}
    # m7 lacks what the collector requires (the same contract): a record from elsewhere gets the same code
    assert [rejected[m]["reason"] for m in ("m2", "m3", "m7", "m8")] == [
        "invalid_field",
        "too_old",
        "no_user_anon_id",
        "invalid_field",
    ]
    assert rejected["m3"]["message"] == "dated 214 days before it was received"
    assert (rejected["m2"]["kafka_partition"], rejected["m2"]["kafka_offset"], rejected["m2"]["event_index"]) == (
        2,
        40,
        1,
    )
    assert orjson.loads(rejected["m2"]["payload"])["properties"] == [1, 2]  # the event as sent
    assert stored["m1"]["flags"] == []
    assert stored["m4"]["flags"] == ["timestamp_in_future"]
    assert stored["m5"]["flags"] == ["timestamp_invalid"]
    assert stored["gen-2-40-0-5"]["flags"] == ["message_id_generated"]


def test_property_schemas_warn_or_enforce_per_project():
    bad = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "a",
        "messageId": "o1",
        "properties": {"revenue": -5},
    }
    good = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "a",
        "messageId": "o2",
        "properties": {"order_id": "x1", "revenue": 12.5, "currency": "EUR"},
    }
    warn = _explode(bad, good, rules=Rules(schema_modes={"*": "warn"}))
    assert [r["flags"] for r in warn.events.to_pylist()] == [["schema_violation"], []]
    enforce = _explode(bad, good, rules=Rules(schema_modes={"acme": "enforce", "*": "off"}))
    assert [r["message_id"] for r in enforce.events.to_pylist()] == ["o2"]
    (rej,) = enforce.rejected.to_pylist()
    assert rej["reason"] == "schema_violation" and rej["message"].startswith("Order Completed v1: ")
    off = _explode(bad, rules=Rules(schema_modes={"*": "off"}))
    assert off.events.to_pylist()[0]["flags"] == []


def test_ip_modes():
    assert anonymize_ip("203.0.113.77", "truncate") == "203.0.113.0"
    assert anonymize_ip("2001:db8:abcd:12::1", "truncate") == "2001:db8:abcd::"
    assert anonymize_ip("203.0.113.77", "keep") == "203.0.113.77"
    assert anonymize_ip("203.0.113.77", "drop") == ""
    assert anonymize_ip("not an ip", "truncate") == ""
    assert anonymize_ip("::ffff:203.0.113.77", "truncate") == "203.0.113.0"  # an IPv4 client behind a dual stack
    ev = {"type": "track", "event": "e", "anonymousId": "a", "context": {"ip": "198.51.100.9"}}
    assert _explode(ev).events.column("ip").to_pylist() == ["198.51.100.0"]  # the client's own context.ip wins


def test_a_poison_pill_is_kept_not_retried():
    out = explode([(0, 7, b"\x93not a bundle")], Rules())
    assert out.events.num_rows == 0
    (rej,) = out.rejected.to_pylist()
    assert (rej["reason"], rej["kafka_offset"]) == ("undecodable_record", 7)


def test_rejects_reach_the_dlq_and_clickhouse_and_a_poison_pill_does_not_stall(stack):
    bootstrap, s = stack.broker.bootstrap, stack.settings
    asyncio.run(produce(bootstrap, s.topic_raw, b"garbage that is no bundle", partition=3))
    mid = f"rej-{uuid.uuid4().hex}"
    ok_mid = f"ok-{uuid.uuid4().hex}"
    body = orjson.dumps(
        {
            "batch": [  # project beta enforces schemas
                {"type": "track", "event": "Order Completed", "anonymousId": "x", "messageId": mid, "properties": {}},
                {
                    "type": "track",
                    "event": "Order Completed",
                    "anonymousId": "x",
                    "messageId": ok_mid,
                    "properties": {"order_id": "o-1", "revenue": 3},
                },
            ]
        }
    )
    assert post(stack.collector_url + "/v1/batch", body, "test-key-beta")[0] == 200
    assert wait_for(lambda: query(stack, f"SELECT count() FROM events WHERE message_id = '{ok_mid}'")[0][0] == 1)
    rows = wait_for(
        lambda: query(
            stack,
            "SELECT reason, project, event, kafka_partition FROM events_rejected "
            f"WHERE message_id = '{mid}' OR reason = 'undecodable_record'",
        )
    )
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("schema_violation", "beta", "Order Completed"),
        ("undecodable_record", "", ""),
    ]
    assert [r[3] for r in rows if r[0] == "undecodable_record"] == [3]
    letters = [
        orjson.loads(v)
        for v in asyncio.run(read_to_end(bootstrap, s.topic_dlq, list(range(topic_specs()[1].partitions))))
    ]
    mine = [d for d in letters if d["message_id"] == mid]
    assert mine and mine[0]["reason"] == "schema_violation" and orjson.loads(mine[0]["payload"])["messageId"] == mid
    assert any(d["reason"] == "undecodable_record" and d["source"]["partition"] == 3 for d in letters)

    # replay feeds it back; still violating, it is judged (and rejected) again: nothing is lost on the way
    replayed, _ = asyncio.run(replay(bootstrap, s.topic_dlq, s.topic_raw, {"schema_violation"}))
    assert replayed >= 1
    assert wait_for(lambda: query(stack, f"SELECT count() FROM events_rejected WHERE message_id = '{mid}'")[0][0] == 2)


def test_replayed_dead_letters_land_on_the_partition_the_collector_would_choose(broker):
    """Replay sends with an explicit partition from the collector's rule, not the producer's default
    partitioner (murmur2), so a device's events stay on its partition, where messageId dedup looks."""
    tag = uuid.uuid4().hex[:8]
    raw, dlq = topic_specs(f"replay-raw-{tag}", f"replay-dlq-{tag}")[:2]  # own topics: no other test's letters
    asyncio.run(ensure_topics(broker.bootstrap, [raw, dlq]))
    events = [
        {"type": "track", "event": "late", "anonymousId": f"device-{i}", "messageId": f"m-{i}"} for i in range(12)
    ]
    events.append({"type": "track", "event": "late", "userId": "user-only", "messageId": "m-user"})
    letters = [
        dead_letter(
            {
                "reason": "too_old",
                "message": "old",
                "project": "acme",
                "event": "late",
                "message_id": e["messageId"],
                "received_at": "2026-01-01T00:00:00+00:00",
                "kafka_topic": raw.name,
                "kafka_partition": 0,
                "kafka_offset": i,
                "request_index": 0,
                "event_index": 0,
                "payload": orjson.dumps(e).decode(),
            }
        )
        for i, e in enumerate(events)
    ]

    async def write_letters():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for i, letter in enumerate(letters):
                await producer.send_and_wait(dlq.name, letter, partition=i % dlq.partitions)
        finally:
            await producer.stop()

    asyncio.run(write_letters())
    assert asyncio.run(replay(broker.bootstrap, dlq.name, raw.name, {"too_old"})) == (len(events), 0)

    landed = {}
    for partition in range(raw.partitions):
        for value in asyncio.run(read_to_end(broker.bootstrap, raw.name, [partition])):
            (request,) = decode_bundle(value)
            landed[orjson.loads(request.body)["batch"][0]["messageId"]] = partition
    # where the collector puts the same event sent alone: its own parse, its own rule
    collector = {
        e["messageId"]: partition_for(parse_batch(orjson.dumps({"batch": [e]}), 1 << 20).partition_key, raw.partitions)
        for e in events
    }
    assert landed == collector
    assert len(set(collector.values())) > 1  # the devices spread: the check above could not pass by accident
