"""Benchmark scenarios (``eventpipe bench collector|processor|e2e``), each writing JSON + PNG to results/.

(a)+(d) ``collector``: the real collector and the bare "parse and 200" server (apps/bare.py,
    same granian RSGI stack) alternate on CPU 0; wrk (saturation) or the open-loop
    generator (latency at 80 %) and a real Kafka broker share CPU 1. Reports requests/s per
    core of each, their ratio from the same run, and the collector's latency at 80 % of its
    own saturation rate, measured open loop.
(b) ``processor``: a topic pre-filled with bundles like the collector's; the real faust
    processor, pinned to CPU 0 (all its threads, chDB's included), drains it into chDB with
    the rollup views. Reports events/s per core, Kafka and ClickHouse bytes per event.
(c) ``e2e``: broker, collector, processor and load on the 2 cores (not pinned: there are not
    enough of them), open loop at fixed rates; freshness = ``inserted_at - received_at`` of
    every row received in the measured window (received_at is stamped by the collector,
    inserted_at by ClickHouse when the insert that made the row queryable ran).

Disturbance: the machine is shared. For each measured interval the JSON records the CPU
share the pinned server got and the foreign CPU share on its core (CPU 0 busy time not
spent by the server, from /proc/stat); a run with foreign load > 10 % of CPU 0 is marked
``disturbed`` and left out of the medians (kept in the JSON).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
MAX_FOREIGN = 0.10
WRITE_KEYS = tuple(f"wk_bench_{i}" for i in range(1, 21))  # 20 write keys, 4 projects
KEY_ENV = ",".join(f"{k}=bench{i % 4}" for i, k in enumerate(WRITE_KEYS))


# --- processes and CPU accounting ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], cpu: str | None, env: dict, log, cwd: Path = ROOT) -> subprocess.Popen:
    cmd = (["taskset", "-c", cpu] if cpu else []) + cmd
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _group_pids(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                out.append(int(d.name))
    return out


def group_cpu_seconds(pgid: int) -> float:
    ticks = 0
    for pid in _group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def group_rss_mb(pgid: int, field: str = "VmHWM") -> float:
    """Sum over the group's processes of peak (VmHWM) or current (VmRSS) resident memory."""
    kb = 0
    for pid in _group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    kb += int(line.split()[1])
        except OSError:
            continue
    return round(kb / 1024, 1)


def cpu_busy_seconds() -> dict[int, float]:
    """Busy (non-idle, non-iowait) seconds per CPU since boot."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals]
            out[int(name[3:])] = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    return out


class CpuMeter:
    """CPU share of a process group and foreign load on its core over an interval."""

    def __init__(self, pgid: int, core: int | None = 0):
        self.pgid, self.core = pgid, core
        self.t0, self.own0, self.busy0 = time.monotonic(), group_cpu_seconds(pgid), cpu_busy_seconds()

    def read(self) -> dict:
        wall = time.monotonic() - self.t0
        own = (group_cpu_seconds(self.pgid) - self.own0) / wall
        busy = cpu_busy_seconds()
        out = {"server_cpu": round(own, 3), "server_cpu_seconds": round(own * wall, 3),
               "cpu_busy": {c: round((busy[c] - self.busy0[c]) / wall, 3) for c in busy}}
        if self.core is not None:
            out["foreign_cpu_on_core"] = round(max(0.0, out["cpu_busy"][self.core] - own), 3)
            out["disturbed"] = out["foreign_cpu_on_core"] > MAX_FOREIGN
        return out


# `--native`: sample C and Rust frames too (GC, GIL hand-offs, syscalls); py-spy then pauses the process per sample
PY_SPY_NATIVE = False


def py_spy(out: Path, pid: int, duration: float | None = None, subprocesses: bool = False) -> list[str]:
    """py-spy's command line (pip install py-spy): a flame graph SVG of ``pid``, by default sampled without pausing it."""
    exe = str(BIN / "py-spy") if (BIN / "py-spy").exists() else "py-spy"
    fmt = ["--format", "raw"] if str(out).endswith(".txt") else []
    mode = ["--native"] if PY_SPY_NATIVE else ["--nonblocking"]
    return ([exe, "record", *mode, "--rate", "100", *fmt, "--output", str(out), "--pid", str(pid)]
            + (["--subprocesses"] if subprocesses else []) + (["--duration", str(round(duration))] if duration else []))


def profile_summary(raw: Path, top: int = 20) -> dict:
    """Self and inclusive sample shares per frame from py-spy's collapsed-stack (``--format raw``) output."""
    import collections

    if not raw.exists():
        return {}
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        n = int(count)
        total += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    pct = lambda c: {f: round(100 * v / total, 1) for f, v in c.most_common(top * 3)}  # noqa: E731
    inclusive = {f: v for f, v in pct(incl).items() if v < 95.0 and "granian/server" not in f
                 and "multiprocessing" not in f and "runpy" not in f}
    return {"samples": total, "self_pct": dict(list(pct(own).items())[:top]),
            "inclusive_pct": dict(list(inclusive.items())[:top])}


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, log=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if http_get(url, 2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    tail = ""
    if log is not None:
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
    stop(proc)
    raise RuntimeError(f"{url} not ready within {timeout:.0f}s (exit {proc.poll()}):\n{tail}")


def start_broker(cpu: str | None = "1"):
    from eventpipe.broker import KafkaBroker
    from eventpipe.settings import Settings

    data = Path(tempfile.mkdtemp(prefix="eventpipe-bench-kafka-"))
    settings = Settings.from_env({}, data_dir=data, kafka_bootstrap=f"{HOST}:{free_port()}")
    broker = KafkaBroker(settings).start()
    if cpu:
        subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(broker.proc.pid)], check=True, capture_output=True)
    print(f"bench: Kafka broker at {broker.bootstrap}" + (f" (CPU {cpu})" if cpu else ""), flush=True)
    return broker


def stop_broker(broker) -> None:
    """Stop a broker from start_broker and remove its temporary data directory."""
    broker.stop()
    shutil.rmtree(broker.data_dir.parent, ignore_errors=True)


def topic_bytes(broker, topic: str = "events.raw") -> int:
    return sum(f.stat().st_size for d in (broker.data_dir / "logs").glob(f"{topic}-*") for f in d.glob("*.log"))


def machine_info() -> dict:
    from importlib.metadata import version

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), None)
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg(),
            "packages": {p: version(p) for p in ("granian", "aiokafka", "faust-streaming", "chdb",
                                                  "clickhouse-connect", "orjson", "msgspec", "pyarrow")}}


def write_result(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"scenario": name.split("-")[0],
           **({"scenario": doc["scenario"]} if "scenario" in doc else {}),
           "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           **doc, "machine": machine_info()}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


# --- (a) + (d): collector vs bare ----------------------------------------------------------
SERVERS = {
    "bare": ([str(BIN / "granian"), "--interface", "rsgi", "--loop", "uvloop", "--workers", "1",
              "--log-level", "warning", "--no-access-log", "--host", HOST, "--port", "{port}", "bare:app"],
             HERE / "apps"),
    "collector": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    # proposals, measured before they are made (apps/collector_variant.py)
    "collector-lz4": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    "collector-zstd": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    "collector-none": ([sys.executable, "-m", "eventpipe.cli", "collector"], ROOT),
    "collector-nullsink": ([sys.executable, str(HERE / "apps" / "collector_variant.py")], ROOT),
    "collector-timersink": ([sys.executable, str(HERE / "apps" / "collector_variant.py")], ROOT),
    "collector-baseline": ([sys.executable, "-m", "eventpipe.cli", "collector"], None),  # cwd: $EVENTPIPE_BENCH_BASELINE
}
VARIANT_ENV = {"collector-lz4": {"EVENTPIPE_RECORD_COMPRESSION": "lz4"},
               "collector-zstd": {"EVENTPIPE_RECORD_COMPRESSION": "zstd"},
               "collector-none": {"EVENTPIPE_RECORD_COMPRESSION": "none"},
               "collector-nullsink": {"EVENTPIPE_BENCH_NULL_SINK": "1"},
               "collector-timersink": {"EVENTPIPE_BENCH_TIMER_SINK": "1"}}


# `--baseline DIR`: the collector of another checkout (e.g. `git worktree add /tmp/base main`), run in the same
# rounds as this one's, so a change is measured against what it replaces under the same load.
BASELINE_ENV = "EVENTPIPE_BENCH_BASELINE"


def start_server(name: str, port: int, log, broker=None, extra_env: dict | None = None) -> subprocess.Popen:
    cmd, cwd = SERVERS[name]
    env = {"EVENTPIPE_WRITE_KEYS": KEY_ENV, "EVENTPIPE_COLLECTOR_PORT": str(port),
           "EVENTPIPE_COLLECTOR_HOST": HOST, **VARIANT_ENV.get(name, {}), **(extra_env or {})}
    if name == "collector-baseline":
        cwd = Path(os.environ[BASELINE_ENV]).resolve()
        env["PYTHONPATH"] = str(cwd)
    elif name.startswith("collector"):  # this checkout's ingest/, whatever package is installed
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH")
                                                             else []))
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


def measure_saturation(name: str, reqs: list[bytes], duration: int, connections: int, broker=None,
                       profile: Path | None = None) -> dict:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_server(name, port, log, broker)
        try:
            load.wrk_saturate(f"http://{HOST}:{port}", 2, connections, reqs)  # warm-up, not measured
            spy = None
            if profile is not None:
                spy = [subprocess.Popen(py_spy(out, proc.pid, duration, subprocesses=True),
                                        stdout=subprocess.DEVNULL, stderr=log)
                       for out in (profile, profile.with_suffix(".txt"))]
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
                r["kafka"] = {"bundles": d["bundles"],
                              "requests_per_bundle": round(d["bundle_requests_sum"] / max(1, d["bundles"]), 1),
                              "bundle_kb": round(d["bundle_bytes_sum"] / max(1, d["bundles"]) / 1024, 1),
                              "ack_ms_mean": round(1000 * d["ack_sum"] / max(1, d["ack_count"]), 2)}
            if spy is not None:
                for p in spy:
                    p.wait(timeout=60)
                r["profile"] = {"svg": str(profile.relative_to(ROOT)), "command": " ".join(
                    py_spy(profile.relative_to(ROOT), "<server pid>", duration, True)),
                    **profile_summary(profile.with_suffix(".txt"))}
        finally:
            stop(proc)
    return r


def collector_metrics(port: int) -> dict:
    text = http_get(f"http://{HOST}:{port}/metrics")[1].decode()
    return {"bundles": _metric(text, "eventpipe_collector_bundle_requests_count"),
            "bundle_requests_sum": _metric(text, "eventpipe_collector_bundle_requests_sum"),
            "bundle_bytes_sum": _metric(text, "eventpipe_collector_bundle_bytes_sum"),
            "ack_sum": _metric(text, "eventpipe_collector_kafka_ack_seconds_sum"),
            "ack_count": _metric(text, "eventpipe_collector_kafka_ack_seconds_count")}


def measure_open_loop(name: str, reqs: list[bytes], rate: float, duration: float, connections: int,
                      broker=None) -> dict:
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
        plan = [(rep, n) for rep in range(args.repeats) for n in names[rep % len(names):] + names[:rep % len(names)]]
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
            print(f"bench collector: {name:9s} round {rep + 1}: {r['requests_per_sec']:8.0f} req/s  "
                  f"server cpu {r['server_cpu']:.0%}  foreign on CPU 0 {r['foreign_cpu_on_core']:.0%}  "
                  f"{r['cpu_us_per_request']:.0f} us cpu/request  non-2xx {r['non_2xx']}"
                  + (f"  kafka {r['kafka']}" if "kafka" in r else "")
                  + ("  DISTURBED" if r["disturbed"] else ""), flush=True)
            if r["disturbed"] and retries > 0:
                retries -= 1
                plan.append((rep, name))
        med = {}
        for n in names:
            measured = [r for r in runs[n] if not r.get("profiled")] or runs[n]
            clean = [r for r in measured if not r["disturbed"]] or measured
            med[n] = {"requests_per_sec": _median(r["requests_per_sec"] for r in clean),
                      "cpu_us_per_request": _median(r["cpu_us_per_request"] for r in measured),
                      "cpu_bound_requests_per_sec": _median(r["cpu_bound_requests_per_sec"] for r in measured),
                      "server_cpu": _median(r["server_cpu"] for r in clean), "runs_in_median": len(clean),
                      "all_disturbed": all(r["disturbed"] for r in runs[n])}
        # pairwise ratios (each collector run against the bare run of the same round) and their median
        ratio = round(med["collector"]["requests_per_sec"] / med["bare"]["requests_per_sec"], 3)
        variants = {n: round(med[n]["requests_per_sec"] / med["bare"]["requests_per_sec"], 3)
                    for n in names if n.startswith("collector-")}
        latency = None
        if args.latency_duration > 0:
            rate = getattr(args, "latency_rate", None) or round(0.8 * med["collector"]["requests_per_sec"])
            latency = measure_open_loop("collector", reqs, rate, args.latency_duration, args.open_connections,
                                        broker)
            lat = latency["latency"]
            print(f"bench collector: open loop at {rate} req/s: {latency['ok_per_sec']:.0f} ok/s, "
                  f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, p99.9 {lat['p99.9_ms']} ms; "
                  f"incomplete {latency['incomplete']}, cpu {latency['server_cpu']:.0%}", flush=True)
    finally:
        stop_broker(broker)
    doc = {
        "command": args.command_line,
        "note": ("servers on CPU 0; wrk (saturation) / the open-loop generator (latency) and the Kafka broker "
                 "on CPU 1; medians over runs with < 10 % foreign load on CPU 0"),
        "requests": load.request_stats(reqs) | {"events": args.events, "gzip": args.gzip,
                                                "write_keys": len(WRITE_KEYS), "devices": args.devices},
        "wrk": {"connections": args.connections, "duration_s": args.duration, "threads": 1},
        "collector_requests_per_sec_per_core": med["collector"]["requests_per_sec"],
        "bare_requests_per_sec_per_core": med["bare"]["requests_per_sec"],
        "collector_vs_bare": ratio,
        "collector_vs_bare_cpu_per_request": round(med["bare"]["cpu_us_per_request"]
                                                   / med["collector"]["cpu_us_per_request"], 3),
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
    print(f"bench collector: collector {med['collector']['requests_per_sec']:.0f} req/s/core, bare "
          f"{med['bare']['requests_per_sec']:.0f}, ratio {ratio:.2f}; wrote {path} and {name}.png")
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
    labels = {"bare": "bare granian RSGI\n(parse + 200)", "collector": "eventpipe collector\n(acks=all)",
              "collector-lz4": "collector,\nlz4 records", "collector-zstd": "collector,\nzstd records",
              "collector-none": "collector,\nuncompressed records",
              "collector-nullsink": "collector,\nno Kafka write",
              "collector-timersink": "collector,\n5 ms timer, no Kafka",
              "collector-baseline": "baseline collector\n(--baseline)"}
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
        ax2.set_title(f"collector open loop at {lat['offered_rate']:.0f} req/s: "
                      f"p99 {lat['latency']['p99_ms']} ms", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- (b): processor alone -----------------------------------------------------------------
async def prefill(bootstrap: str, topic: str, reqs: list[bytes], events: int, requests_per_bundle: int,
                  partitions: int = 12, compression: str | None = None, keep: list | None = None) -> dict:
    """Produce bundles shaped like the collector's (``requests_per_bundle`` requests each) until ``events``."""
    from aiokafka import AIOKafkaProducer

    from eventpipe.ingest.partitioning import partition_for
    from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

    bodies = [r[r.index(b"\r\n\r\n") + 4:] for r in reqs]
    per_request = [len(load_batch(b)) for b in bodies]
    offsets = [load.message_id_offsets(b) for b in bodies]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_request_size=2 * 1024 * 1024, compression_type=compression)
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
            futures.append(await producer.send(topic, value, partition=partition_for(str(records).encode(), partitions)))
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


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def query(port: int, sql: str) -> list:
    status, body = http_get(f"http://{HOST}:{port}/query?sql=" + urllib.parse.quote(sql), 30)
    doc = json.loads(body)
    if status != 200:
        raise RuntimeError(f"query failed: {doc}")
    return doc["rows"]


def start_processor(broker, data: Path, web_port: int, log, cpu: str | None, extra_env: dict | None = None):
    env = {"EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap, "EVENTPIPE_DATA_DIR": str(data),
           "EVENTPIPE_PROCESSOR_WEB_PORT": str(web_port), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    proc = spawn([sys.executable, "-m", "eventpipe.cli", "processor"], cpu, env, log)
    wait_ready(f"http://{HOST}:{web_port}/query?sql=SELECT%201", proc, 120, log)
    return proc


def clickhouse_bytes(data: Path) -> dict:
    """events table size on disk from system.parts, as written and after OPTIMIZE FINAL (merged)."""
    from eventpipe.settings import Settings
    from eventpipe.store import Store

    store = Store(Settings.from_env({}, data_dir=data))
    sql = ("SELECT sum(bytes_on_disk), sum(rows), count() FROM system.parts "
           "WHERE active AND database = currentDatabase() AND table = '{}'")
    before = store.query(sql.format("events")).rows[0]
    store.client.command("OPTIMIZE TABLE events FINAL")
    after = store.query(sql.format("events")).rows[0]
    rollups = {t: store.query(sql.format(t)).rows[0][0] for t in ("events_1m", "events_1h")}
    store.close()
    return {"as_inserted": {"bytes": int(before[0]), "rows": int(before[1]), "parts": int(before[2])},
            "after_optimize": {"bytes": int(after[0]), "rows": int(after[1]), "parts": int(after[2])},
            "rollup_bytes": {k: int(v or 0) for k, v in rollups.items()}}


def measure_ceiling(bundles: list[bytes], batch_rows: int, cpu: str | None) -> dict:
    """benchmarks/processor_costs.py --ceiling on ``bundles`` in its own process on ``cpu``: CPU per event of
    inserting the rows pre-built, and of the processor's parts (explode, dedup) on the same rows."""
    with tempfile.NamedTemporaryFile(suffix=".msgpack") as f:
        import msgspec

        f.write(msgspec.msgpack.encode(bundles))
        f.flush()
        cmd = [sys.executable, str(ROOT / "benchmarks" / "processor_costs.py"), "--ceiling", f.name,
               "--batch-rows", str(batch_rows)]
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
            filled = asyncio.run(prefill(broker.bootstrap, topic, reqs, args.total_events, args.requests_per_bundle,
                                         compression=args.compression, keep=bundles))
            kafka_bytes = topic_bytes(broker, topic)
            data = Path(tempfile.mkdtemp(prefix="eventpipe-bench-proc-"))
            port = free_port()
            with tempfile.TemporaryFile() as log:
                proc = start_processor(broker, data, port, log, "0",
                                       {"EVENTPIPE_PROCESSOR_BATCH_RECORDS": str(args.batch_records)})
                # what a process costs before its first row (imports, migrations, faust's start, the group
                # join): an outside view that counts it makes a small micro-batch look dear
                startup_cpu = group_cpu_seconds(proc.pid)
                spy = None
                try:
                    series, t_first, meter, stalled = [], None, None, False
                    deadline = time.monotonic() + args.timeout
                    while time.monotonic() < deadline:
                        written = _metric(http_get(f"http://{HOST}:{port}/metrics")[1].decode(),
                                          "eventpipe_processor_events_written_total")
                        now = time.monotonic()
                        if written > 0 and t_first is None:
                            t_first, w_first, meter = now, written, CpuMeter(proc.pid)
                            if args.profile:
                                spy = [subprocess.Popen(py_spy(RESULTS / f"profile-processor.{ext}", proc.pid),
                                                        stdout=subprocess.DEVNULL, stderr=log)
                                       for ext in ("svg", "txt")]
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
                        raise RuntimeError("bench processor: no row written in time; processor log:\n" + "\n".join(tail))
                    cpu = meter.read() if meter else {}
                    rss = group_rss_mb(proc.pid)
                    text = http_get(f"http://{HOST}:{port}/metrics")[1].decode()
                    batches = _metric(text, "eventpipe_processor_batch_rows_count")
                    diag = {"micro_batches": batches,
                            "rows_per_micro_batch": round(_metric(text, "eventpipe_processor_batch_rows_sum")
                                                          / max(1, batches), 1),
                            "write_seconds_per_micro_batch": round(
                                _metric(text, "eventpipe_processor_insert_seconds_sum") / max(1, batches), 4)}
                    if spy is not None:
                        for p in spy:
                            p.send_signal(signal.SIGINT)
                        for p in spy:
                            p.wait(timeout=60)
                        svg = RESULTS / "profile-processor.svg"
                        diag["profile"] = {"svg": str(svg.relative_to(ROOT)),
                                           **profile_summary(svg.with_suffix(".txt")),
                                           "command": " ".join(py_spy(svg.relative_to(ROOT), "<processor pid>"))
                                           + "  (from first written row to the last; SIGINT ends it)"}
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
            r = {"prefill": filled, "events_in_table": rows, "complete": rows == filled["events"], "stalled": stalled,
                 "events_per_sec": round(eps, 1) if eps else None, "drain_seconds": round(t_end - t_first, 2),
                 "events_per_cpu_second": round(per_cpu_s, 1) if per_cpu_s else None,
                 "ceiling": ceiling, "startup_cpu_seconds": round(startup_cpu, 2),
                 "ratio_to_ceiling": round(per_cpu_s / ceiling["insert_events_per_cpu_second"], 3)
                 if per_cpu_s else None,
                 "kafka_log_bytes": kafka_bytes, "kafka_bytes_per_event": round(kafka_bytes / filled["events"], 1),
                 "clickhouse": ch,
                 "clickhouse_bytes_per_event": round(ch["after_optimize"]["bytes"] / max(1, ch["after_optimize"]["rows"]), 1),
                 "clickhouse_bytes_per_event_as_inserted": round(ch["as_inserted"]["bytes"] / max(1, ch["as_inserted"]["rows"]), 1),
                 "processor_rss_peak_mb": rss, **cpu, **diag,
                 "series": [(round(t - series[0][0], 2), w) for t, w in series]}
            runs.append(r)
            print(f"bench processor: round {rep + 1}: {r['events_per_cpu_second']:.0f} events per CPU-second "
                  f"(ceiling, pre-built rows inserted: {ceiling['insert_events_per_cpu_second']:.0f}; ratio "
                  f"{r['ratio_to_ceiling']:.2f}); {r['events_per_sec']:.0f} events/s on CPU 0 "
                  f"(cpu {cpu.get('server_cpu', 0):.0%}, foreign {cpu.get('foreign_cpu_on_core', 0):.0%})"
                  f"{'  DISTURBED' if cpu.get('disturbed') else ''}; {rows}/{filled['events']} rows; "
                  f"{diag['rows_per_micro_batch']} rows/{diag['write_seconds_per_micro_batch']} s per micro-batch; "
                  f"kafka {r['kafka_bytes_per_event']} B/event, clickhouse {r['clickhouse_bytes_per_event']} B/event",
                  flush=True)
    finally:
        stop_broker(broker)
    clean = [r for r in runs if not r.get("disturbed")] or runs
    doc = {
        "command": args.command_line,
        "note": ("processor (all threads, chDB included) pinned to CPU 0, broker on CPU 1; events/s measured "
                 "from the first written row to the last, over a pre-filled topic; bytes/event: Kafka log "
                 "segments (one replica) and system.parts of `events` after OPTIMIZE FINAL"),
        "requests_per_bundle": args.requests_per_bundle, "events_per_request": args.events,
        "record_compression": args.compression,
        "batch_records": args.batch_records,
        "processor_events_per_sec_per_core": _median(r["events_per_sec"] for r in clean),
        "processor_events_per_cpu_second": _median(r["events_per_cpu_second"] for r in clean),
        "ceiling_events_per_cpu_second": _median(r["ceiling"]["insert_events_per_cpu_second"] for r in clean),
        "ratio_to_ceiling": _median(r["ratio_to_ceiling"] for r in clean),
        "events_per_sec": _median(r["events_per_sec"] for r in clean),
        "cores": 1,
        "kafka_bytes_per_event": _median(r["kafka_bytes_per_event"] for r in clean),
        "clickhouse_bytes_per_event": _median(r["clickhouse_bytes_per_event"] for r in clean),
        "runs": runs,
    }
    if args.profile:  # py-spy slows the process it samples: keep this run's numbers out of `eventpipe plan`
        for key in ("processor_events_per_sec_per_core", "events_per_sec", "kafka_bytes_per_event",
                    "processor_events_per_cpu_second", "ratio_to_ceiling",
                    "clickhouse_bytes_per_event"):
            doc[f"profiled_{key}"] = doc.pop(key)
        doc["scenario"] = "processor-profiled"
    path = write_result(args.name, doc)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(runs):
        ax.plot([t for t, _ in r["series"]], [w for _, w in r["series"]], label=f"round {i + 1}: "
                f"{r['events_per_sec']:.0f} ev/s")
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


# --- (c): end to end ----------------------------------------------------------------------
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
                print(f"bench e2e: {elapsed} s, processor RSS {self.series[-1][1]:.0f} MB, collector "
                      f"{self.series[-1][2]:.0f} MB, {rows} rows queryable", flush=True)

    def stop(self) -> list[list[float]]:
        self.done.set()
        self.thread.join()
        return self.series


def scenario_e2e(args) -> dict:
    reqs = load.build_requests(HOST, args.pool, args.events, None, args.gzip, WRITE_KEYS, args.devices)
    broker = start_broker(None)
    data = Path(tempfile.mkdtemp(prefix="eventpipe-bench-e2e-"))
    web, cport = free_port(), free_port()
    out = []
    with tempfile.TemporaryFile() as plog, tempfile.TemporaryFile() as clog:
        processor = start_processor(broker, data, web, plog, None)
        collector = spawn([sys.executable, "-m", "eventpipe.cli", "collector"], None,
                          {"EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap, "EVENTPIPE_WRITE_KEYS": KEY_ENV,
                           "EVENTPIPE_COLLECTOR_PORT": str(cport)}, clog)
        try:
            wait_ready(f"http://{HOST}:{cport}/readyz", collector, 60, clog)
            for rate in args.rates:
                before = query(web, "SELECT count() FROM events")[0][0]
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
                q = query(web, "SELECT quantiles(0.5, 0.9, 0.99, 0.999)(toUnixTimestamp64Milli(inserted_at) - "
                               "toUnixTimestamp64Milli(received_at)), max(toUnixTimestamp64Milli(inserted_at) - "
                               "toUnixTimestamp64Milli(received_at)), count() FROM events WHERE "
                               f"received_at >= fromUnixTimestamp64Milli({skip}) AND "
                               f"received_at <= fromUnixTimestamp64Milli({t_end_ms})")[0]
                r["freshness_ms"] = {"p50": q[0][0], "p90": q[0][1], "p99": q[0][2], "p99.9": q[0][3],
                                     "max": q[1], "rows": q[2]}
                series = query(web, "SELECT intDiv(toUnixTimestamp64Milli(received_at) - "
                                    f"{t_start_ms}, 1000) AS s, count(), quantile(0.99)(toUnixTimestamp64Milli("
                                    "inserted_at) - toUnixTimestamp64Milli(received_at)) FROM events WHERE "
                                    f"received_at >= fromUnixTimestamp64Milli({t_start_ms - 1000}) "
                                    f"AND received_at <= fromUnixTimestamp64Milli({t_end_ms}) GROUP BY s ORDER BY s")
                r["freshness_series"] = series
                r["collector_rss_peak_mb"] = group_rss_mb(collector.pid)
                r["processor_rss_mb"] = group_rss_mb(processor.pid, "VmRSS")
                out.append(r)
                f = r["freshness_ms"]
                print(f"bench e2e: offered {rate}/s: {r['ok_per_sec']:.0f} ok/s, http p99 {r['latency']['p99_ms']} "
                      f"ms; freshness p50 {f['p50']} ms p99 {f['p99']} ms max {f['max']} ms; "
                      f"{r['events_queryable']}/{r['events_accepted']} events queryable; cpu collector "
                      f"{r['collector_cpu']:.0%} processor {r['processor_cpu']:.0%}", flush=True)
        finally:
            stop(collector)
            stop(processor)
            stop_broker(broker)
            shutil.rmtree(data, ignore_errors=True)
    doc = {"command": args.command_line,
           "note": ("2 cores for everything (broker, collector, processor, load generator; unpinned). freshness = "
                    "inserted_at - received_at of each row received in the window (first "
                    f"{args.warmup:.0f} s skipped)"),
           "events_per_request": args.events, "runs": out}
    path = write_result(args.name, doc)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, mem) = plt.subplots(2, 1, figsize=(8, 6.5), height_ratios=[3, 2])
    for r in out:
        pts = [(s, p / 1000) for s, _, p in r["freshness_series"] if p is not None]
        p99 = r["freshness_ms"]["p99"]
        ax.plot([s for s, _ in pts], [p for _, p in pts],
                label=f"{r['offered_rate']:.0f} req/s offered ({r['ok_per_sec']:.0f} ok/s): p99 "
                      + (f"{p99 / 1000:.2f} s" if p99 is not None else "n/a")
                      + f", {r['events_queryable']:,}/{r['events_accepted']:,} events queryable")
    ax.axhline(2.0, color="grey", ls="--", lw=1, label="target p99 2 s")
    ax.set_yscale("log")
    ax.set_xlabel("second of the run (by received_at)")
    ax.set_ylabel("p99 freshness s (received -> queryable)")
    ax.legend(fontsize=8)
    for r in out:
        series = r.get("rss_series") or []
        mem.plot([s[0] for s in series], [s[1] for s in series], label=f"processor, {r['offered_rate']:.0f} req/s")
        mem.plot([s[0] for s in series], [s[2] for s in series], ls=":", label=f"collector, {r['offered_rate']:.0f} req/s")
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
                    env = {"EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap, "EVENTPIPE_WRITE_KEYS": KEY_ENV,
                           "EVENTPIPE_COLLECTOR_PORT": str(cport), "EVENTPIPE_COLLECTOR_HOST": HOST}
                    if name == "collector-baseline":
                        cwd = Path(os.environ[BASELINE_ENV]).resolve()
                        env["PYTHONPATH"] = str(cwd)
                    else:
                        env["PYTHONPATH"] = str(ROOT)
                    collector = spawn(cmd, None, env, clog, cwd)
                    try:
                        wait_ready(f"http://{HOST}:{cport}/readyz", collector, 60, clog)
                        load.wrk_saturate(f"http://{HOST}:{cport}", 2, args.connections, reqs, cpu=None)
                        w0 = _metric(http_get(f"http://{HOST}:{web}/metrics")[1].decode(),
                                     "eventpipe_processor_events_written_total")
                        cc, pc = CpuMeter(collector.pid, None), CpuMeter(processor.pid, None)
                        bc = CpuMeter(broker.proc.pid, None)
                        t0 = time.monotonic()
                        r = load.wrk_saturate(f"http://{HOST}:{cport}", args.duration, args.connections, reqs,
                                              cpu=None)
                        wall = time.monotonic() - t0
                        c, p, b = cc.read(), pc.read(), bc.read()
                        w1 = _metric(http_get(f"http://{HOST}:{web}/metrics")[1].decode(),
                                     "eventpipe_processor_events_written_total")
                        r.update(collector_cpu=c["server_cpu"], processor_cpu=p["server_cpu"],
                                 broker_cpu=b["server_cpu"], cpu_busy=c["cpu_busy"],
                                 processor_events_per_sec=round((w1 - w0) / wall),
                                 events_per_sec_accepted=round(r["requests_per_sec"] * args.events),
                                 collector_rss_peak_mb=group_rss_mb(collector.pid))
                        m = collector_metrics(cport)
                        r["kafka"] = {"requests_per_bundle": round(m["bundle_requests_sum"] / max(1, m["bundles"]), 1),
                                      "ack_ms_mean": round(1000 * m["ack_sum"] / max(1, m["ack_count"]), 2)}
                    finally:
                        stop(collector)
                runs[name].append(r)
                print(f"bench stack: {name:18s} {r['requests_per_sec']:8.0f} req/s  non-2xx {r['non_2xx']}  "
                      f"socket errors {r['socket_errors']}  cpu: collector {r['collector_cpu']:.0%} processor "
                      f"{r['processor_cpu']:.0%} broker {r['broker_cpu']:.0%}; processor wrote "
                      f"{r['processor_events_per_sec']} events/s of {r['events_per_sec_accepted']} accepted; "
                      f"kafka {r['kafka']}", flush=True)
        finally:
            stop(processor)
            stop_broker(broker)
            shutil.rmtree(data, ignore_errors=True)
    doc = {"command": args.command_line,
           "note": ("broker, processor, collector and wrk (-t1) share the 2 cores, nothing pinned; the processor "
                    "drains what the collector accepts while it runs (wrk replays a pool of requests, so repeated "
                    "messageIds are dropped by the processor: its events/s is what it wrote, not a capacity)"),
           "connections": args.connections, "duration_s": args.duration, "events_per_request": args.events,
           "median_requests_per_sec": {n: _median(r["requests_per_sec"] for r in runs[n]) for n in names},
           "runs": runs}
    path = write_result(args.name, doc)
    print(f"bench stack: {doc['median_requests_per_sec']}; wrote {path}")
    return doc
