"""``eventpipe bench collector``: the real collector against the bare granian server, in one run.

The collector and the bare "parse and 200" server (apps/bare.py, same granian RSGI stack) alternate on
CPU 0; wrk (saturation) or the open-loop generator (latency at 80 %) and a real Kafka broker share
CPU 1. Reports requests/s per core of each, their ratio from the same run, and the collector's
latency at 80 % of its own saturation rate, measured open loop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import load
from harness import (
    baseline_pythonpath,
    BIN,
    CpuMeter,
    HERE,
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
    profile_summary,
    py_spy,
    spawn,
    start_broker,
    stop,
    stop_broker,
    wait_ready,
    write_result,
)


SERVERS = {
    "bare": (
        [
            str(BIN / "granian"),
            "--interface",
            "rsgi",
            "--loop",
            "uvloop",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
            "--host",
            HOST,
            "--port",
            "{port}",
            "bare:app",
        ],
        HERE / "apps",
    ),
    "collector": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    # proposals, measured before they are made (apps/collector_variant.py)
    "collector-lz4": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    "collector-zstd": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    "collector-none": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    "collector-nullsink": ([sys.executable, str(HERE / "apps" / "collector_variant.py")], ROOT),
    "collector-timersink": ([sys.executable, str(HERE / "apps" / "collector_variant.py")], ROOT),
    "collector-baseline": (
        [sys.executable, "-m", "eventpipe.cli", "collector"],
        None,
    ),  # cwd: $EVENTPIPE_BENCH_BASELINE
}
VARIANT_ENV = {
    "collector-lz4": {"EVENTPIPE_RECORD_COMPRESSION": "lz4"},
    "collector-zstd": {"EVENTPIPE_RECORD_COMPRESSION": "zstd"},
    "collector-none": {"EVENTPIPE_RECORD_COMPRESSION": "none"},
    "collector-nullsink": {"EVENTPIPE_BENCH_NULL_SINK": "1"},
    "collector-timersink": {"EVENTPIPE_BENCH_TIMER_SINK": "1"},
}


# `--baseline DIR`: the collector of another checkout (e.g. `git worktree add /tmp/base main`), run in the same
# rounds as this one's, so a change is measured against what it replaces under the same load.
BASELINE_ENV = "EVENTPIPE_BENCH_BASELINE"


def start_server(name: str, port: int, log, broker=None, extra_env: dict | None = None) -> subprocess.Popen:
    cmd, cwd = SERVERS[name]
    env = {
        "EVENTPIPE_WRITE_KEYS": KEY_ENV,
        "EVENTPIPE_COLLECTOR_PORT": str(port),
        "EVENTPIPE_COLLECTOR_HOST": HOST,
        **VARIANT_ENV.get(name, {}),
        **(extra_env or {}),
    }
    if name == "collector-baseline":
        cwd = Path(baseline_pythonpath(Path(os.environ[BASELINE_ENV])))
        env["PYTHONPATH"] = str(cwd)
    elif name.startswith("collector"):  # this checkout's ingest/, whatever package is installed
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        )
    if broker is not None:
        env["EVENTPIPE_KAFKA_BOOTSTRAP"] = broker.bootstrap
    proc = spawn([a.format(port=port) for a in cmd], "0", env, log, cwd)
    if name.startswith("collector"):
        wait_ready(f"http://{HOST}:{port}/readyz", proc, 60, log)
    else:
        _wait_port(port, proc, log)
    return proc


def _wait_port(port: int, proc, log) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("bare server did not start")


def measure_saturation(
    name: str, reqs: list[bytes], duration: int, connections: int, broker=None, profile: Path | None = None
) -> dict:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_server(name, port, log, broker)
        try:
            load.wrk_saturate(f"http://{HOST}:{port}", 2, connections, reqs)  # warm-up, not measured
            spy = None
            if profile is not None:
                spy = [
                    subprocess.Popen(
                        py_spy(out, proc.pid, duration, subprocesses=True), stdout=subprocess.DEVNULL, stderr=log
                    )
                    for out in (profile, profile.with_suffix(".txt"))
                ]
            meter = CpuMeter(proc.pid)
            m0 = collector_metrics(port) if name.startswith("collector") else None
            r = load.wrk_saturate(f"http://{HOST}:{port}", duration, connections, reqs)
            r.update(meter.read())
            r["rss_peak_mb"] = group_rss_mb(proc.pid)
            seconds = r["server_cpu"] * duration
            # CPU per request: robust to foreign load (which lowers throughput, not this), and the
            # throughput one whole core would give if the server were CPU-bound
            r["cpu_us_per_request"] = round(1e6 * seconds / max(1, r["requests"]), 1)
            r["cpu_bound_requests_per_sec"] = round(r["requests"] / seconds) if seconds else None
            if m0 is not None:
                m1 = collector_metrics(port)
                d = {k: m1[k] - m0[k] for k in m1}
                r["kafka"] = {
                    "bundles": d["bundles"],
                    "requests_per_bundle": round(d["bundle_requests_sum"] / max(1, d["bundles"]), 1),
                    "bundle_kb": round(d["bundle_bytes_sum"] / max(1, d["bundles"]) / 1024, 1),
                    "ack_ms_mean": round(1000 * d["ack_sum"] / max(1, d["ack_count"]), 2),
                }
            if spy is not None:
                for p in spy:
                    p.wait(timeout=60)
                r["profile"] = {
                    "svg": str(profile.relative_to(ROOT)),
                    "command": " ".join(py_spy(profile.relative_to(ROOT), "<server pid>", duration, True)),
                    **profile_summary(profile.with_suffix(".txt")),
                }
        finally:
            stop(proc)
    return r


def collector_metrics(port: int) -> dict:
    text = http_get(f"http://{HOST}:{port}/metrics")[1].decode()
    return {
        "bundles": metric_value(text, "eventpipe_collector_bundle_requests_count"),
        "bundle_requests_sum": metric_value(text, "eventpipe_collector_bundle_requests_sum"),
        "bundle_bytes_sum": metric_value(text, "eventpipe_collector_bundle_bytes_sum"),
        "ack_sum": metric_value(text, "eventpipe_collector_kafka_ack_seconds_sum"),
        "ack_count": metric_value(text, "eventpipe_collector_kafka_ack_seconds_count"),
    }


def measure_open_loop(
    name: str, reqs: list[bytes], rate: float, duration: float, connections: int, broker=None
) -> dict:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_server(name, port, log, broker)
        try:
            load.wrk_saturate(f"http://{HOST}:{port}", 2, 64, reqs)  # warm-up
            os.sched_setaffinity(0, {1})  # the generator forks from here: CPU 1, with wrk's place
            try:
                meter = CpuMeter(proc.pid)
                r = load.open_loop(f"http://{HOST}:{port}", rate, duration, reqs, connections)
                r.update(meter.read())
            finally:
                os.sched_setaffinity(0, set(range(os.cpu_count())))
            r["rss_peak_mb"] = group_rss_mb(proc.pid)
        finally:
            stop(proc)
    return r


def scenario_collector(args) -> dict:
    global PY_SPY_NATIVE
    PY_SPY_NATIVE = getattr(args, "native", False)
    if getattr(args, "baseline", None):
        os.environ[BASELINE_ENV] = args.baseline
    if "collector-baseline" in args.servers and not os.environ.get(BASELINE_ENV):
        raise SystemExit("eventpipe bench collector: collector-baseline needs --baseline DIR")
    reqs = load.build_requests(f"{HOST}", args.pool, args.events, None, args.gzip, WRITE_KEYS, args.devices)
    broker = start_broker("1")
    names = list(args.servers)
    runs = {n: [] for n in names}
    started = time.monotonic()
    try:
        plan = [(rep, n) for rep in range(args.repeats) for n in names[rep % len(names) :] + names[: rep % len(names)]]
        retries = args.retries
        while plan:
            rep, name = plan.pop(0)
            profile = None
            if args.profile and not runs[name]:
                profile = RESULTS / f"profile-{name}.svg"
            r = measure_saturation(name, reqs, args.duration, args.connections, broker, profile)
            if profile is not None:  # sampled by py-spy: slower, so never in a median, and run again
                r["profiled"] = True
                plan.append((rep, name))
            runs[name].append(r)
            print(
                f"bench collector: {name:9s} round {rep + 1}: {r['requests_per_sec']:8.0f} req/s  "
                f"server cpu {r['server_cpu']:.0%}  foreign on CPU 0 {r['foreign_cpu_on_core']:.0%}  "
                f"{r['cpu_us_per_request']:.0f} us cpu/request  non-2xx {r['non_2xx']}"
                + (f"  kafka {r['kafka']}" if "kafka" in r else "")
                + ("  DISTURBED" if r["disturbed"] else ""),
                flush=True,
            )
            if r["disturbed"] and retries > 0:
                retries -= 1
                plan.append((rep, name))
        med = {}
        for n in names:
            measured = [r for r in runs[n] if not r.get("profiled")] or runs[n]
            clean = [r for r in measured if not r["disturbed"]] or measured
            med[n] = {
                "requests_per_sec": median_or_none(r["requests_per_sec"] for r in clean),
                "cpu_us_per_request": median_or_none(r["cpu_us_per_request"] for r in measured),
                "cpu_bound_requests_per_sec": median_or_none(r["cpu_bound_requests_per_sec"] for r in measured),
                "server_cpu": median_or_none(r["server_cpu"] for r in clean),
                "runs_in_median": len(clean),
                "all_disturbed": all(r["disturbed"] for r in runs[n]),
            }
        # pairwise ratios (each collector run against the bare run of the same round) and their median
        ratio = round(med["collector"]["requests_per_sec"] / med["bare"]["requests_per_sec"], 3)
        variants = {
            n: round(med[n]["requests_per_sec"] / med["bare"]["requests_per_sec"], 3)
            for n in names
            if n.startswith("collector-")
        }
        latency = None
        if args.latency_duration > 0:
            rate = getattr(args, "latency_rate", None) or round(0.8 * med["collector"]["requests_per_sec"])
            latency = measure_open_loop("collector", reqs, rate, args.latency_duration, args.open_connections, broker)
            lat = latency["latency"]
            print(
                f"bench collector: open loop at {rate} req/s: {latency['ok_per_sec']:.0f} ok/s, "
                f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, p99.9 {lat['p99.9_ms']} ms; "
                f"incomplete {latency['incomplete']}, cpu {latency['server_cpu']:.0%}",
                flush=True,
            )
    finally:
        stop_broker(broker)
    doc = {
        "command": args.command_line,
        "note": (
            "servers on CPU 0; wrk (saturation) / the open-loop generator (latency) and the Kafka broker "
            "on CPU 1; medians over runs with < 10 % foreign load on CPU 0"
        ),
        "requests": load.request_stats(reqs)
        | {"events": args.events, "gzip": args.gzip, "write_keys": len(WRITE_KEYS), "devices": args.devices},
        "wrk": {"connections": args.connections, "duration_s": args.duration, "threads": 1},
        "collector_requests_per_sec_per_core": med["collector"]["requests_per_sec"],
        "bare_requests_per_sec_per_core": med["bare"]["requests_per_sec"],
        "collector_vs_bare": ratio,
        "collector_vs_bare_cpu_per_request": round(
            med["bare"]["cpu_us_per_request"] / med["collector"]["cpu_us_per_request"], 3
        ),
        "variants_vs_bare": variants,
        "median": med,
        "latency_at_80pct": latency,
        "collector_rss_peak_mb": max(r["rss_peak_mb"] for r in runs["collector"]),
        "runs": runs,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    name = getattr(args, "name", "collector")
    if name != "collector":  # a variant run (other connections, a fixed latency rate): not a capacity for the plan
        doc["variant_collector_requests_per_sec_per_core"] = doc.pop("collector_requests_per_sec_per_core")
        doc["scenario"] = "collector-variant"
    path = write_result(name, doc)
    plot_collector(doc, RESULTS / f"{name}.png")
    print(
        f"bench collector: collector {med['collector']['requests_per_sec']:.0f} req/s/core, bare "
        f"{med['bare']['requests_per_sec']:.0f}, ratio {ratio:.2f}; wrote {path} and {name}.png"
    )
    return doc


def plot_collector(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = doc.get("latency_at_80pct")
    fig, axes = plt.subplots(1, 2 if lat else 1, figsize=(11 if lat else 6, 4.5), squeeze=False)
    ax = axes[0][0]
    names = list(doc["median"])
    for i, n in enumerate(names):
        vals = [r["requests_per_sec"] for r in doc["runs"][n]]
        colors = ["#c44e52" if r["disturbed"] else "#4c72b0" for r in doc["runs"][n]]
        ax.bar(i, doc["median"][n]["requests_per_sec"], color="#bbbbbb", width=0.6)
        ax.scatter([i] * len(vals), vals, c=colors, zorder=3, s=18)
    labels = {
        "bare": "bare granian RSGI\n(parse + 200)",
        "collector": "eventpipe collector\n(acks=all)",
        "collector-lz4": "collector,\nlz4 records",
        "collector-zstd": "collector,\nzstd records",
        "collector-none": "collector,\nuncompressed records",
        "collector-nullsink": "collector,\nno Kafka write",
        "collector-timersink": "collector,\n5 ms timer, no Kafka",
        "collector-baseline": "baseline collector\n(--baseline)",
    }
    ax.set_xticks(range(len(names)), [labels.get(n, n) for n in names], fontsize=8)
    ax.set_ylabel("requests/s on one core (bar = median; red = disturbed run)")
    ax.set_title(f"saturation, wrk -c{doc['wrk']['connections']}: ratio {doc['collector_vs_bare']:.2f}", fontsize=10)
    if lat:
        ax2 = axes[0][1]
        tl = [p for p in lat["timeline"] if p["t"] < lat["duration_s"]]
        ax2.plot([p["t"] for p in tl], [p["p50_ms"] for p in tl], label="p50")
        ax2.plot([p["t"] for p in tl], [p["p99_ms"] for p in tl], label="p99")
        ax2.set_yscale("log")
        ax2.set_xlabel("seconds")
        ax2.set_ylabel("ms from intended send (open loop)")
        ax3 = ax2.twinx()
        ax3.plot([p["t"] for p in tl], [p["ok"] for p in tl], color="grey", lw=0.8, label="200/s")
        ax3.set_ylabel("200 responses/s", color="grey")
        ax2.legend(loc="upper left")
        ax2.set_title(
            f"collector open loop at {lat['offered_rate']:.0f} req/s: p99 {lat['latency']['p99_ms']} ms", fontsize=10
        )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
