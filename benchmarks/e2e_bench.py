"""``eventpipe bench e2e`` and ``bench stack``: the whole pipeline on the 2 cores, as a user runs it.

e2e: broker, collector, processor and load, unpinned, open loop at fixed rates; freshness =
``inserted_at - received_at`` of every row received in the measured window. stack: `wrk -t1 -c64`
against the local stack (`eventpipe up`'s parts), closed loop.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import load
from harness import (
    baseline_pythonpath,
    CpuMeter,
    HOST,
    KEY_ENV,
    RESULTS,
    ROOT,
    WRITE_KEYS,
    free_port,
    group_rss_mb,
    http_get,
    median_or_none,
    metric_value,
    spawn,
    start_broker,
    stop,
    stop_broker,
    wait_ready,
    write_result,
)
from collector_bench import BASELINE_ENV, SERVERS, collector_metrics
from processor_bench import query, start_processor


class RssSampler:
    """Current RSS of the processor and the collector every second while a run lasts, with a progress
    line every 30 s: [[seconds, processor MB, collector MB], ...] (is the processor's memory bounded?)."""

    def __init__(self, processor_pid: int, collector_pid: int, web_port: int):
        self.pids, self.web = (processor_pid, collector_pid), web_port
        self.series: list[list[float]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        while not self.done.wait(1.0):
            elapsed = round(time.monotonic() - started)
            self.series.append([elapsed, *(group_rss_mb(pid, "VmRSS") for pid in self.pids)])
            if elapsed % 30 == 0:
                try:
                    rows = f"{query(self.web, 'SELECT count() FROM events')[0][0]:,}"
                except (OSError, ValueError, RuntimeError):  # a busy processor: the progress line goes without it
                    rows = "?"
                print(
                    f"bench e2e: {elapsed} s, processor RSS {self.series[-1][1]:.0f} MB, collector "
                    f"{self.series[-1][2]:.0f} MB, {rows} rows queryable",
                    flush=True,
                )

    def stop(self) -> list[list[float]]:
        self.done.set()
        self.thread.join()
        return self.series


def processor_batches(web_port: int, since: dict | None = None) -> dict:
    """The processor's micro-batches (count, rows and write seconds each) from its /metrics, since ``since``:
    what its freshness is made of (a batch waits to fill, then takes its write time)."""
    text = http_get(f"http://{HOST}:{web_port}/metrics")[1].decode()
    now = {
        "count": metric_value(text, "eventpipe_processor_batch_rows_count"),
        "rows": metric_value(text, "eventpipe_processor_batch_rows_sum"),
        "write_seconds": metric_value(text, "eventpipe_processor_insert_seconds_sum"),
    }
    if since is None:
        return now
    n = max(1.0, now["count"] - since["count"])
    return {
        "micro_batches": now["count"] - since["count"],
        "rows_per_micro_batch": round((now["rows"] - since["rows"]) / n, 1),
        "write_seconds_per_micro_batch": round((now["write_seconds"] - since["write_seconds"]) / n, 4),
    }


def scenario_e2e(args) -> dict:
    reqs = load.build_requests(HOST, args.pool, args.events, None, args.gzip, WRITE_KEYS, args.devices)
    broker = start_broker(None)
    data = Path(tempfile.mkdtemp(prefix="eventpipe-bench-e2e-"))
    web, cport = free_port(), free_port()
    out = []
    with tempfile.TemporaryFile() as plog, tempfile.TemporaryFile() as clog:
        processor = start_processor(broker, data, web, plog, None)
        collector = spawn(
            [sys.executable, "-m", "eventpipe.cli", "collector"],
            None,
            {
                "EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap,
                "EVENTPIPE_WRITE_KEYS": KEY_ENV,
                "EVENTPIPE_COLLECTOR_PORT": str(cport),
            },
            clog,
        )
        try:
            wait_ready(f"http://{HOST}:{cport}/readyz", collector, 60, clog)
            for rate in args.rates:
                before = query(web, "SELECT count() FROM events")[0][0]
                batches_before = processor_batches(web)
                t_start_ms = int(time.time() * 1000) + 1500
                pc, cc = CpuMeter(processor.pid, None), CpuMeter(collector.pid, None)
                rss = RssSampler(processor.pid, collector.pid, web)
                r = load.open_loop(f"http://{HOST}:{cport}", rate, args.duration, reqs, args.open_connections)
                r["rss_series"] = rss.stop()
                r.update(collector_cpu=cc.read()["server_cpu"], processor_cpu=pc.read()["server_cpu"])
                accepted = before + r["ok"] * args.events
                t_end_ms = int(time.time() * 1000)
                deadline = time.monotonic() + args.settle
                while time.monotonic() < deadline:
                    have = query(web, "SELECT count() FROM events")[0][0]
                    if have >= accepted:
                        break
                    time.sleep(0.5)
                r["events_accepted"] = accepted - before
                r["events_queryable"] = have - before
                if have < accepted:  # the processor fell behind or stalled: keep what it said
                    plog.seek(0)
                    r["processor_log_tail"] = plog.read().decode(errors="replace").splitlines()[-60:]
                skip = t_start_ms + int(args.warmup * 1000)
                q = query(
                    web,
                    "SELECT quantiles(0.5, 0.9, 0.99, 0.999)(toUnixTimestamp64Milli(inserted_at) - "
                    "toUnixTimestamp64Milli(received_at)), max(toUnixTimestamp64Milli(inserted_at) - "
                    "toUnixTimestamp64Milli(received_at)), count() FROM events WHERE "
                    f"received_at >= fromUnixTimestamp64Milli({skip}) AND "
                    f"received_at <= fromUnixTimestamp64Milli({t_end_ms})",
                )[0]
                r["freshness_ms"] = {
                    "p50": q[0][0],
                    "p90": q[0][1],
                    "p99": q[0][2],
                    "p99.9": q[0][3],
                    "max": q[1],
                    "rows": q[2],
                }
                series = query(
                    web,
                    "SELECT intDiv(toUnixTimestamp64Milli(received_at) - "
                    f"{t_start_ms}, 1000) AS s, count(), quantile(0.99)(toUnixTimestamp64Milli("
                    "inserted_at) - toUnixTimestamp64Milli(received_at)) FROM events WHERE "
                    f"received_at >= fromUnixTimestamp64Milli({t_start_ms - 1000}) "
                    f"AND received_at <= fromUnixTimestamp64Milli({t_end_ms}) GROUP BY s ORDER BY s",
                )
                r["freshness_series"] = series
                r["collector_rss_peak_mb"] = group_rss_mb(collector.pid)
                r["processor_rss_mb"] = group_rss_mb(processor.pid, "VmRSS")
                r["processor_micro_batches"] = processor_batches(web, batches_before)
                out.append(r)
                f = r["freshness_ms"]
                print(
                    f"bench e2e: offered {rate}/s: {r['ok_per_sec']:.0f} ok/s, http p99 {r['latency']['p99_ms']} "
                    f"ms; freshness p50 {f['p50']} ms p99 {f['p99']} ms max {f['max']} ms; "
                    f"{r['events_queryable']}/{r['events_accepted']} events queryable; cpu collector "
                    f"{r['collector_cpu']:.0%} processor {r['processor_cpu']:.0%}; processor micro-batches "
                    f"{r['processor_micro_batches']}",
                    flush=True,
                )
        finally:
            stop(collector)
            stop(processor)
            stop_broker(broker)
            shutil.rmtree(data, ignore_errors=True)
    doc = {
        "command": args.command_line,
        "note": (
            "2 cores for everything (broker, collector, processor, load generator; unpinned). freshness = "
            "inserted_at - received_at of each row received in the window (first "
            f"{args.warmup:.0f} s skipped)"
        ),
        "events_per_request": args.events,
        "runs": out,
    }
    path = write_result(args.name, doc)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, mem) = plt.subplots(2, 1, figsize=(8, 6.5), height_ratios=[3, 2])
    for r in out:
        pts = [(s, p / 1000) for s, _, p in r["freshness_series"] if p is not None]
        p99 = r["freshness_ms"]["p99"]
        ax.plot(
            [s for s, _ in pts],
            [p for _, p in pts],
            label=f"{r['offered_rate']:.0f} req/s offered ({r['ok_per_sec']:.0f} ok/s): p99 "
            + (f"{p99 / 1000:.2f} s" if p99 is not None else "n/a")
            + f", {r['events_queryable']:,}/{r['events_accepted']:,} events queryable",
        )
    ax.axhline(2.0, color="grey", ls="--", lw=1, label="target p99 2 s")
    ax.set_yscale("log")
    ax.set_xlabel("second of the run (by received_at)")
    ax.set_ylabel("p99 freshness s (received -> queryable)")
    ax.legend(fontsize=8)
    for r in out:
        series = r.get("rss_series") or []
        mem.plot([s[0] for s in series], [s[1] for s in series], label=f"processor, {r['offered_rate']:.0f} req/s")
        mem.plot(
            [s[0] for s in series], [s[2] for s in series], ls=":", label=f"collector, {r['offered_rate']:.0f} req/s"
        )
    mem.set_xlabel("second of the run")
    mem.set_ylabel("RSS MB")
    mem.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png", dpi=100)
    plt.close(fig)
    print(f"bench e2e: wrote {path}")
    return doc


# --- the whole local stack, unpinned: what a user of `eventpipe up` sees ---------------------------------------
def scenario_stack(args) -> dict:
    """Broker, processor and collector on the 2 cores (no pinning), wrk closed loop (1 thread, ``--connections``)
    against the collector: requests/s with 0 errors, each process's CPU, and how far the processor keeps up.
    ``--baseline DIR`` runs the same stack again with that checkout's collector (same broker and processor)."""
    if getattr(args, "baseline", None):
        os.environ[BASELINE_ENV] = args.baseline
    reqs = load.build_requests(HOST, args.pool, args.events, None, args.gzip, WRITE_KEYS, args.devices)
    names = ["collector"] + (["collector-baseline"] if os.environ.get(BASELINE_ENV) else [])
    plan = [n for _ in range(args.repeats) for n in names]
    broker = start_broker(None)
    data = Path(tempfile.mkdtemp(prefix="eventpipe-bench-stack-"))
    web = free_port()
    runs = {n: [] for n in names}
    with tempfile.TemporaryFile() as plog:
        processor = start_processor(broker, data, web, plog, None)
        try:
            for name in plan:
                cport = free_port()
                with tempfile.TemporaryFile() as clog:
                    cmd, cwd = SERVERS[name]
                    env = {
                        "EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap,
                        "EVENTPIPE_WRITE_KEYS": KEY_ENV,
                        "EVENTPIPE_COLLECTOR_PORT": str(cport),
                        "EVENTPIPE_COLLECTOR_HOST": HOST,
                    }
                    if name == "collector-baseline":
                        cwd = Path(baseline_pythonpath(Path(os.environ[BASELINE_ENV])))
                        env["PYTHONPATH"] = str(cwd)
                    else:
                        env["PYTHONPATH"] = str(ROOT)
                    collector = spawn(cmd, None, env, clog, cwd)
                    try:
                        wait_ready(f"http://{HOST}:{cport}/readyz", collector, 60, clog)
                        load.wrk_saturate(f"http://{HOST}:{cport}", 2, args.connections, reqs, cpu=None)
                        w0 = metric_value(
                            http_get(f"http://{HOST}:{web}/metrics")[1].decode(),
                            "eventpipe_processor_events_written_total",
                        )
                        cc, pc = CpuMeter(collector.pid, None), CpuMeter(processor.pid, None)
                        bc = CpuMeter(broker.proc.pid, None)
                        t0 = time.monotonic()
                        r = load.wrk_saturate(f"http://{HOST}:{cport}", args.duration, args.connections, reqs, cpu=None)
                        wall = time.monotonic() - t0
                        c, p, b = cc.read(), pc.read(), bc.read()
                        w1 = metric_value(
                            http_get(f"http://{HOST}:{web}/metrics")[1].decode(),
                            "eventpipe_processor_events_written_total",
                        )
                        r.update(
                            collector_cpu=c["server_cpu"],
                            processor_cpu=p["server_cpu"],
                            broker_cpu=b["server_cpu"],
                            cpu_busy=c["cpu_busy"],
                            processor_events_per_sec=round((w1 - w0) / wall),
                            events_per_sec_accepted=round(r["requests_per_sec"] * args.events),
                            collector_rss_peak_mb=group_rss_mb(collector.pid),
                        )
                        m = collector_metrics(cport)
                        r["kafka"] = {
                            "requests_per_bundle": round(m["bundle_requests_sum"] / max(1, m["bundles"]), 1),
                            "ack_ms_mean": round(1000 * m["ack_sum"] / max(1, m["ack_count"]), 2),
                        }
                    finally:
                        stop(collector)
                runs[name].append(r)
                print(
                    f"bench stack: {name:18s} {r['requests_per_sec']:8.0f} req/s  non-2xx {r['non_2xx']}  "
                    f"socket errors {r['socket_errors']}  cpu: collector {r['collector_cpu']:.0%} processor "
                    f"{r['processor_cpu']:.0%} broker {r['broker_cpu']:.0%}; processor wrote "
                    f"{r['processor_events_per_sec']} events/s of {r['events_per_sec_accepted']} accepted; "
                    f"kafka {r['kafka']}",
                    flush=True,
                )
        finally:
            stop(processor)
            stop_broker(broker)
            shutil.rmtree(data, ignore_errors=True)
    doc = {
        "command": args.command_line,
        "note": (
            "broker, processor, collector and wrk (-t1) share the 2 cores, nothing pinned; the processor "
            "drains what the collector accepts while it runs (wrk replays a pool of requests, so repeated "
            "messageIds are dropped by the processor: its events/s is what it wrote, not a capacity)"
        ),
        "connections": args.connections,
        "duration_s": args.duration,
        "events_per_request": args.events,
        "median_requests_per_sec": {n: median_or_none(r["requests_per_sec"] for r in runs[n]) for n in names},
        "runs": runs,
    }
    path = write_result(args.name, doc)
    print(f"bench stack: {doc['median_requests_per_sec']}; wrote {path}")
    return doc
