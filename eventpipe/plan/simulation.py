"""24 hours of traffic through both autoscalers (collectors: HPA; processors: KEDA), and what to judge it by."""

from __future__ import annotations

import collections
import math

from eventpipe.plan.assumptions import (
    ACK_PATH_MS,
    COLLECTOR_CPU,
    COLLECTOR_START_S,
    METRICS_DELAY_TICKS,
    PROCESSOR_CPU,
    PROCESSOR_SCALE_UP_WINDOW_S,
    PROCESSOR_START_S,
    REBALANCE_S,
    SERVICE_P99_MS,
    TICK_S,
)
from eventpipe.plan.autoscalers import HPA, Pods
from eventpipe.plan.capacities import Capacities
from eventpipe.plan.sizing import Inputs, events_per_record
from eventpipe.plan.traffic import daily_curve
from eventpipe.settings import Settings


def simulate(
    inputs: Inputs,
    cap: Capacities,
    sizing: dict,
    settings: Settings | None = None,
    seed: int = 7,
    warmup_s: int = 7200,
    peak_factor: float = 1.0,
) -> dict:
    """24 h of the daily curve (scaled by ``peak_factor``) through both autoscalers.

    Returns per-tick series and a summary. ``peak_factor`` = the surge the max replicas are
    sized for exercises the autoscalers up to their bounds.
    """
    settings = settings or Settings()
    col, proc, kafka = sizing["collector"], sizing["processor"], sizing["kafka"]
    partitions = kafka["partitions"]
    rps_day = [
        x * peak_factor
        for x in daily_curve(inputs.peak_rps, inputs.daily_events / (inputs.peak_eps * 86400), seed=seed)
    ]
    n = len(rps_day)
    warm = warmup_s // TICK_S
    hpa_c = HPA(col["min_replicas"], col["max_replicas"])
    hpa_p = HPA(proc["min_replicas"], proc["max_replicas"], up_window_s=PROCESSOR_SCALE_UP_WINDOW_S)
    collectors = Pods(col["min_replicas"], COLLECTOR_START_S)
    processors = Pods(proc["min_replicas"], PROCESSOR_START_S)
    backlog = 0.0  # events waiting beyond the in-flight micro-batch
    observed = collections.deque([(0.0, 0.0, 0.0)] * METRICS_DELAY_TICKS, maxlen=METRICS_DELAY_TICKS)
    last_ready_p = processors.ready(0)
    series = {
        k: []
        for k in (
            "t_h",
            "rps",
            "eps",
            "backlog_events",
            "collectors",
            "collectors_ready",
            "processors",
            "processors_ready",
            "lag_records",
            "freshness_s",
            "collector_util",
            "processor_util",
            "latency_p99_ms",
            "rejected_rps",
        )
    }
    for i in range(-warm, n):
        now = i * TICK_S
        rps = rps_day[i % n]
        # Collectors serve what their ready pods can; the rest is answered 503 (counted).
        ready_c = collectors.ready(now)
        capacity_rps = ready_c * col["pod_capacity_rps"]
        util_c = rps / capacity_rps if capacity_rps else math.inf
        served = min(rps, capacity_rps)
        eps = served * inputs.events_per_request
        # Processors: each consumes whole partitions, so the busiest one sets the pace.
        ready_p = processors.ready(now)
        effective = partitions / math.ceil(partitions / ready_p) if ready_p else 0
        pause = REBALANCE_S if ready_p != last_ready_p else 0
        last_ready_p = ready_p
        capacity_eps = effective * proc["pod_capacity_eps"] * (TICK_S - pause) / TICK_S
        backlog = max(0.0, backlog + (eps - capacity_eps) * TICK_S)
        epr = events_per_record(served, inputs.events_per_request, ready_c, partitions, settings.bundle_window_ms)
        lag_events = backlog + eps * proc["commit_age_s"]
        lag_records = lag_events / epr
        full_rate = effective * proc["pod_capacity_eps"]
        freshness = proc["commit_age_s"] + (backlog / full_rate if full_rate else math.inf)
        # The HPAs see CPU and requests/s per pod as they were METRICS_DELAY_TICKS ago.
        # Processor CPU is the group's average; the busiest pod (most partitions) runs hotter.
        busy_p = min(eps / proc["pod_capacity_eps"], ready_p) if ready_p else 0.0
        observed.append((min(util_c, 1.0) * ready_c, served, busy_p))
        cpu_busy, rps_seen, cpu_busy_p = observed[0]
        want_c = max(
            hpa_c.pods_metric(
                collectors.replicas,
                ready_c,
                cpu_busy * COLLECTOR_CPU,
                COLLECTOR_CPU * col["hpa_target_cpu_percent"] / 100,
            ),
            hpa_c.pods_metric(collectors.replicas, ready_c, rps_seen, col["hpa_target_rps_per_pod"]),
        )
        collectors.scale(now, hpa_c.decide(now, collectors.replicas, want_c))
        # KEDA: CPU trigger and the total lag in records; the HPA it creates takes the larger
        # proposal. allowIdleConsumers is true and maxReplicaCount = partitions is the cap: with
        # false KEDA caps the lag at partitions x threshold, and from P-1 replicas that is a ratio
        # of P/(P-1), inside the HPA's 0.1 tolerance for P >= 11, so the last replica never comes.
        keda_value = lag_records
        want_p = max(
            hpa_p.pods_metric(
                processors.replicas,
                ready_p,
                cpu_busy_p * PROCESSOR_CPU,
                PROCESSOR_CPU * proc["cpu_target_percent"] / 100,
            ),
            hpa_p.external_metric(processors.replicas, keda_value, proc["lag_threshold_records"]),
        )
        processors.scale(now, hpa_p.decide(now, processors.replicas, want_p))
        if i < 0:
            continue
        rho = min(util_c, 0.99)
        series["t_h"].append(now / 3600)
        series["rps"].append(rps)
        series["eps"].append(eps)
        series["backlog_events"].append(backlog)
        series["collectors"].append(collectors.replicas)
        series["collectors_ready"].append(ready_c)
        series["processors"].append(processors.replicas)
        series["processors_ready"].append(ready_p)
        series["lag_records"].append(lag_records)
        series["freshness_s"].append(freshness)
        series["collector_util"].append(util_c)
        series["processor_util"].append(eps / full_rate if full_rate else math.inf)
        series["latency_p99_ms"].append(ACK_PATH_MS + SERVICE_P99_MS / (1 - rho))
        series["rejected_rps"].append(rps - served)
    return {"series": series, "summary": summarize(series, partitions)}


def _changes(values: list[int]) -> list[tuple[int, int]]:
    """(tick, +1/-1) for every tick where the replica count moved."""
    return [(i, 1 if b > a else -1) for i, (a, b) in enumerate(zip(values, values[1:]), 1) if b != a]


def max_changes_per_hour(values: list[int]) -> int:
    ticks = [i for i, _ in _changes(values)]
    per_hour = 3600 // TICK_S
    return max((sum(1 for u in ticks if t <= u < t + per_hour) for t in ticks), default=0)


def reversals(values: list[int], within_s: int = 600) -> int:
    """Scale-ups followed by a scale-down (or the reverse) within ``within_s``: flapping."""
    changes = _changes(values)
    return sum(1 for (i, d), (j, e) in zip(changes, changes[1:]) if d != e and (j - i) * TICK_S <= within_s)


def summarize(series: dict, partitions: int) -> dict:
    fresh, lag = series["freshness_s"], series["lag_records"]
    peak_i = max(range(len(series["rps"])), key=series["rps"].__getitem__)
    after_peak = lag[peak_i:]
    last_hour = 3600 // TICK_S
    return {
        "collectors": {
            "min": min(series["collectors"]),
            "max": max(series["collectors"]),
            "scale_changes": len(_changes(series["collectors"])),
            "max_changes_per_hour": max_changes_per_hour(series["collectors"]),
            "reversals_within_10min": reversals(series["collectors"]),
        },
        "processors": {
            "min": min(series["processors"]),
            "max": max(series["processors"]),
            "partitions": partitions,
            "scale_changes": len(_changes(series["processors"])),
            "max_changes_per_hour": max_changes_per_hour(series["processors"]),
            "reversals_within_10min": reversals(series["processors"]),
        },
        "max_collector_utilisation": round(max(series["collector_util"]), 3),
        "rejected_requests": round(sum(series["rejected_rps"]) * TICK_S),
        "max_latency_p99_ms_model": round(max(series["latency_p99_ms"]), 1),
        "max_freshness_s": round(max(fresh), 2),
        "max_lag_records": round(max(lag)),
        "minutes_freshness_over_2s": round(sum(TICK_S for f in fresh if f > 2) / 60, 1),
        "lag_records_after_peak_min": round(min(after_peak)),
        "lag_records_last_hour_max": round(max(lag[-last_hour:])),
        "backlog_events_end": round(series["backlog_events"][-1]),
        "backlog_events_last_hour_max": round(max(series["backlog_events"][-last_hour:])),
    }
