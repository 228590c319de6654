"""Open-loop load generator for POST /v1/batch (``eventpipe bench load``).

Open loop: request i is *due* at ``t0 + i / rate`` whatever the server does, and its
latency is measured from that intended time, not from when a connection happened to be
free. A slow server therefore cannot slow the clock down (no coordinated omission, the
wrk2 method): when every connection is busy, due requests wait in a backlog and their
waiting counts. Requests still unanswered ``--drain`` seconds after the end are counted
as ``incomplete``.

The traffic is realistic Segment batches from ``eventpipe.demo`` (iOS / Android / web
devices, track / screen / page / identify mix, ~160 bytes of context per event): a pool of
distinct pre-built requests (many devices, so many partitions; many write keys; optional
gzip) is cycled, so building bodies costs nothing during the run. Raw HTTP/1.1 on
keep-alive connections over uvloop, one process per ``--procs`` (each takes rate/procs),
results merged. One process on one core offers up to ~20k requests/s against the bare server
(measured 2026-11-27: 20.4k ok/s at 25k offered, the generator then saturated), but its own
queueing shows in the latencies above ~10k/s: keep latency runs below that per process (the
collector's 80 % run is ~5.6k/s) or add ``--procs`` on free cores. For saturation throughput
``wrk_saturate`` drives ``wrk`` (> 25k req/s from one core) with the same request pool.

Latency goes into a log-bucketed histogram (HDR-style: 1 % relative precision from 1 µs
to hours, mergeable, tiny), overall and per second, so the JSON has throughput and
latency over time.

    python benchmarks/load.py --url http://127.0.0.1:8080 --rate 8000 --duration 20 \
        --events 10 --write-keys wk_bench_1,wk_bench_2 --json /tmp/load.json --png /tmp/load.png
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import math
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from eventpipe.demo import Device, basic_auth, make_batch

HERE = Path(__file__).resolve().parent


# --- histogram ---------------------------------------------------------------------------
class Histogram:
    """Latencies in log buckets of 1 % width (bucket b holds [e^(b/100), e^((b+1)/100)) µs)."""

    SCALE = 100.0

    def __init__(self, counts: dict[int, int] | None = None):
        self.counts: collections.Counter = collections.Counter(counts or {})

    def record(self, seconds: float) -> None:
        us = seconds * 1e6
        self.counts[int(math.log(us) * self.SCALE) if us > 1.0 else 0] += 1

    def merge(self, other: "Histogram") -> "Histogram":
        self.counts.update(other.counts)
        return self

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float | None:
        """The q-th percentile in milliseconds (upper edge of its bucket), None when empty."""
        total = self.count
        if not total:
            return None
        rank = max(1, math.ceil(total * q / 100.0))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return round(math.exp((bucket + 1) / self.SCALE) / 1000.0, 3)
        return None

    def summary(self) -> dict:
        return {f"p{str(q).replace('.0', '')}_ms": self.percentile(q) for q in (50.0, 90.0, 99.0, 99.9, 100.0)}

    def to_json(self) -> dict:
        return {
            "unit": "log bucket b = [exp(b/100), exp((b+1)/100)) microseconds",
            "counts": {str(k): v for k, v in sorted(self.counts.items())},
        }

    @classmethod
    def from_json(cls, doc: dict) -> "Histogram":
        return cls({int(k): v for k, v in doc["counts"].items()})


# --- traffic -----------------------------------------------------------------------------
def build_requests(
    host: str,
    n: int = 4096,
    events: int = 10,
    events_max: int | None = None,
    use_gzip: bool = False,
    write_keys: tuple[str, ...] = ("wk_bench_1",),
    devices: int = 10_000,
    seed: int = 1,
    path: str = "/v1/batch",
) -> list[bytes]:
    """``n`` distinct raw HTTP/1.1 requests: Segment batches of ``events`` (..``events_max``) events each."""
    rng = random.Random(seed)
    fleet = [Device.new(rng) for _ in range(devices)]
    auths = [basic_auth(k) for k in write_keys]
    out = []
    for i in range(n):
        count = rng.randint(events, events_max) if events_max else events
        body = make_batch(rng, rng.choice(fleet), count)
        extra = ""
        if use_gzip:
            body = gzip.compress(body, 6)
            extra = "Content-Encoding: gzip\r\n"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auths[i % len(auths)]}\r\n"
            f"Content-Type: application/json\r\nUser-Agent: analytics-swift/1.7.1 eventpipe-bench\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


_MID = b'"messageId":"'


def message_id_offsets(request: bytes) -> list[int]:
    """Where each event's messageId value starts (a 36-character UUID in the demo's traffic)."""
    out, at = [], request.find(_MID)
    while at >= 0:
        out.append(at + len(_MID))
        at = request.find(_MID, at + 1)
    return out


def stamp(request: bytes, offsets: list[int], salt: int) -> bytes:
    """``request`` with the first 8 characters of every messageId replaced by ``salt`` (same length, so
    Content-Length holds): the pool is cycled, and processors drop a repeated (project, messageId)."""
    if not offsets:
        return request
    buf = bytearray(request)
    tag = b"%08x" % (salt & 0xFFFFFFFF)
    for at in offsets:
        buf[at : at + 8] = tag
    return bytes(buf)


def request_stats(requests: list[bytes]) -> dict:
    bodies = [len(r) - r.index(b"\r\n\r\n") - 4 for r in requests]
    return {
        "distinct_requests": len(requests),
        "body_bytes_mean": round(sum(bodies) / len(bodies), 1),
        "body_bytes_min": min(bodies),
        "body_bytes_max": max(bodies),
    }


# --- open-loop client --------------------------------------------------------------------
_CONTENT_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


class _Conn(asyncio.Protocol):
    __slots__ = ("gen", "transport", "buf", "intended")

    def __init__(self, gen: "_OpenLoop"):
        self.gen = gen
        self.transport = None
        self.buf = b""
        self.intended = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = _CONTENT_LENGTH.search(buf, 0, end)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < total:
                break
            status = int(buf[9:12])
            buf = buf[total:]
            self.gen.done(self, status)
        self.buf = buf

    def connection_lost(self, exc) -> None:
        self.gen.lost(self)


class _OpenLoop:
    def __init__(
        self,
        host: str,
        port: int,
        rate: float,
        duration: float,
        requests: list[bytes],
        connections: int,
        drain: float,
        offset: int,
        nonce: int = 0,
    ):
        self.host, self.port = host, port
        self.rate, self.duration, self.drain = rate, duration, drain
        self.requests, self.next_req = requests, offset % len(requests)
        self.offsets = [message_id_offsets(r) for r in requests]  # empty for gzip bodies
        self.proc_index, self.cycle = offset // 997, 0
        self.nonce = nonce  # per run: a second run over the same pool must not repeat the first's messageIds
        self.connections = connections
        self.idle: list[_Conn] = []
        self.backlog: collections.deque = collections.deque()
        self.hist = Histogram()
        self.per_sec: dict[int, Histogram] = collections.defaultdict(Histogram)
        self.status: collections.Counter = collections.Counter()
        self.status_per_sec: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        self.sent = self.scheduled = self.lost_conns = 0
        self.max_backlog = 0
        self.t0 = 0.0
        self.loop = None

    def _send(self, conn: _Conn, intended: float) -> None:
        conn.intended = intended
        i = self.next_req
        req = self.requests[i]
        req = stamp(req, self.offsets[i], self.nonce + (self.proc_index << 24) + self.cycle)
        self.next_req = (i + 1) % len(self.requests)
        if self.next_req == 0:
            self.cycle += 1
        conn.transport.write(req)
        self.sent += 1

    def done(self, conn: _Conn, status: int) -> None:
        now = self.loop.time()
        latency = now - conn.intended
        second = int(now - self.t0)
        self.hist.record(latency)
        self.per_sec[second].record(latency)
        self.status[status] += 1
        self.status_per_sec[second][status] += 1
        if self.backlog:
            self._send(conn, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        self.lost_conns += 1

    async def run(self, start_at: float) -> dict:
        self.loop = loop = asyncio.get_running_loop()
        conns = await asyncio.gather(
            *(loop.create_connection(lambda: _Conn(self), self.host, self.port) for _ in range(self.connections))
        )
        self.idle = [proto for _, proto in conns]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = os.times()
        self.t0 = t0 = loop.time()
        end = t0 + self.duration
        rate = self.rate
        while True:
            now = loop.time()
            if now >= end:
                break
            due = min(int((now - t0) * rate) + 1, int(self.duration * rate))
            while self.scheduled < due:
                intended = t0 + self.scheduled / rate
                self.scheduled += 1
                if self.idle:
                    self._send(self.idle.pop(), intended)
                else:
                    self.backlog.append(intended)
            self.max_backlog = max(self.max_backlog, len(self.backlog))
            await asyncio.sleep(max(0.0, min(t0 + self.scheduled / rate, end) - loop.time()))
        deadline = loop.time() + self.drain
        while (self.backlog or len(self.idle) < self.connections - self.lost_conns) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        cpu1 = os.times()
        outstanding = len(self.backlog) + (self.connections - self.lost_conns - len(self.idle))
        for _, proto in conns:
            if proto.transport:
                proto.transport.close()
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "incomplete": outstanding,
            "max_backlog": self.max_backlog,
            "lost_connections": self.lost_conns,
            "client_cpu_seconds": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 3),
            "hist": self.hist.to_json(),
            "status": dict(self.status),
            "per_sec": {s: h.to_json() for s, h in self.per_sec.items()},
            "status_per_sec": {s: dict(c) for s, c in self.status_per_sec.items()},
        }


def _worker(args: tuple, out) -> None:
    import uvloop

    (host, port, rate, duration, requests, connections, drain, offset, start_at, nonce) = args
    try:
        gen = _OpenLoop(host, port, rate, duration, requests, connections, drain, offset, nonce)
        out.send(uvloop.run(gen.run(start_at)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.send({"error": repr(exc)})
    finally:
        out.close()


def open_loop(
    url: str,
    rate: float,
    duration: float,
    requests: list[bytes],
    connections: int = 256,
    procs: int = 1,
    drain: float = 5.0,
) -> dict:
    """Offer ``rate`` requests/s for ``duration`` s; latency from each request's intended start."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    ctx = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0 + connections / 2000  # all processes connected before the clock starts
    workers = []
    nonce = random.getrandbits(32)
    for i in range(procs):
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker,
            args=(
                (
                    host,
                    port,
                    rate / procs,
                    duration,
                    requests,
                    max(1, connections // procs),
                    drain,
                    i * 997,
                    start_at,
                    nonce,
                ),
                send,
            ),
        )
        p.start()
        send.close()
        workers.append((p, recv))
    parts_out = []
    for p, recv in workers:
        try:
            parts_out.append(recv.recv())
        except EOFError:
            parts_out.append({"error": f"load process {p.pid} died"})
        p.join()
    errors = [r["error"] for r in parts_out if "error" in r]
    if errors:
        raise RuntimeError("load generator failed: " + "; ".join(errors))
    return merge(parts_out, rate, duration, connections, procs)


def merge(parts: list[dict], rate: float, duration: float, connections: int, procs: int) -> dict:
    hist = Histogram()
    status: collections.Counter = collections.Counter()
    per_sec: dict[int, Histogram] = collections.defaultdict(Histogram)
    status_per_sec: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for part in parts:
        hist.merge(Histogram.from_json(part["hist"]))
        status.update({int(k): v for k, v in part["status"].items()})
        for s, h in part["per_sec"].items():
            per_sec[int(s)].merge(Histogram.from_json(h))
        for s, c in part["status_per_sec"].items():
            status_per_sec[int(s)].update({int(k): v for k, v in c.items()})
    total = lambda key: sum(p[key] for p in parts)  # noqa: E731
    ok_in_window = sum(c.get(200, 0) for s, c in status_per_sec.items() if s < duration)
    timeline = []
    for s in sorted(per_sec):
        h = per_sec[s]
        timeline.append(
            {
                "t": s,
                "responses": h.count,
                "ok": status_per_sec[s].get(200, 0),
                "p50_ms": h.percentile(50),
                "p99_ms": h.percentile(99),
                "max_ms": h.percentile(100),
            }
        )
    return {
        "offered_rate": rate,
        "duration_s": duration,
        "connections": connections,
        "procs": procs,
        "scheduled": total("scheduled"),
        "sent": total("sent"),
        "responses": hist.count,
        "ok": status.get(200, 0),
        "status": {str(k): v for k, v in sorted(status.items())},
        "incomplete": total("incomplete"),
        "max_backlog": max(p["max_backlog"] for p in parts),
        "lost_connections": total("lost_connections"),
        "ok_per_sec": round(ok_in_window / duration, 1),
        "latency": hist.summary(),
        "client_cpu_seconds": round(total("client_cpu_seconds"), 2),
        "timeline": timeline,
        "histogram": hist.to_json(),
    }


# --- saturation with wrk -----------------------------------------------------------------
_WRK_LUA = r"""
-- Cycles through pre-built raw requests (file of "<length>\n<bytes>" records).
local reqs, i = {}, 0
function init(args)
  local f = assert(io.open(args[1], "rb")); local data = f:read("*a"); f:close()
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local n = tonumber(data:sub(pos, nl - 1))
    reqs[#reqs + 1] = data:sub(nl + 1, nl + n)
    pos = nl + n + 1
  end
  i = math.random(#reqs)
end
function request() i = i % #reqs + 1; return reqs[i] end
"""


def _to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk_saturate(
    url: str, duration: int, connections: int, requests: list[bytes], cpu: str | None = "1", threads: int = 1
) -> dict:
    """Closed-loop saturation throughput with wrk (its latencies suffer coordinated omission: use
    ``open_loop`` for latency). Same request pool as the open-loop generator."""
    with tempfile.TemporaryDirectory(prefix="eventpipe-wrk-") as tmp:
        (Path(tmp) / "reqs.bin").write_bytes(b"".join(b"%d\n%s" % (len(r), r) for r in requests))
        (Path(tmp) / "pool.lua").write_text(_WRK_LUA)
        cmd = (["taskset", "-c", cpu] if cpu else []) + [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            "pool.lua",
            url.rstrip("/") + "/v1/batch",
            "--",
            "reqs.bin",
        ]
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    pct = {p: _to_ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_sec": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": pct.get("50"),
        "p99_ms": pct.get("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
        "command": " ".join(cmd[:-2] + ["<pool>", "<requests>"]),
    }


# --- plot ----------------------------------------------------------------------------------
def plot_timeline(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = [p for p in result["timeline"] if p["t"] < result["duration_s"] + 10]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    a1.plot([p["t"] for p in tl], [p["ok"] for p in tl], label="200 / s")
    a1.axhline(result["offered_rate"], color="grey", ls="--", lw=1, label="offered")
    a1.set_ylabel("responses/s")
    a1.legend(loc="lower right")
    a2.plot([p["t"] for p in tl], [p["p50_ms"] for p in tl], label="p50")
    a2.plot([p["t"] for p in tl], [p["p99_ms"] for p in tl], label="p99")
    a2.set_yscale("log")
    a2.set_ylabel("latency ms (from intended send)")
    a2.set_xlabel("seconds")
    a2.legend(loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eventpipe bench load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--rate", type=float, required=True, help="requests/s offered (open loop)")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--events", type=int, default=10, help="events per request")
    ap.add_argument("--events-max", type=int, help="draw events per request from [--events, --events-max]")
    ap.add_argument("--gzip", action="store_true", help="gzip request bodies (Content-Encoding: gzip)")
    ap.add_argument("--write-keys", default="demo-write-key", help="comma-separated write keys, used in turn")
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--pool", type=int, default=4096, help="distinct pre-built requests, cycled")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--procs", type=int, default=1, help="load processes (each offers rate/procs)")
    ap.add_argument("--drain", type=float, default=5.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args(argv)
    host = urlsplit(args.url).netloc
    reqs = build_requests(
        host, args.pool, args.events, args.events_max, args.gzip, tuple(args.write_keys.split(",")), args.devices
    )
    result = open_loop(args.url, args.rate, args.duration, reqs, args.connections, args.procs, args.drain)
    result["requests"] = request_stats(reqs) | {"events": args.events, "events_max": args.events_max, "gzip": args.gzip}
    result["command"] = " ".join(["eventpipe bench load"] + (sys.argv[1:] if argv is None else argv))
    lat = result["latency"]
    print(
        f"offered {args.rate:.0f}/s for {args.duration:.0f}s: {result['ok_per_sec']:.0f} ok/s, "
        f"status {result['status']}, incomplete {result['incomplete']}, "
        f"p50 {lat['p50_ms']} ms p99 {lat['p99_ms']} ms p99.9 {lat['p99.9_ms']} ms max {lat['p100_ms']} ms, "
        f"client cpu {result['client_cpu_seconds']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.png:
        plot_timeline(result, args.png, f"open loop {args.rate:.0f} req/s -> {args.url}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
