"""``eventpipe bench cluster``: what replication costs the collector, 1 Kafka node against 3 (RF 3).

The same collector (CPU 0), the same request pool and the same load generator
(CPU 1) run against one KRaft node (replication factor 1) and against the
3-node cluster of ``eventpipe broker --nodes 3`` (replication factor 3,
min.insync.replicas 2, acks=all), alternating in one run. Kafka's JVMs are not
pinned: they share the two cores, as they do under ``eventpipe up --brokers 3``.
Each round measures saturation throughput (wrk, closed loop) and then latency
at a fixed offered rate (open loop, so a slow ack is not hidden by coordinated
omission); a 200 is sent only after the broker acked the bundle, so request
latency is ack latency as a client sees it.

``--layouts`` compares the two ways to run three brokers on this machine instead:
three combined broker+controller JVMs (what ``eventpipe broker --nodes 3`` runs)
against three brokers plus one dedicated controller JVM, same load, same run:
start time, resident memory, Kafka CPU, throughput and latency.

It also measures what ``eventpipe plan`` needs to size brokers: bytes each node
appended to its ``events.raw`` log (as leader or follower) per CPU-second the
node's JVM used, i.e. replicated write throughput per broker core. The brokers
are not saturated here (the collector is), so their fixed costs (heartbeats,
replica fetch polling) weigh on that figure: it is conservative.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import load
from collector_bench import collector_metrics, start_server
from harness import (
    HOST,
    RESULTS,
    WRITE_KEYS,
    free_port,
    group_cpu_seconds,
    group_rss_mb,
    median_or_none,
    stop,
    topic_bytes,
    write_result,
)


class SplitCluster:
    """Three broker-only JVMs and one controller-only JVM (a quorum of one), for ``--layouts`` only."""

    def __init__(self, settings, data):
        from eventpipe.broker import KafkaBroker

        base = settings.broker_port
        voters = f"4@127.0.0.1:{base + 7}"
        self.nodes = [
            KafkaBroker(
                settings,
                data / f"node-{i}",
                node_id=i,
                port=base + 2 * (i - 1),
                voters=voters,
                roles="broker",
                brokers=3,
            )
            for i in (1, 2, 3)
        ]
        self.controller = KafkaBroker(
            settings, data / "controller", node_id=4, port=base + 6, voters=voters, roles="controller", brokers=3
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self) -> "SplitCluster":
        from eventpipe.broker import KafkaCluster, new_cluster_id

        members, cid = [self.controller, *self.nodes], new_cluster_id()
        for proc in [n.format(cid) for n in members]:
            assert proc is None or proc.wait() == 0
        for n, offset in [(n, n.launch()) for n in members]:
            n.wait_ready(120, offset)
        helper = KafkaCluster.__new__(KafkaCluster)  # its topic creation and in-sync wait, for these brokers
        helper.settings, helper.nodes = self.nodes[0].settings, self.nodes
        asyncio.run(helper._create_topics(time.monotonic() + 120))
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.controller.stop()


def start_kafka(layout: str, heap: str):
    """``layout``: "1" (one combined node), "3" (three combined nodes) or "3+1" (SplitCluster)."""
    from eventpipe.broker import KafkaBroker, KafkaCluster, free_port_block
    from eventpipe.settings import Settings

    nodes = 1 if layout == "1" else 3
    data = Path(tempfile.mkdtemp(prefix=f"eventpipe-bench-kafka{layout}-"))
    settings = Settings.from_env(
        {}, data_dir=data, kafka_bootstrap=f"{HOST}:{free_port_block(8)}", kafka_nodes=nodes, broker_heap=heap
    )
    started = time.monotonic()
    if layout == "1":
        kafka = KafkaBroker(settings).start()
        jvms = [kafka]
    elif layout == "3":
        kafka = KafkaCluster(settings).start()
        jvms = kafka.nodes
    else:
        kafka = SplitCluster(settings, data).start()
        jvms = [*kafka.nodes, kafka.controller]
    return kafka, data, jvms, time.monotonic() - started


def measure(layout: str, reqs: list[bytes], args) -> dict:
    kafka, data, jvms, start_s = start_kafka(layout, args.heap)
    brokers = [j for j in jvms if j.is_broker]
    port = free_port()
    url = f"http://{HOST}:{port}"
    try:
        with tempfile.TemporaryFile() as log:
            proc = start_server("collector", port, log, kafka)
            try:
                load.wrk_saturate(url, 2, args.connections, reqs)  # warm-up, not measured
                bytes0 = [topic_bytes(n) for n in brokers]
                cpu0 = [group_cpu_seconds(j.proc.pid) for j in jvms]
                collector0, m0, t0 = group_cpu_seconds(proc.pid), collector_metrics(port), time.monotonic()
                sat = load.wrk_saturate(url, args.duration, args.connections, reqs)
                wall = time.monotonic() - t0
                m1 = collector_metrics(port)
                written = [topic_bytes(n) - b for n, b in zip(brokers, bytes0)]
                jvm_cpu = [group_cpu_seconds(j.proc.pid) - c for j, c in zip(jvms, cpu0)]
                collector_cpu = group_cpu_seconds(proc.pid) - collector0
                rss = sum(group_rss_mb(j.proc.pid, "VmRSS") for j in jvms)
                open_loop = load.open_loop(url, args.rate, args.latency_duration, reqs, args.open_connections)
            finally:
                stop(proc)
    finally:
        kafka.stop()
        shutil.rmtree(data, ignore_errors=True)
    acks = m1["ack_count"] - m0["ack_count"]
    lat = open_loop["latency"]
    return {
        "layout": layout,
        "replication_factor": 1 if layout == "1" else 3,
        "jvms": len(jvms),
        "kafka_start_s": round(start_s, 1),
        "kafka_rss_mb": round(rss),
        "requests_per_sec": sat["requests_per_sec"],
        "non_2xx": sat["non_2xx"],
        "collector_cpu": round(collector_cpu / wall, 3),
        "kafka_ack_ms_mean": round(1000 * (m1["ack_sum"] - m0["ack_sum"]) / max(1, acks), 2),
        "requests_per_bundle": round((m1["bundle_requests_sum"] - m0["bundle_requests_sum"]) / max(1, acks), 1),
        "broker_write_mb_s": [round(b / wall / 1e6, 2) for b in written],
        "jvm_cpu": [round(c / wall, 3) for c in jvm_cpu],  # brokers' (and the controller's, last, for 3+1)
        "kafka_cpu": round(sum(jvm_cpu) / wall, 3),
        # replicated bytes appended per CPU-second of all Kafka JVMs
        "broker_write_mb_s_per_core": round(sum(written) / 1e6 / max(1e-9, sum(jvm_cpu)), 1),
        "open_loop": {
            "offered_rate": args.rate,
            "ok_per_sec": open_loop["ok_per_sec"],
            "status": open_loop["status"],
            "incomplete": open_loop["incomplete"],
            "p50_ms": lat["p50_ms"],
            "p99_ms": lat["p99_ms"],
            "p99.9_ms": lat["p99.9_ms"],
            "max_ms": lat["p100_ms"],
        },
    }


LABELS = {"1": "1 node (RF 1)", "3": "3 combined nodes (RF 3)", "3+1": "3 brokers + 1 controller (RF 3)"}


def scenario_cluster(args) -> dict:
    reqs = load.build_requests(HOST, args.pool, args.events, None, args.gzip, WRITE_KEYS, args.devices)
    started = time.monotonic()
    layouts = ["3", "3+1"] if args.layouts else ["1", "3"]
    runs: dict[str, list[dict]] = {k: [] for k in layouts}
    for rnd in range(args.repeats):
        for layout in layouts:
            r = measure(layout, reqs, args)
            runs[layout].append(r)
            ol = r["open_loop"]
            print(
                f"bench cluster: {LABELS[layout]}, round {rnd + 1}: {r['requests_per_sec']:7.0f} req/s saturated "
                f"(collector cpu {r['collector_cpu']:.0%}, kafka cpu {r['kafka_cpu']:.0%}, ack "
                f"{r['kafka_ack_ms_mean']} ms, brokers write {r['broker_write_mb_s']} MB/s); at "
                f"{ol['offered_rate']:.0f} req/s: p50 {ol['p50_ms']} ms, p99 {ol['p99_ms']} ms, ok "
                f"{ol['ok_per_sec']}/s; start {r['kafka_start_s']}s, rss {r['kafka_rss_mb']} MB",
                flush=True,
            )
    keys = (
        "requests_per_sec",
        "kafka_ack_ms_mean",
        "collector_cpu",
        "kafka_cpu",
        "broker_write_mb_s_per_core",
        "kafka_start_s",
        "kafka_rss_mb",
    )
    med = {
        k: {
            **{key: median_or_none(r[key] for r in rs) for key in keys},
            "p50_ms": median_or_none(r["open_loop"]["p50_ms"] for r in rs),
            "p99_ms": median_or_none(r["open_loop"]["p99_ms"] for r in rs),
        }
        for k, rs in runs.items()
    }
    doc = {
        "command": args.command_line,
        "note": (
            "collector on CPU 0, wrk / the open-loop generator on CPU 1, Kafka JVMs unpinned (heap "
            f"{args.heap} each); RF 3 with min.insync.replicas 2; acks=all in every layout; layouts "
            "alternate within each round; medians"
        ),
        "requests": load.request_stats(reqs) | {"events": args.events, "gzip": args.gzip},
        "saturation": {"tool": "wrk", "connections": args.connections, "duration_s": args.duration},
        "latency": {
            "tool": "open loop",
            "offered_rate": args.rate,
            "duration_s": args.latency_duration,
            "connections": args.open_connections,
        },
        "layouts": {k: LABELS[k] for k in layouts},
        "median": med,
        "runs": runs,
    }
    a, b = layouts
    doc[f"throughput_{b}_vs_{a}"] = round(med[b]["requests_per_sec"] / med[a]["requests_per_sec"], 3)
    if not args.layouts:  # read by eventpipe plan: replicated MB appended per Kafka CPU-second, 3 nodes
        doc["kafka_broker_write_mb_s_per_core"] = med["3"]["broker_write_mb_s_per_core"]
    doc["wall_seconds"] = round(time.monotonic() - started, 1)
    name = "cluster-layout" if args.layouts else "cluster"
    path = write_result(name, doc)
    plot_cluster(doc, RESULTS / f"{name}.png")
    print(
        "bench cluster: "
        + "; ".join(
            f"{LABELS[k]} {m['requests_per_sec']:.0f} req/s, p50/p99 {m['p50_ms']}/{m['p99_ms']} ms, "
            f"{m['broker_write_mb_s_per_core']} MB/s per Kafka core"
            for k, m in med.items()
        )
        + f"; wrote {path} and {name}.png"
    )
    return doc


def plot_cluster(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layouts = list(doc["layouts"])
    colors = ["tab:blue", "tab:orange"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, k in enumerate(layouts):
        runs, med = doc["runs"][k], doc["median"][k]
        ax1.bar(i, med["requests_per_sec"], color=colors[i], alpha=0.7)
        ax1.plot([i] * len(runs), [r["requests_per_sec"] for r in runs], "k.", ms=8)
        for j, q in enumerate(("p50_ms", "p99_ms")):
            ax2.bar(i * 3 + j, med[q], color=colors[i], alpha=0.5 if q == "p50_ms" else 0.9)
            ax2.plot([i * 3 + j] * len(runs), [r["open_loop"][q] for r in runs], "k.", ms=8)
    ax1.set_xticks(range(len(layouts)), [doc["layouts"][k] for k in layouts], fontsize=8)
    ax1.set_ylabel("requests/s (10 events each)")
    ax1.set_title("collector saturation (wrk), acks=all")
    ax2.set_xticks([0, 1, 3, 4], [f"{k} {q}" for k in layouts for q in ("p50", "p99")])
    ax2.set_ylabel("ms, intended send to 200 (open loop)")
    ax2.set_title(f"latency at {doc['latency']['offered_rate']:.0f} req/s offered")
    what = "3 combined nodes vs 3 brokers + 1 controller" if "3+1" in layouts else "1 node vs 3 nodes (RF 3)"
    fig.suptitle(f"Kafka, {what}, on this machine (2 cores); bars: medians, dots: rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
