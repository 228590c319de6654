"""What every benchmark here runs on: child processes pinned to CPUs, their CPU and RSS, a broker, results.

The scenarios (collector_bench.py, processor_bench.py, e2e_bench.py) and the standalone scripts
(smoke.py, cluster.py, collector_costs.py, ...) share it, so every figure is taken the same way:
CPU from /proc of the process group, foreign load from /proc/stat, results as JSON with the machine.
"""

from __future__ import annotations

import atexit
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
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


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
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


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
        out = {
            "server_cpu": round(own, 3),
            "server_cpu_seconds": round(own * wall, 3),
            "cpu_busy": {c: round((busy[c] - self.busy0[c]) / wall, 3) for c in busy},
        }
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
    return (
        [exe, "record", *mode, "--rate", "100", *fmt, "--output", str(out), "--pid", str(pid)]
        + (["--subprocesses"] if subprocesses else [])
        + (["--duration", str(round(duration))] if duration else [])
    )


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
    inclusive = {
        f: v
        for f, v in pct(incl).items()
        if v < 95.0 and "granian/server" not in f and "multiprocessing" not in f and "runpy" not in f
    }
    return {
        "samples": total,
        "self_pct": dict(list(pct(own).items())[:top]),
        "inclusive_pct": dict(list(inclusive.items())[:top]),
    }


def baseline_pythonpath(checkout: Path) -> str:
    """A directory which, as PYTHONPATH and as the working directory, makes ``import eventpipe.ingest`` (and
    .processors, .schemas) ``checkout``'s code.

    The checkout's own directory is not enough: its ``eventpipe/`` holds no ``ingest/``, so the editable
    install's finder supplied this tree's ingest/ instead, and a "baseline" ran the new collector. This
    lays the checkout's packages out as installed (``eventpipe/`` plus links to each subpackage, from its
    pyproject's package-dir) and checks that they are the ones imported. It must be the working directory
    too: ``python -m`` puts that first on sys.path, ahead of PYTHONPATH. The compiled ``eventpipe._explode``
    comes from the checkout when it has been built there, else from this tree."""
    import tomllib

    checkout = checkout.resolve()
    dirs = tomllib.loads((checkout / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    layout = Path(tempfile.mkdtemp(prefix="eventpipe-baseline-")) / "eventpipe"
    atexit.register(shutil.rmtree, layout.parent, True)  # links only: removed when the benchmark ends
    layout.mkdir()
    for entry in (checkout / dirs["eventpipe"]).iterdir():
        (layout / entry.name).symlink_to(entry)
    for package, folder in dirs.items():
        if package != "eventpipe":
            (layout / package.split(".", 1)[1]).symlink_to(checkout / folder)
    path = str(layout.parent)
    probe = "import eventpipe.ingest.app as a, eventpipe.processors as p; print(a.__file__); print(p.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": path}, cwd=path, capture_output=True, text=True
    )
    files = found.stdout.split()
    if found.returncode != 0 or not files or not all(f.startswith(path) for f in files):
        raise SystemExit(
            f"--baseline {checkout}: its packages are not the ones imported ({found.stdout}{found.stderr})"
        )
    return path


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

    cpu = next(
        (
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        ),
        None,
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "packages": {
            p: version(p)
            for p in (
                "granian",
                "aiokafka",
                "faust-streaming",
                "chdb",
                "clickhouse-connect",
                "orjson",
                "msgspec",
                "pyarrow",
            )
        },
    }


def write_result(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "scenario": name.split("-")[0],
        **({"scenario": doc["scenario"]} if "scenario" in doc else {}),
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **doc,
        "machine": machine_info(),
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


def median_or_none(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def metric_value(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
