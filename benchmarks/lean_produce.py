"""Would a produce path of our own pay? CPU per record: aiokafka's sender against one bare ProduceRequest.

Issue 13 named "a lean produce path" as the next step for the collector: it already builds its record
batches (eventpipe.ingest.records), so it could send one ProduceRequest per broker per round itself
(producer id, epoch and per-partition sequence numbers kept by us) and skip aiokafka's accumulator, its
per-batch futures and its sender loop. This measures what that would save before anyone builds it:
the same records, 12 partitions per round, through ``send_batch`` and through ``client.send`` of one
request per broker, interleaved in one process pinned to CPU 0, the broker on CPU 1.

    python benchmarks/lean_produce.py        # writes results/lean-produce.json

The lean side here has no retries, no error handling and no ordering across rounds beyond awaiting
each one: it is a lower bound on what a real lean path would cost, so its saving is an upper bound.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import sys
import time

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.structs import TopicPartition

import harness
from collector_costs import BODIES
from eventpipe.compat.aiokafka import install_produce_encoding
from eventpipe.ingest.records import RecordBatch, compressor, encode_produce_request
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

TOPIC, PARTITIONS = "events.raw", 12


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


async def _producer(bootstrap: str) -> AIOKafkaProducer:
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0, max_request_size=4 << 20
    )
    await p.start()
    await p.partitions_for(TOPIC)
    return p


async def run(bootstrap: str, requests: int, codec: str | None, rounds: int) -> dict:
    values = [
        encode_bundle(
            [
                AcceptedRequest("bench0", 1764000000000, "10.0.0.1", "ua", BODIES[(i * requests + j) % len(BODIES)])
                for j in range(requests)
            ]
        )
        for i in range(48)
    ]
    comp = compressor(codec)
    counter = iter(range(1 << 60))

    def batch() -> RecordBatch:
        return RecordBatch([values[next(counter) % len(values)]], int(time.time() * 1000), codec, comp)

    aio, lean = await _producer(bootstrap), await _producer(bootstrap)

    async def aiokafka_round():
        await asyncio.gather(*[await aio.send_batch(batch(), TOPIC, partition=p) for p in range(PARTITIONS)])

    txn = lean._txn_manager  # its producer id and epoch, from aiokafka's InitProducerId at start
    sequence = dict.fromkeys(range(PARTITIONS), 0)
    by_node: dict[int, list[int]] = {}
    for p in range(PARTITIONS):
        by_node.setdefault(lean.client.cluster.leader_for_partition(TopicPartition(TOPIC, p)), []).append(p)

    async def lean_round():
        sends = []
        for node, partitions in by_node.items():
            items = []
            for p in partitions:
                b = batch()
                b._set_producer_state(txn.producer_id, txn.producer_epoch, sequence[p])
                items.append((p, b._build()))
            sends.append(lean.client.send(node, ProduceRequest(None, -1, 10_000, [(TOPIC, items)])))
        for response in await asyncio.gather(*sends):
            for _, partitions in response.topics:
                for part in partitions:
                    if part[1] != 0:
                        raise RuntimeError(f"partition {part[0]}: error code {part[1]}")
                    sequence[part[0]] += 1

    cpu_us: dict[str, list[float]] = {"aiokafka": [], "lean": []}
    try:
        for fn in (aiokafka_round, lean_round):
            for _ in range(20):
                await fn()
        for _ in range(3):
            for name, fn in (("aiokafka", aiokafka_round), ("lean", lean_round)):
                c0 = _cpu()
                for _ in range(rounds):
                    await fn()
                cpu_us[name].append(round((_cpu() - c0) / (rounds * PARTITIONS) * 1e6, 1))
    finally:
        await aio.stop()
        await lean.stop()
    medians = {name: statistics.median(v) for name, v in cpu_us.items()}
    return {
        "requests_per_record": requests,
        "codec": codec or "none",
        "cpu_us_per_record": cpu_us,
        "median_us": medians,
        "saving_us_per_record": round(medians["aiokafka"] - medians["lean"], 1),
        "saving_us_per_request": round((medians["aiokafka"] - medians["lean"]) / requests, 1),
    }


def main() -> int:
    os.sched_setaffinity(0, {0})
    install_produce_encoding(encode_produce_request)
    broker = harness.start_broker("1")
    runs = []
    try:
        for requests in (1, 5, 10):
            for codec in (None, "lz4"):
                runs.append(uvloop.run(run(broker.bootstrap, requests, codec, 150)))
                print(f"lean produce: {runs[-1]}", flush=True)
    finally:
        harness.stop_broker(broker)
    path = harness.write_result(
        "lean-produce",
        {
            "command": "python benchmarks/lean_produce.py",
            "what": __doc__.split("\n\n")[1].replace("\n", " "),
            "runs": runs,
        },
    )
    print(f"lean produce: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
