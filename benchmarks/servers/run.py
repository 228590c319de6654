"""Benchmark candidate Python HTTP servers for the eventpipe ingest path.

Why: before choosing the server that fronts POST /v1/batch we want numbers
from this machine, not from blog posts. Each candidate serves the same bare
ingest handler (handler.py: Basic-auth write key check, orjson parse of a
~1.6 KB Segment-style batch, 200 {"ok":true}).

For each candidate the server is started pinned to CPU 0 on 127.0.0.1, checked
to answer correctly (200 with a valid key, 401 without), then loaded with wrk
pinned to CPU 1, then stopped. Candidates are run interleaved `--repeats`
times (order rotated each round) and the median of each metric is reported.
The machine may be shared, so each run records the CPU share the server got
during the wrk run; a CPU-bound server pinned to a core should get ~100%, so a
run below MIN_CPU was disturbed by other processes: it is kept in the JSON but
left out of the medians and re-run at the end (at most --retries times).
Writes benchmarks/results/servers.json and servers.png.

Usage: /tmp/venv/bin/python benchmarks/servers/run.py [--only NAME ...]
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
AUTH = "Basic d2tfYmVuY2hfMTo="  # base64("wk_bench_1:"), same as post.lua
BODY = (HERE / "body.json").read_bytes()

GRANIAN = [
    str(BIN / "granian"),
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
]
CANDIDATES = {
    "granian-rsgi": GRANIAN + ["--interface", "rsgi", "app_granian_rsgi:app"],
    "granian-asgi": GRANIAN + ["--interface", "asgi", "app_asgi:app"],
    "uvicorn-httptools": [
        str(BIN / "uvicorn"),
        "--http",
        "httptools",
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
        "app_asgi:app",
    ],
    "aiohttp": [sys.executable, "app_aiohttp.py", HOST, "{port}"],
    "granian-rsgi-msgspec": GRANIAN + ["--interface", "rsgi", "app_granian_msgspec:app"],
    # The real collector: same server and core, plus bundling and an acks=all Kafka write per 200.
    "eventpipe-collector": [sys.executable, "-m", "eventpipe.cli", "collector"],
}
OK_BODIES = (b'{"ok":true}', b'{"success":true}')
COLLECTOR = "eventpipe-collector"
BARE = "granian-rsgi"  # the collector's own server with a bare handler: its in-run ceiling
MIN_CPU = 0.9
WRK = "taskset -c 1 wrk -t1 -c{connections} -d{duration}s --latency -s post.lua {url}"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def post(port, auth):
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("POST", "/v1/batch", BODY, {"Authorization": auth, "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()
    finally:
        conn.close()


def start(name, port, log, extra_env=None):
    cmd = ["taskset", "-c", "0"] + [a.format(port=port) for a in CANDIDATES[name]]
    env = dict(
        os.environ, PYTHONDONTWRITEBYTECODE="1", EVENTPIPE_COLLECTOR_PORT=str(port), **(extra_env or {})
    )  # no __pycache__ in the repo
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            got = post(port, AUTH)
            if got[0] != 503:  # the collector answers 503 until it has connected to Kafka
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{name} did not answer within 15 s")
        time.sleep(0.1)
    bad = post(port, "Basic " + "bm9wZTo=")  # base64("nope:")
    if not (got[0] == 200 and got[1].startswith("application/json") and got[2] in OK_BODIES and bad[0] == 401):
        stop(proc)
        raise RuntimeError(f"{name} answered wrongly: {got} / {bad[0]}")
    return proc


def start_broker():
    """A real local Kafka broker for the collector, pinned to the load generator's core (CPU 1)."""
    from eventpipe.broker import KafkaBroker
    from eventpipe.settings import Settings

    port = free_port()
    settings = Settings.from_env(
        {}, data_dir=Path(tempfile.mkdtemp(prefix="bench-kafka-")), kafka_bootstrap=f"{HOST}:{port}"
    )
    broker = KafkaBroker(settings).start()
    subprocess.run(["taskset", "-a", "-p", "-c", "1", str(broker.proc.pid)], check=True, capture_output=True)
    print(f"Kafka broker for {COLLECTOR} at {broker.bootstrap} (CPU 1)", flush=True)
    return broker, {"EVENTPIPE_KAFKA_BOOTSTRAP": broker.bootstrap, "EVENTPIPE_WRITE_KEYS": "wk_bench_1=bench"}


def stop(proc):
    # The server runs in its own session, so its pgid is its pid.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def group_cpu_seconds(pgid):
    """CPU seconds used so far by all processes in process group `pgid`."""
    ticks = 0
    for d in Path("/proc").iterdir():
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11, 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(port, duration, connections):
    cmd = WRK.format(duration=duration, connections=connections, url=f"http://{HOST}:{port}/v1/batch")
    out = subprocess.run(
        cmd.split(), cwd=HERE, capture_output=True, text=True, timeout=duration + 30, check=True
    ).stdout
    pct = {p: to_ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_sec": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": pct["50"],
        "p75_ms": pct["75"],
        "p90_ms": pct["90"],
        "p99_ms": pct["99"],
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def machine_info():
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    pkgs = ["granian", "uvicorn", "httptools", "uvloop", "orjson", "msgspec", "aiohttp"]
    return {
        "nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout),
        "cpu_model": cpu.group(1) if cpu else None,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {p: version(p) for p in pkgs},
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
    }


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    med = [summary[n]["median"]["requests_per_sec"] for n in names]
    runs = [
        [r["requests_per_sec"] for r in summary[n]["runs"] if not r["disturbed"]] or [m] for n, m in zip(names, med)
    ]
    err = [[m - min(r) for m, r in zip(med, runs)], [max(r) - m for m, r in zip(med, runs)]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bars = ax.bar(names, med, yerr=err, capsize=4, color="#4c72b0")
    for bar, n in zip(bars, names):
        ax.annotate(
            f"p99 {summary[n]['median']['p99_ms']:.1f} ms",
            (bar.get_x() + bar.get_width() / 2, 0),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            color="white",
            fontsize=8,
        )
    ax.set_ylabel("requests/s (median, whiskers = min..max)")
    ax.set_title("POST /v1/batch, 1 server core, wrk -c64 (higher is better)")
    plt.xticks(rotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument(
        "--connections",
        type=int,
        default=256,
        help="open connections; the collector holds each request ~bundle window + Kafka ack, "
        "so it needs more in flight than a bare server to fill its core",
    )
    ap.add_argument("--retries", type=int, default=3, help="max re-runs of disturbed runs")
    args = ap.parse_args()
    assert AUTH in (HERE / "post.lua").read_text(), "post.lua and AUTH disagree"

    names, started = args.only, time.monotonic()
    broker, extra_env = None, {}
    if COLLECTOR in names:
        broker, extra_env = start_broker()
    runs = {n: [] for n in names}
    plan = [
        (rep, name) for rep in range(args.repeats) for name in names[rep % len(names) :] + names[: rep % len(names)]
    ]
    retries, i = args.retries, 0
    while i < len(plan):
        rep, name = plan[i]
        i += 1
        port = free_port()
        with tempfile.TemporaryFile() as log:
            try:
                proc = start(name, port, log, extra_env if name == COLLECTOR else None)
            except RuntimeError as exc:
                log.seek(0)
                print(f"[{i}/{len(plan)}] {name}: FAILED {exc}\n{log.read().decode()[-2000:]}", flush=True)
                continue
            try:
                cpu0, t0 = group_cpu_seconds(proc.pid), time.monotonic()
                r = run_wrk(port, args.duration, args.connections)
                r["server_cpu"] = round((group_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0), 3)
            finally:
                stop(proc)
        if r["non_2xx"] or r["socket_errors"]:
            print(f"  warning: non-2xx={r['non_2xx']} socket errors={r['socket_errors']}")
        r["disturbed"] = r["server_cpu"] < MIN_CPU
        runs[name].append(r)
        print(
            f"[{i}/{len(plan)}] {name:22s} round {rep + 1}: {r['requests_per_sec']:9.0f} req/s  "
            f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  server cpu {r['server_cpu']:.0%}"
            + ("  DISTURBED" if r["disturbed"] else ""),
            flush=True,
        )
        if r["disturbed"] and retries > 0:
            retries -= 1
            plan.append((rep, name))

    if broker is not None:
        broker.stop()
    summary = {}
    for name in names:
        if not runs[name]:
            continue
        clean = [r for r in runs[name] if not r["disturbed"]] or runs[name]
        summary[name] = {
            "server_command": "taskset -c 0 " + " ".join(CANDIDATES[name]).replace(str(BIN) + "/", ""),
            "median": {
                k: round(statistics.median(r[k] for r in clean), 3) for k in ("requests_per_sec", "p50_ms", "p99_ms")
            },
            "runs_in_median": len(clean),
            "runs": runs[name],
        }
    result = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable] + sys.argv),
        "wrk_command": WRK.format(
            duration=args.duration, connections=args.connections, url=f"http://{HOST}:{{port}}/v1/batch"
        ),
        "body_bytes": len(BODY),
        "repeats": args.repeats,
        "note": (
            f"medians are per metric over runs where the server got >= {MIN_CPU:.0%} of its "
            "core (others are 'disturbed'); server on CPU 0, wrk on CPU 1"
        ),
        "machine": machine_info(),
        "candidates": summary,
        "collector_vs_bare": (
            round(summary[COLLECTOR]["median"]["requests_per_sec"] / summary[BARE]["median"]["requests_per_sec"], 3)
            if COLLECTOR in summary and BARE in summary
            else None
        ),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "servers.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(summary, RESULTS / "servers.png")

    print(f"\n{'candidate':22s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, s in sorted(summary.items(), key=lambda kv: -kv[1]["median"]["requests_per_sec"]):
        m = s["median"]
        print(f"{name:22s} {m['requests_per_sec']:9.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f}")
    if result["collector_vs_bare"]:
        print(f"collector / bare {BARE}: {result['collector_vs_bare']:.2f}")
    print(f"wrote {RESULTS / 'servers.json'} and servers.png in {result['wall_seconds']} s")


if __name__ == "__main__":
    main()
