"""What `eventpipe plan` shows: the text report of sizing and simulations, and the plot of the simulated days."""

from __future__ import annotations

from pathlib import Path

from eventpipe.plan.assumptions import (
    BROKER_CPU,
    LATENCY_SLO_MS,
    PROCESSOR_CPU_TARGET_PERCENT,
    PROCESSOR_SCALE_UP_WINDOW_S,
    SCALE_DOWN_WINDOW_S,
    SCALE_UP_WINDOW_S,
    TOLERANCE,
)
from eventpipe.plan.capacities import Capacities
from eventpipe.plan.sizing import Inputs


def plot(runs: dict[str, dict], sizing: dict, path: Path) -> None:
    """One column per simulated day: load, replicas, lag/freshness, headroom over 24 h."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(4, len(runs), figsize=(8 * len(runs), 12), sharex=True, squeeze=False)
    for col, (title, series) in enumerate(runs.items()):
        axes = grid[:, col]
        t = series["t_h"]
        ax = axes[0]
        ax.plot(t, series["rps"], color="tab:blue", lw=1)
        ax.set_ylabel("requests/s")
        ax2 = ax.twinx()
        ax2.plot(t, series["eps"], color="tab:gray", lw=0.6, alpha=0.6)
        ax2.set_ylabel("events/s (grey)")
        ax.set_title(f"{title}: load")
        ax = axes[1]
        ax.step(t, series["collectors"], where="post", label="collectors (HPA)")
        ax.step(t, series["processors"], where="post", label="processors (KEDA: CPU + lag)")
        ax.axhline(sizing["kafka"]["partitions"], color="tab:red", ls="--", lw=0.8, label="partitions = processor max")
        ax.axhline(sizing["collector"]["max_replicas"], color="tab:blue", ls=":", lw=0.8, label="collector max")
        ax.set_ylabel("replicas")
        ax.set_ylim(0, sizing["kafka"]["partitions"] + 1)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title("replicas")
        ax = axes[2]
        ax.plot(t, series["lag_records"], color="tab:purple", lw=1)
        ax.set_ylabel("lag, records (purple)")
        ax2 = ax.twinx()
        ax2.plot(t, series["freshness_s"], color="tab:green", lw=0.8)
        ax2.set_ylabel("freshness s (green)")
        ax.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        ax.set_title("events.raw consumer lag (what KEDA sees) and modelled freshness")
        ax = axes[3]
        ax.plot(t, [100 * (1 - min(u, 1)) for u in series["collector_util"]], label="collector CPU headroom %")
        ax.plot(t, [100 * (1 - min(u, 1)) for u in series["processor_util"]], label="processor headroom %")
        ax.plot(
            t,
            [100 * (LATENCY_SLO_MS - x) / LATENCY_SLO_MS for x in series["latency_p99_ms"]],
            color="tab:red",
            lw=0.8,
            label="p99 latency headroom to the 50 ms SLO % (model)",
        )
        ax.set_ylabel("headroom %")
        ax.set_ylim(0, 100)
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title("headroom")
        ax.set_xlabel("hour of day")
        ax.set_xticks(range(0, 25, 2))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(inputs: Inputs, cap: Capacities, sizing: dict, summaries: dict[str, dict]) -> str:
    c, p, k, ch = sizing["collector"], sizing["processor"], sizing["kafka"], sizing["clickhouse"]
    lines = [
        "eventpipe plan",
        "",
        f"Inputs: peak {inputs.peak_rps:,.0f} requests/s x {inputs.events_per_request:g} events "
        f"= {inputs.peak_eps:,.0f} events/s; {inputs.daily_events:.3g} events/day"
        + ("" if inputs.events_per_day else " (not given: assumed mean/peak 0.4)")
        + f" (mean/peak {inputs.daily_events / 86400 / inputs.peak_eps:.2f}); "
        f"ClickHouse retention {inputs.retention_days:g} days",
        "",
        "Assumptions (per core):",
    ]
    for field, label in (
        ("collector_rps_per_core", "collector requests/s"),
        ("processor_eps_per_core", "processor events/s"),
        ("clickhouse_bytes_per_event", "ClickHouse bytes/event"),
        ("kafka_bytes_per_event", "Kafka bytes/event"),
        ("kafka_broker_write_mb_s_per_core", "Kafka MB/s/broker core"),
    ):
        lines.append(f"  {label:<24}{getattr(cap, field):>12,.0f}   {cap.sources[field]}")
    if cap.bare_server_rps_per_core:
        lines.append(
            f"  (bare-server ceiling {cap.bare_server_rps_per_core:,.0f} requests/s/core "
            "measured in benchmarks/results/servers.json; not used as collector capacity)"
        )
    lines += [
        f"  targets: collector CPU {c['hpa_target_cpu_percent']} %, processor "
        f"{PROCESSOR_CPU_TARGET_PERCENT} %; max replicas cover {inputs.surge:g}x the peak; "
        f"{inputs.zones} zones; <= {inputs.max_disk_per_node_tb:g} TB per node, "
        f"{inputs.free_disk_fraction:.0%} kept free",
        "",
    ]
    rows = [
        ("component", "min", "needed at peak", "max", "per pod", "autoscaling"),
        (
            "collector",
            c["min_replicas"],
            c["replicas_at_peak"],
            c["max_replicas"],
            f"{c['pod_cpu']:g} CPU",
            f"HPA cpu {c['hpa_target_cpu_percent']}% / {c['hpa_target_rps_per_pod']:,} req/s",
        ),
        (
            "processor",
            p["min_replicas"],
            p["replicas_at_peak"],
            p["max_replicas"],
            f"{p['pod_cpu']:g} CPU",
            f"KEDA cpu {p['cpu_target_percent']}% + lag {p['lag_threshold_records']:,} records",
        ),
        (
            "kafka broker",
            k["brokers"],
            k["brokers"],
            k["brokers"],
            f"{k['disk_per_broker_gib']:,} GiB",
            f"RF {k['replication']}, {k['partitions']} partitions",
        ),
        (
            "clickhouse",
            ch["shards"] * ch["replicas"],
            ch["shards"] * ch["replicas"],
            ch["shards"] * ch["replicas"],
            f"{ch['disk_per_node_gib']:,} GiB",
            f"{ch['shards']} shard(s) x {ch['replicas']} replicas",
        ),
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        lines.append(
            "  "
            + "  ".join(
                str(v).ljust(w) if i in (0, 4, 5) else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths))
            )
        )
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    lines += [
        "",
        f"Partitions of events.raw: {k['partitions']} (2x the processors a {inputs.surge:g}x peak needs: "
        f"{k['partitions_needed']}; schemas/topics.py has {k['topics_py_partitions']})"
        + (
            ""
            if k["partitions"] == k["topics_py_partitions"]
            else "  -> set it in deploy/k8s/overlays/production (local and CI keep schemas/topics.py's)"
        ),
        f"Kafka: {k['disk_total_tb']} TB total ({k['raw_retention_days']:g} d retention, RF "
        f"{k['replication']}, {k['disk_tb_per_retention_day']} TB per retention day); brokers by disk {k['brokers_for_disk']}, by write rate "
        f"{k['brokers_for_write']} ({k['write_mb_s_with_replication']} MB/s with replication at "
        f"{k['broker_write_mb_s']} MB/s per {BROKER_CPU:g}-core broker), minimum 3",
        f"ClickHouse: {ch['data_per_day_gb']} GB/day; {ch['disk_per_replica_set_tb']} TB per replica "
        f"set incl. rollups and merge headroom",
        f"KEDA: CPU trigger {p['cpu_target_percent']} % tracks throughput; lag trigger "
        f"{p['lag_threshold_records']:,} records/replica = the most lag a group that keeps up shows "
        f"({p['normal_lag_records_max']:,} records: {c['max_replicas']} collectors x {k['partitions']} "
        f"partitions x bundles/s x {p['commit_age_s']:g} s commit age) over {p['min_replicas']} replicas, "
        "so it fires on backlog only",
    ]
    lines += [
        "",
        f"Autoscaler simulation over 24 h (HPA tolerance {TOLERANCE}, stabilisation up "
        f"{SCALE_UP_WINDOW_S} s / down {SCALE_DOWN_WINDOW_S} s; processors: KEDA CPU + Kafka lag, "
        f"up window {PROCESSOR_SCALE_UP_WINDOW_S} s):",
    ]
    for title, summary in summaries.items():
        sc, sp = summary["collectors"], summary["processors"]
        lines += [
            f"  {title}:",
            f"    collectors {sc['min']}-{sc['max']} replicas, {sc['scale_changes']} changes, at most "
            f"{sc['max_changes_per_hour']}/hour, {sc['reversals_within_10min']} reversals within 10 min",
            f"    processors {sp['min']}-{sp['max']} replicas (<= {sp['partitions']} partitions), "
            f"{sp['scale_changes']} changes, at most {sp['max_changes_per_hour']}/hour, "
            f"{sp['reversals_within_10min']} reversals within 10 min",
            f"    collector utilisation max {summary['max_collector_utilisation']:.0%}, "
            f"{summary['rejected_requests']:,} requests refused, modelled p99 <= "
            f"{summary['max_latency_p99_ms_model']} ms",
            f"    lag max {summary['max_lag_records']:,} records; backlog at 24:00 "
            f"{summary['backlog_events_end']:,} events; freshness max {summary['max_freshness_s']} s, "
            f"over 2 s for {summary['minutes_freshness_over_2s']:g} min (rebalance pauses)",
        ]
    lines.append(
        "  (a model, not a cluster: pod start-up, rebalance and metric delays are the assumptions "
        "in eventpipe/plan/assumptions.py)"
    )
    return "\n".join(lines)
