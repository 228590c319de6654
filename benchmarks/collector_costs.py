"""Where a collector request's CPU goes, piece by piece, in one process on one core (thread CPU time).

The server benchmark (`eventpipe bench collector`) measures whole requests through granian; this splits our
own share into what is paid per request, per Kafka record and per byte, each timed alone (best of 5), so the
parts can be added up against the whole (benchmarks/README.md, "Where the time goes"):

* per request: the handler with a null sink (everything but Kafka), and its pieces: the one-pass batch check,
  the body read with its deadline, the key lookup, the metrics; the bundler's own work per request
  (submit, a future, the answer) with a producer that acks at once;
* per record: aiokafka + eventpipe.ingest.records against a real broker (started here on CPU 1), 12 partitions per
  produce request as the collector sends them, at 1..20 requests per record, uncompressed and lz4;
* per byte: lz4 and CRC-32C.

    python benchmarks/collector_costs.py            # ~2 min; writes results/collector-costs.json
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sys
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import uvloop  # noqa: E402

from eventpipe.demo import Device, basic_auth, make_batch  # noqa: E402
from eventpipe.settings import Settings  # noqa: E402

RNG = random.Random(7)
FLEET = [Device.new(RNG) for _ in range(2000)]
BODIES = [make_batch(RNG, RNG.choice(FLEET), 10) for _ in range(1000)]
AUTH = basic_auth("wk1")


def best(fn, number: int = 20_000, repeat: int = 5) -> float:
    """µs per call, thread CPU time, best of ``repeat``."""
    return round(min(timeit.repeat(fn, number=number, repeat=repeat, timer=time.thread_time)) / number * 1e6, 2)


class _Scope:
    __slots__ = ("path", "method", "headers", "client", "proto")

    def __init__(self, body: bytes):
        self.path, self.method, self.client, self.proto = "/v1/batch", "POST", "127.0.0.1:5555", "http"
        self.headers = {"authorization": AUTH, "content-length": str(len(body)), "user-agent": "analytics-swift/1.7.1"}


class _Proto:
    __slots__ = ("body", "status")

    def __init__(self, body: bytes):
        self.body = body

    async def __call__(self):
        return self.body

    def response_bytes(self, status, headers, body):
        self.status = status


async def _per_request(app, pairs, n: int) -> float:
    """Best of 5 rounds of ``n`` requests through an RSGI ``app``: thread CPU µs per request."""
    times = []
    for _ in range(5):
        started = time.thread_time()
        for i in range(n):
            scope, proto = pairs[i % len(pairs)]
            await app(scope, proto)
        times.append((time.thread_time() - started) / n)
    return round(min(times) * 1e6, 2)


async def _collector():
    """The collector handler with a null sink (a MemorySink that keeps nothing): everything but Kafka."""
    from eventpipe.ingest.app import Collector
    from eventpipe.ingest.memory_sink import MemorySink

    c = Collector(Settings.from_env({"EVENTPIPE_WRITE_KEYS": "wk1=p1"}), sink=MemorySink(keep=False))
    await c.start()
    return c


def per_request() -> dict:
    """The handler with a null sink, and its pieces."""
    from eventpipe.ingest import metrics
    from eventpipe.ingest.batch import fast_batch, parse_batch
    from eventpipe.ingest.body import Body
    from eventpipe.schemas.bundle import AcceptedRequest

    out = {}

    async def handler(n: int = 20_000) -> float:
        c = await _collector()
        pairs = [(_Scope(b), _Proto(b)) for b in BODIES]
        for sc, pr in pairs[:200]:
            await c.__rsgi__(sc, pr)
            assert pr.status == 200
        return await _per_request(c.__rsgi__, pairs, n)

    out["handler_null_sink"] = uvloop.run(handler())

    async def bare(n: int = 20_000) -> float:  # apps/bare.py, the in-run ceiling's own handler
        sys.path.insert(0, str(HERE / "apps"))
        os.environ.setdefault("EVENTPIPE_WRITE_KEYS", "wk1=p1")
        import bare as bare_app

        return await _per_request(bare_app.app, [(_Scope(b), _Proto(b)) for b in BODIES], n)

    out["bare_handler"] = uvloop.run(bare())
    body = BODIES[0]
    out["fast_batch"] = best(lambda: fast_batch(body))
    out["long_way_parse_batch"] = best(lambda: parse_batch(body, 500 * 1024))

    async def body_read(n: int = 20_000) -> float:
        proto = _Proto(body)
        loop = asyncio.get_running_loop()
        t = time.thread_time()
        for _ in range(n):
            await Body(proto, 5.0, loop).read("4890", 500 * 1024)
        return round((time.thread_time() - t) / n * 1e6, 2)

    out["body_read_with_deadline"] = uvloop.run(body_read())
    c = uvloop.run(_collector())
    out["key_lookup_uncached"] = best(lambda: c.keys.lookup("wk1"))
    out["metrics_per_request"] = best(
        lambda: (
            metrics.REQUESTS.inc(("/v1/batch", "200")),
            metrics.EVENTS.inc(("accepted",), 10),
            metrics.REQUEST_SECONDS.observe(0.004),
        )
    )
    out["accepted_request"] = best(
        lambda: AcceptedRequest("p1", int(time.time() * 1000), "127.0.0.1", "analytics-swift/1.7.1", body)
    )
    return out


def bundler_per_request(per_record: int = 10) -> float:
    """The bundler's own work per request (submit, one future, the answer, and the bundle's msgpack encoding
    shared by its requests), the producer acking at once (no record batch is built)."""
    from eventpipe.ingest.bundler import Bundler
    from eventpipe.schemas.bundle import AcceptedRequest

    class Instant:
        async def send_batch(self, batch, topic, *, partition):
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    reqs = [AcceptedRequest("p1", 1, "127.0.0.1", "ua", b) for b in BODIES]
    keys = [str(i).encode() for i in range(len(reqs))]

    async def run(rounds: int = 2000) -> float:
        b = Bundler(
            Instant(), "t", 12, window_ms=0.1, max_bytes=768 * 1024, max_inflight_bytes=1 << 30, compression=None
        )
        clients = 12 * per_record  # each a long-lived task, as granian's requests are: no task per submit here

        async def client(i: int) -> None:
            for r in range(rounds):
                j = (r * clients + i) % len(reqs)
                await b.submit(keys[i % len(keys)], reqs[j])

        t = time.thread_time()
        await asyncio.gather(*(client(i) for i in range(clients)))
        return (time.thread_time() - t) / (rounds * clients)

    total = uvloop.run(run())
    return round(total * 1e6, 2)


def per_record(bootstrap: str) -> dict:
    """CPU per record through aiokafka to a real broker, 12 partitions per produce request."""
    from aiokafka import AIOKafkaProducer

    from eventpipe.compat.aiokafka import install_produce_encoding
    from eventpipe.ingest.records import RecordBatch, compressor, encode_produce_request
    from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

    async def run(requests: int, codec: str | None, rounds: int) -> dict:
        values = [
            encode_bundle(
                [
                    AcceptedRequest(
                        "bench0",
                        1764000000000,
                        "10.0.0.1",
                        "analytics-swift/1.7.1",
                        BODIES[(i * requests + j) % len(BODIES)],
                    )
                    for j in range(requests)
                ]
            )
            for i in range(48)
        ]
        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0, max_request_size=4 << 20
        )
        await p.start()
        comp = compressor(codec)
        k = 0

        async def one_round():
            nonlocal k
            futs = []
            for partition in range(12):
                value = values[k % len(values)]
                k += 1
                futs.append(
                    await p.send_batch(
                        RecordBatch([value], int(time.time() * 1000), codec, comp), "events.raw", partition=partition
                    )
                )
            await asyncio.gather(*futs)

        for _ in range(20):
            await one_round()
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        for _ in range(rounds):
            await one_round()
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        await p.stop()
        n = rounds * 12
        return {
            "requests_per_record": requests,
            "codec": codec or "none",
            "record_kb": round(len(values[0]) / 1024, 1),
            "cpu_us_per_record": round(((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / n * 1e6, 1),
            "sys_us_per_record": round((r1.ru_stime - r0.ru_stime) / n * 1e6, 1),
        }

    install_produce_encoding(encode_produce_request)
    out = []
    for requests in (1, 4, 10, 20):
        for codec in (None, "lz4"):
            out.append(uvloop.run(run(requests, codec, 150)))
            print(f"collector costs: per record {out[-1]}", flush=True)
    return {
        "runs": out,
        "encode_bundle_us_per_request": best(
            lambda: encode_bundle([AcceptedRequest("p", 1, "ip", "ua", b) for b in BODIES[:10]]), 5000
        )
        / 10,
    }


def per_byte() -> dict:
    from eventpipe.ingest.records import checksum, compressor
    from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

    value = encode_bundle([AcceptedRequest("p", 1, "ip", "ua", b) for b in BODIES[:10]])
    lz4 = compressor("lz4")
    zstd = compressor("zstd")
    n = len(value)
    return {
        "bundle_bytes": n,
        "lz4_ns_per_byte": round(best(lambda: lz4(value), 500) * 1000 / n, 3),
        "lz4_ratio": round(n / len(lz4(value)), 2),
        "zstd1_ns_per_byte": round(best(lambda: zstd(value), 500) * 1000 / n, 3),
        "zstd1_ratio": round(n / len(zstd(value)), 2),
        "crc32c_ns_per_byte": round(best(lambda: checksum(b"", [value]), 2000) * 1000 / n, 4),
    }


def main() -> int:
    import harness

    os.sched_setaffinity(0, {0})
    doc = {
        "command": "python benchmarks/collector_costs.py",
        "note": __doc__.split("\n\n")[1].replace("\n", " "),
        "per_request_us": per_request(),
    }
    doc["per_request_us"]["bundler"] = bundler_per_request()
    print(f"collector costs: per request {doc['per_request_us']}", flush=True)
    doc["per_byte"] = per_byte()
    print(f"collector costs: per byte {doc['per_byte']}", flush=True)
    broker = harness.start_broker("1")
    try:
        doc["per_record"] = per_record(broker.bootstrap)
    finally:
        harness.stop_broker(broker)
    path = harness.write_result("collector-costs", doc)
    print(f"collector costs: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
