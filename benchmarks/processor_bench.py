"""``eventpipe bench processor``: the real faust processor alone, pinned to one core, over a pre-filled topic.

A topic pre-filled with bundles like the collector's; the processor (all its threads, chDB's
included) drains it into chDB with the rollup views on CPU 0, the broker on CPU 1. Reports events per
CPU-second, the in-run ceiling (the same rows pre-built, inserted in the same run), Kafka and
ClickHouse bytes per event.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import load
from harness import (
    CpuMeter,
    HOST,
    RESULTS,
    ROOT,
    WRITE_KEYS,
    free_port,
    group_cpu_seconds,
    group_rss_mb,
    http_get,
    median_or_none,
    metric_value,
    profile_summary,
    py_spy,
    spawn,
    start_broker,
    stop,
    stop_broker,
    topic_bytes,
    wait_ready,
    write_result,
)


async def prefill(
    bootstrap: str,
    topic: str,
    reqs: list[bytes],
    events: int,
    requests_per_bundle: int,
    partitions: int = 12,
    compression: str | None = None,
    keep: list | None = None,
) -> dict:
    """Produce bundles shaped like the collector's (``requests_per_bundle`` requests each) until ``events``."""
    from aiokafka import AIOKafkaProducer

    from eventpipe.ingest.partitioning import partition_for
    from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

    bodies = [r[r.index(b"\r\n\r\n") + 4 :] for r in reqs]
    per_request = [len(load_batch(b)) for b in bodies]
    offsets = [load.message_id_offsets(b) for b in bodies]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=2 * 1024 * 1024,
        compression_type=compression,
    )
    await producer.start()
    made = records = nbytes = i = 0
    futures, values = [], []
    try:
        while made < events:
            now = int(time.time() * 1000)
            group = []
            for _ in range(requests_per_bundle):
                body = bodies[i % len(bodies)]
                if i >= len(bodies):  # processors drop a repeated (project, messageId): fresh ids per cycle
                    body = load.stamp(body, offsets[i % len(bodies)], i // len(bodies))
                group.append(AcceptedRequest("bench0", now, "10.0.0.1", "analytics-swift/1.7.1", body))
                made += per_request[i % len(bodies)]
                i += 1
            value = encode_bundle(group)
            values.append(value)
            nbytes += len(value)
            futures.append(
                await producer.send(topic, value, partition=partition_for(str(records).encode(), partitions))
            )
            records += 1
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    if keep is not None:
        keep.extend(values)
    return {"events": made, "records": records, "requests": i, "record_bytes": nbytes}


def load_batch(body: bytes) -> list:
    import orjson

    return orjson.loads(body)["batch"]


def query(port: int, sql: str) -> list:
    status, body = http_get(f"http://{HOST}:{port}/query?sql=" + urllib.parse.quote(sql), 30)
    doc = json.loads(body)
    if status != 200:
        raise RuntimeError(f"query failed: {doc}")
    return doc["rows"]


def settle_merges(running, timeout: float = 60.0, quiet: float = 2.0) -> float:
    """Wait until ``running()`` (the store's merges in progress) has been 0 for ``quiet`` seconds on end: a
    single 0 can fall between one merge and the next, which the store selects a moment later. The seconds
    waited."""
    started = time.monotonic()
    quiet_since = None
    while time.monotonic() - started < timeout:
        if running():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            break
        time.sleep(0.2)
    return round(time.monotonic() - started, 2)


def start_processor(broker, data: Path, web_port: int, log, cpu: str | None, extra_env: dict | None = None):
    env = {
        "EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "EVENTPIPE_DATA_DIR": str(data),
        "EVENTPIPE_PROCESSOR_WEB_PORT": str(web_port),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    proc = spawn([sys.executable, "-m", "eventpipe.cli", "processor"], cpu, env, log)
    wait_ready(f"http://{HOST}:{web_port}/query?sql=SELECT%201", proc, 120, log)
    return proc


def clickhouse_bytes(data: Path) -> dict:
    """events table size on disk from system.parts, as written and after OPTIMIZE FINAL (merged)."""
    from eventpipe.settings import Settings
    from eventpipe.store import Store

    store = Store(Settings.from_env({}, data_dir=data))
    sql = (
        "SELECT sum(bytes_on_disk), sum(rows), count() FROM system.parts "
        "WHERE active AND database = currentDatabase() AND table = '{}'"
    )
    before = store.query(sql.format("events")).rows[0]
    store.client.command("OPTIMIZE TABLE events FINAL")
    after = store.query(sql.format("events")).rows[0]
    rollups = {t: store.query(sql.format(t)).rows[0][0] for t in ("events_1m", "events_1h")}
    store.close()
    return {
        "as_inserted": {"bytes": int(before[0]), "rows": int(before[1]), "parts": int(before[2])},
        "after_optimize": {"bytes": int(after[0]), "rows": int(after[1]), "parts": int(after[2])},
        "rollup_bytes": {k: int(v or 0) for k, v in rollups.items()},
    }


def measure_ceiling(bundles: list[bytes], batch_rows: int, cpu: str | None) -> dict:
    """benchmarks/processor_costs.py --ceiling on ``bundles`` in its own process on ``cpu``: CPU per event of
    inserting the rows pre-built, and of the processor's parts (explode, dedup) on the same rows."""
    with tempfile.NamedTemporaryFile(suffix=".msgpack") as f:
        import msgspec

        f.write(msgspec.msgpack.encode(bundles))
        f.flush()
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / "processor_costs.py"),
            "--ceiling",
            f.name,
            "--batch-rows",
            str(batch_rows),
        ]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)


def scenario_processor(args) -> dict:
    import matplotlib

    reqs = load.build_requests(HOST, args.pool, args.events, None, False, WRITE_KEYS, args.devices)
    broker = start_broker("1")
    runs = []
    try:
        for rep in range(args.repeats):
            topic = "events.raw"
            if rep:  # a fresh topic per round: recreate the broker
                stop_broker(broker)
                broker = start_broker("1")
            bundles: list[bytes] = []
            filled = asyncio.run(
                prefill(
                    broker.bootstrap,
                    topic,
                    reqs,
                    args.total_events,
                    args.requests_per_bundle,
                    compression=args.compression,
                    keep=bundles,
                )
            )
            kafka_bytes = topic_bytes(broker, topic)
            data = Path(tempfile.mkdtemp(prefix="eventpipe-bench-proc-"))
            port = free_port()
            with tempfile.TemporaryFile() as log:
                proc = start_processor(
                    broker, data, port, log, "0", {"EVENTPIPE_PROCESSOR_BATCH_RECORDS": str(args.batch_records)}
                )
                # what a process costs before its first row (imports, migrations, faust's start, the group
                # join): an outside view that counts it makes a small micro-batch look dear
                startup_cpu = group_cpu_seconds(proc.pid)
                spy = None
                try:
                    series, t_first, meter, stalled = [], None, None, False
                    deadline = time.monotonic() + args.timeout
                    while time.monotonic() < deadline:
                        written = metric_value(
                            http_get(f"http://{HOST}:{port}/metrics")[1].decode(),
                            "eventpipe_processor_events_written_total",
                        )
                        now = time.monotonic()
                        if written > 0 and t_first is None:
                            t_first, w_first, meter = now, written, CpuMeter(proc.pid)
                            if args.profile:
                                spy = [
                                    subprocess.Popen(
                                        py_spy(RESULTS / f"profile-processor.{ext}", proc.pid),
                                        stdout=subprocess.DEVNULL,
                                        stderr=log,
                                    )
                                    for ext in ("svg", "txt")
                                ]
                        series.append((now, written))
                        if written >= filled["events"]:
                            break
                        if t_first is not None and len(series) > 240 and series[-240][1] == written:
                            stalled = True  # no row for 60 s: faust stopped delivering (seen at batch 2000)
                            break
                        time.sleep(0.25)
                    if t_first is None:  # not one row written before the timeout: say why
                        log.seek(0)
                        tail = log.read().decode(errors="replace").splitlines()[-40:]
                        raise RuntimeError(
                            "bench processor: no row written in time; processor log:\n" + "\n".join(tail)
                        )
                    # the CPU counted includes the background merges the inserts caused, up to when the store
                    # has none left running (the ceiling is measured the same way): where the count stopped at
                    # the last row, it caught a random share of them, and the rounds scattered by ±30 %
                    merges_settled = settle_merges(lambda: query(port, "SELECT count() FROM system.merges")[0][0])
                    cpu = meter.read() if meter else {}
                    rss = group_rss_mb(proc.pid)
                    text = http_get(f"http://{HOST}:{port}/metrics")[1].decode()
                    batches = metric_value(text, "eventpipe_processor_batch_rows_count")
                    diag = {
                        "micro_batches": batches,
                        "rows_per_micro_batch": round(
                            metric_value(text, "eventpipe_processor_batch_rows_sum") / max(1, batches), 1
                        ),
                        "write_seconds_per_micro_batch": round(
                            metric_value(text, "eventpipe_processor_insert_seconds_sum") / max(1, batches), 4
                        ),
                    }
                    if spy is not None:
                        for p in spy:
                            p.send_signal(signal.SIGINT)
                        for p in spy:
                            p.wait(timeout=60)
                        svg = RESULTS / "profile-processor.svg"
                        diag["profile"] = {
                            "svg": str(svg.relative_to(ROOT)),
                            **profile_summary(svg.with_suffix(".txt")),
                            "command": " ".join(py_spy(svg.relative_to(ROOT), "<processor pid>"))
                            + "  (from first written row to the last; SIGINT ends it)",
                        }
                    rows = query(port, "SELECT count() FROM events")[0][0]
                finally:
                    stop(proc)
            t_end, w_end = series[-1]
            if stalled:  # the rate up to the stall
                t_end = min(t for t, w in series if w == w_end)
            eps = (w_end - w_first) / (t_end - t_first) if t_end > t_first else None
            cpu_s = cpu.get("server_cpu_seconds")
            per_cpu_s = (w_end - w_first) / cpu_s if cpu_s else None
            # the in-run ceiling: the same rows, pre-built as Arrow, inserted into a fresh store on CPU 0 in
            # micro-batches of the processor's size (benchmarks/processor_costs.py --ceiling)
            ceiling = measure_ceiling(bundles, max(1, int(diag["rows_per_micro_batch"])), "0")
            ch = clickhouse_bytes(data)
            shutil.rmtree(data, ignore_errors=True)
            r = {
                "prefill": filled,
                "events_in_table": rows,
                "complete": rows == filled["events"],
                "stalled": stalled,
                "events_per_sec": round(eps, 1) if eps else None,
                "drain_seconds": round(t_end - t_first, 2),
                "events_per_cpu_second": round(per_cpu_s, 1) if per_cpu_s else None,
                "ceiling": ceiling,
                "startup_cpu_seconds": round(startup_cpu, 2),
                "merges_settled_after_s": merges_settled,
                "ratio_to_ceiling": round(per_cpu_s / ceiling["insert_events_per_cpu_second"], 3)
                if per_cpu_s
                else None,
                "kafka_log_bytes": kafka_bytes,
                "kafka_bytes_per_event": round(kafka_bytes / filled["events"], 1),
                "clickhouse": ch,
                "clickhouse_bytes_per_event": round(
                    ch["after_optimize"]["bytes"] / max(1, ch["after_optimize"]["rows"]), 1
                ),
                "clickhouse_bytes_per_event_as_inserted": round(
                    ch["as_inserted"]["bytes"] / max(1, ch["as_inserted"]["rows"]), 1
                ),
                "processor_rss_peak_mb": rss,
                **cpu,
                **diag,
                "series": [(round(t - series[0][0], 2), w) for t, w in series],
            }
            runs.append(r)
            print(
                f"bench processor: round {rep + 1}: {r['events_per_cpu_second']:.0f} events per CPU-second "
                f"(ceiling, pre-built rows inserted: {ceiling['insert_events_per_cpu_second']:.0f}; ratio "
                f"{r['ratio_to_ceiling']:.2f}); {r['events_per_sec']:.0f} events/s on CPU 0 "
                f"(cpu {cpu.get('server_cpu', 0):.0%}, foreign {cpu.get('foreign_cpu_on_core', 0):.0%})"
                f"{'  DISTURBED' if cpu.get('disturbed') else ''}; {rows}/{filled['events']} rows; "
                f"{diag['rows_per_micro_batch']} rows/{diag['write_seconds_per_micro_batch']} s per micro-batch; "
                f"kafka {r['kafka_bytes_per_event']} B/event, clickhouse {r['clickhouse_bytes_per_event']} B/event",
                flush=True,
            )
    finally:
        stop_broker(broker)
    clean = [r for r in runs if not r.get("disturbed")] or runs
    doc = {
        "command": args.command_line,
        "note": (
            "processor (all threads, chDB included) pinned to CPU 0, broker on CPU 1; events/s measured "
            "from the first written row to the last, over a pre-filled topic; bytes/event: Kafka log "
            "segments (one replica) and system.parts of `events` after OPTIMIZE FINAL"
        ),
        "requests_per_bundle": args.requests_per_bundle,
        "events_per_request": args.events,
        "record_compression": args.compression,
        "batch_records": args.batch_records,
        "processor_events_per_sec_per_core": median_or_none(r["events_per_sec"] for r in clean),
        "processor_events_per_cpu_second": median_or_none(r["events_per_cpu_second"] for r in clean),
        "ceiling_events_per_cpu_second": median_or_none(r["ceiling"]["insert_events_per_cpu_second"] for r in clean),
        "ratio_to_ceiling": median_or_none(r["ratio_to_ceiling"] for r in clean),
        "events_per_sec": median_or_none(r["events_per_sec"] for r in clean),
        "cores": 1,
        "kafka_bytes_per_event": median_or_none(r["kafka_bytes_per_event"] for r in clean),
        "clickhouse_bytes_per_event": median_or_none(r["clickhouse_bytes_per_event"] for r in clean),
        "runs": runs,
    }
    if args.profile:  # py-spy slows the process it samples: keep this run's numbers out of `eventpipe plan`
        for key in (
            "processor_events_per_sec_per_core",
            "events_per_sec",
            "kafka_bytes_per_event",
            "processor_events_per_cpu_second",
            "ratio_to_ceiling",
            "clickhouse_bytes_per_event",
        ):
            doc[f"profiled_{key}"] = doc.pop(key)
        doc["scenario"] = "processor-profiled"
    path = write_result(args.name, doc)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(runs):
        ax.plot(
            [t for t, _ in r["series"]],
            [w for _, w in r["series"]],
            label=f"round {i + 1}: {r['events_per_sec']:.0f} ev/s",
        )
    ax.set_xlabel("seconds since processor start")
    ax.set_ylabel("events written to chDB")
    ax.set_title(f"processor on one core draining {runs[0]['prefill']['events']:,} events", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png", dpi=100)
    plt.close(fig)
    rate = doc.get("processor_events_per_sec_per_core", doc.get("profiled_processor_events_per_sec_per_core"))
    print(f"bench processor: {rate} events/s/core{' (profiled)' if args.profile else ''}; wrote {path}")
    return doc
