"""Per-partition lag with one device sending half the load, without and with hot-key overflow (issue 16).

Each run starts its own broker, collector and ``--processors`` processors in one consumer group (fresh
topic; each processor on its own embedded store, so the partition is the unit of work as with a shared
ClickHouse server), offers ``--rate`` requests/s of 10-event batches for ``--duration`` s (open loop,
benchmarks/load.py), half of them from one device and half from 300 others, and waits for the processors
to catch up. With one processor every partition waits for the same micro-batches, so a hot partition
shows only in its share of events; with several, the processor that owns the hot partition falls behind
while the others idle. Lag per partition:

* records behind, sampled every second from the processors' ``eventpipe_processor_lag_records{partition}``
  (in the JSON only: records are bundles, and a hot partition's bundles are larger, not more numerous);
* seconds behind, from the stores: for each partition and second of receipt, the largest
  ``inserted_at - received_at`` of the events received in that second (how late that partition's events
  became queryable), plus each partition's share of the events.

``off`` runs with ``EVENTPIPE_HOT_KEY_EVENTS_PER_S=0``, ``on`` with ``--hot-rate`` (default 500 events/s).

    python benchmarks/hot_key.py --rate 2000 --duration 30 --processors 3
    # benchmarks/results/hot-key.json and hot-key.png
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from load import build_requests, open_loop  # noqa: E402

from eventpipe.broker import KafkaBroker  # noqa: E402
from eventpipe.ingest.partitioning import partition_for  # noqa: E402
from eventpipe.settings import Settings  # noqa: E402
from eventpipe.stack import Child, LocalStack, eventpipe_command, wait_http  # noqa: E402
from tests.conftest import free_port  # noqa: E402 - a free port (and, for the broker, the next one too)

RESULTS = ROOT / "benchmarks" / "results"
KEY = "wk_bench_1"


def query(port: int, sql: str) -> list:
    url = f"http://127.0.0.1:{port}/query?" + urllib.parse.urlencode({"sql": sql})
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.load(resp)["rows"]


def lag_records(port: int) -> dict[int, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith('eventpipe_processor_lag_records{partition="'):
            out[int(line.split('"')[1])] = float(line.rsplit(" ", 1)[1])
    return out


def traffic(host: str) -> tuple[list[bytes], str]:
    """Alternating requests of 300 devices and of one hot device (its anonymousId returned)."""
    calm = build_requests(host, n=2048, devices=300, write_keys=(KEY,), seed=1)
    hot = build_requests(host, n=2048, devices=1, write_keys=(KEY,), seed=2)
    body = hot[0].split(b"\r\n\r\n", 1)[1]
    device = json.loads(body)["batch"][0]["anonymousId"]
    return [r for pair in zip(calm, hot) for r in pair], device


def run(label: str, hot_rate: float, rate: float, duration: float, workdir: Path, processors: int = 1) -> dict:
    data = workdir / label
    data.mkdir(parents=True)
    settings = Settings.from_env(
        {},
        data_dir=data,
        kafka_bootstrap=f"127.0.0.1:{free_port(pair=True)}",
        collector_port=free_port(),
        processor_web_port=free_port(),
        write_keys=f"{KEY}=bench",
        hot_key_events_per_s=hot_rate,
    )
    broker = KafkaBroker(settings).start()
    log = open(data / "stack.log", "w")
    stack = LocalStack(settings, out=log, broker=broker)
    samples: list[dict] = []
    stop = threading.Event()
    ports = [settings.processor_web_port] + [free_port() for _ in range(processors - 1)]
    extra: list[Child] = []

    def sample() -> None:
        t0 = time.time()
        while not stop.is_set():
            lag: dict[int, float] = {}
            for port in ports:
                try:
                    for p, n in lag_records(port).items():
                        lag[p] = max(lag.get(p, 0), n)
                except OSError:
                    pass
            samples.append({"t": round(time.time() - t0, 2), "lag": lag})
            stop.wait(1.0)

    def union(sql: str) -> list:
        return [row for port in ports for row in query(port, sql)]

    try:
        stack.start_processor()
        for i, port in enumerate(ports[1:], 1):
            (data / f"p{i}").mkdir()
            env = {**stack._env(), "EVENTPIPE_DATA_DIR": str(data / f"p{i}"), "EVENTPIPE_PROCESSOR_WEB_PORT": str(port)}
            extra.append(Child(f"proc{i}", eventpipe_command("processor"), env, log))
            wait_http(f"http://127.0.0.1:{port}/query?sql=SELECT%201", extra[-1], 120)
        stack.start_collector()
        time.sleep(15 if processors > 1 else 0)  # the group settles: every processor has its partitions
        requests, device = traffic(f"127.0.0.1:{settings.collector_port}")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = open_loop(stack.collector_url, rate, duration, requests, connections=64)
        accepted = load["ok"] * 10
        deadline = time.time() + 180
        while time.time() < deadline and sum(r[0] for r in union("SELECT count() FROM events")) < accepted:
            time.sleep(1.0)
        time.sleep(6)  # one more lag report (every 5 s) after the last write
        stop.set()
        sampler.join()
        home = partition_for(device.encode(), 12)
        per_partition = union(
            "SELECT kafka_partition, count(), countIf(has(flags, 'hot_key_overflow')), "
            "quantile(0.99)(toFloat64(inserted_at - received_at)), "
            "max(toFloat64(inserted_at - received_at)) FROM events GROUP BY kafka_partition "
            "ORDER BY kafka_partition"
        )
        series = union(
            "SELECT kafka_partition, toUnixTimestamp(toStartOfSecond(received_at)) AS s, "
            "max(toFloat64(inserted_at - received_at)) FROM events GROUP BY kafka_partition, s "
            "ORDER BY kafka_partition, s"
        )
        stored = sum(r[1] for r in per_partition)
        per_partition.sort()
        series.sort()
        return {
            "label": label,
            "hot_key_events_per_s": hot_rate,
            "offered_rps": rate,
            "duration_s": duration,
            "processors": processors,
            "hot_device": device,
            "hot_home_partition": home,
            "answered": load["status"],
            "ok_per_sec": load["ok_per_sec"],
            "latency": load["latency"],
            "accepted_events": accepted,
            "stored_events": stored,
            "partitions": [
                {
                    "partition": p,
                    "events": n,
                    "share": round(n / stored, 4),
                    "flagged": f,
                    "seconds_behind_p99": round(q99, 3),
                    "seconds_behind_max": round(mx, 3),
                }
                for p, n, f, q99, mx in per_partition
            ],
            "seconds_behind": series,
            "lag_records": samples,
        }
    finally:
        stop.set()
        for child in extra:
            child.stop()
        stack.stop()
        broker.stop()
        log.close()


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = doc["runs"]
    fig, axes = plt.subplots(2, len(runs), figsize=(6.5 * len(runs), 7.5), squeeze=False)
    top = max([v for r in runs for _, _, v in r["seconds_behind"]] + [1])
    for col, r in enumerate(runs):
        home = r["hot_home_partition"]
        ax = axes[0][col]
        t0 = min(s for _, s, _ in r["seconds_behind"])
        for p in range(12):
            pts = [(s - t0, v) for q, s, v in r["seconds_behind"] if q == p]
            if pts:
                ax.plot(
                    *zip(*pts),
                    lw=2.2 if p == home else 0.9,
                    color="tab:red" if p == home else None,
                    alpha=1 if p == home else 0.6,
                    label=f"partition {p} (hot device's)" if p == home else None,
                )
        ax.set_ylim(0, top * 1.05)
        ax.set_title(
            f"{r['label']}: hot-key overflow {'off' if not r['hot_key_events_per_s'] else 'at %g events/s' % r['hot_key_events_per_s']}"
        )
        ax.set_ylabel("seconds behind (max per second of receipt)")
        ax.set_xlabel("second of the run (receipt)")
        ax.legend(loc="upper left", fontsize=8)
        ax = axes[1][col]
        shares = [next((x["share"] for x in r["partitions"] if x["partition"] == p), 0) * 100 for p in range(12)]
        flagged = [
            next((x["flagged"] / max(1, r["stored_events"]) for x in r["partitions"] if x["partition"] == p), 0) * 100
            for p in range(12)
        ]
        ax.bar(
            range(12),
            shares,
            color=["tab:red" if p == home else "tab:gray" for p in range(12)],
            label="events stored (% of all)",
        )
        ax.bar(range(12), flagged, color="tab:blue", alpha=0.5, label="of which flagged hot_key_overflow")
        ax.set_ylim(0, 60)
        ax.set_xticks(range(12))
        ax.set_xlabel("partition")
        ax.set_ylabel("% of the run's events")
        ax.legend(loc="upper left", fontsize=8)
        worst = max(x["seconds_behind_max"] for x in r["partitions"])
        best = min(x["seconds_behind_max"] for x in r["partitions"])
        ax.set_title(
            f"max seconds behind per partition: {best:.1f}–{worst:.1f}; {r['ok_per_sec']:g} req/s answered 200",
            fontsize=9,
        )
    fig.suptitle(
        f"one device sends 50 % of {runs[0]['offered_rps']:g} req/s (10 events each), 12 partitions, "
        f"{runs[0]['processors']} processor(s)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--hot-rate", type=float, default=500)
    parser.add_argument("--name", default="hot-key")
    parser.add_argument("--processors", type=int, default=3)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON of --name")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads((RESULTS / f"{args.name}.json").read_text()), RESULTS / f"{args.name}.png")
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            run("off", 0, args.rate, args.duration, Path(tmp), args.processors),
            run("on", args.hot_rate, args.rate, args.duration, Path(tmp), args.processors),
        ]
    doc = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=1))
    plot(doc, RESULTS / f"{args.name}.png")
    for r in runs:
        worst = max(r["partitions"], key=lambda x: x["seconds_behind_max"])
        print(
            f"{r['label']}: {r['stored_events']} events stored of {r['accepted_events']} accepted; "
            f"largest partition share {max(x['share'] for x in r['partitions']):.0%}; "
            f"worst partition {worst['partition']} (hot home {r['hot_home_partition']}) "
            f"max {worst['seconds_behind_max']:.1f}s behind, p99 {worst['seconds_behind_p99']:.1f}s"
        )


if __name__ == "__main__":
    main()
