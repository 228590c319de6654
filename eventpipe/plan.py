"""``eventpipe plan``: size a Kubernetes deployment from measured numbers, then simulate its autoscalers.

Why this exists: replica counts, partitions, lag thresholds and disks in
``deploy/k8s/overlays/production`` must follow from measured per-core capacity,
not from guesses (DESIGN.md section 7). Given the peak request rate and the daily
volume, this prints the sizing with every assumption and where it came from
(a benchmark JSON in ``benchmarks/results/`` or a documented fallback), then
replays 24 hours of a daily traffic curve through a model of the Kubernetes HPA
controller (collectors) and of KEDA's Kafka lag scaler (processors) to show the
chosen bounds neither flap nor let lag run away. Pure Python; matplotlib is
needed only for the plot.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import random
import sys
from pathlib import Path

from eventpipe.settings import Settings
from eventpipe.schemas.topics import DAY_MS, topic_specs

# --- assumptions --------------------------------------------------------------------------

# Used only when no benchmark result provides the number (and then said so in the output).
FALLBACKS = {
    "collector_rps_per_core": 15_000.0,  # issue 5 target: 10-event batches, acks=all, one core
    "processor_eps_per_core": 150_000.0,  # issue 5 target: Kafka -> ClickHouse with rollups
    "clickhouse_bytes_per_event": 60.0,  # compressed on disk, events table
    "kafka_bytes_per_event": 400.0,  # record bytes per event on a broker's disk (one replica)
    # replicated bytes a broker appends per CPU-second (150 MB/s per 2-core broker before it was measured)
    "kafka_broker_write_mb_s_per_core": 75.0,
}
# Benchmark JSON keys that provide each number directly (searched at any depth).
RESULT_KEYS = {
    "collector_rps_per_core": ("collector_requests_per_sec_per_core",),
    "processor_eps_per_core": ("processor_events_per_sec_per_core",),
    "clickhouse_bytes_per_event": ("clickhouse_bytes_per_event",),
    "kafka_bytes_per_event": ("kafka_bytes_per_event",),
    "kafka_broker_write_mb_s_per_core": ("kafka_broker_write_mb_s_per_core",),  # benchmarks/cluster.py
}
COLLECTOR_CPU = 1.0  # cores per collector pod (one granian worker), deploy/k8s requests
PROCESSOR_CPU = 1.0  # cores per processor pod (one faust worker)
BROKER_CPU = 2.0  # cores a broker pod requests (deploy/k8s/base/kafka/nodepools.yaml)
KAFKA_REPLICATION = 3
COMMIT_INTERVAL_S = 1.0  # faust broker_commit_interval in processors/app.py
NICE_PARTITIONS = (12, 24, 36, 48, 60, 72, 96, 120, 144, 180, 240, 360)  # many divisors
HA_PROCESSORS = 2  # a processor pod can die without freshness going to zero
DLQ_FRACTION = 0.001  # share of events expected on events.dlq

# The autoscaler behaviour written in deploy/k8s (tests/test_k8s.py checks they agree).
TICK_S = 15  # HPA sync period and KEDA pollingInterval
TOLERANCE = 0.1
SCALE_UP_WINDOW_S = 0
SCALE_DOWN_WINDOW_S = 300
SCALE_UP_PERCENT, SCALE_UP_PODS = 100, 4
SCALE_DOWN_PERCENT = 100
# Processors (KEDA ScaledObject behaviour): every replica change is a consumer-group rebalance
# that pauses consumption and spikes the lag; a 60 s scale-up window ignores those spikes
# (with 0 s each rebalance triggers the next scale-up: the simulation flaps).
PROCESSOR_SCALE_UP_WINDOW_S = 60
PROCESSOR_CPU_TARGET_PERCENT = 70
# Model constants (not measured here: there is no cluster): the times a cluster adds.
COLLECTOR_START_S = 20  # pod scheduled -> /readyz (image cached, Kafka connect)
PROCESSOR_START_S = 30  # pod scheduled -> consuming (faust start + join)
REBALANCE_S = 10  # consumer-group stop-the-world on each membership change
METRICS_DELAY_TICKS = 2  # CPU/RPS seen by the HPA are ~30 s old (scrape + rate window)
LATENCY_SLO_MS = 50.0
ACK_PATH_MS = 10.0  # bundle window (5 ms) + broker ack with acks=all
SERVICE_P99_MS = 3.0  # bare-server p99 on one core (benchmarks/results/servers.json)


@dataclasses.dataclass
class Capacities:
    collector_rps_per_core: float
    processor_eps_per_core: float
    clickhouse_bytes_per_event: float
    kafka_bytes_per_event: float
    sources: dict[str, str]
    bare_server_rps_per_core: float | None = None
    kafka_broker_write_mb_s_per_core: float = FALLBACKS["kafka_broker_write_mb_s_per_core"]


def _find_key(doc, keys: tuple[str, ...]):
    if isinstance(doc, dict):
        for key in keys:
            if isinstance(doc.get(key), (int, float)) and doc[key] > 0:
                return doc[key]
        values = doc.values()
    elif isinstance(doc, list):
        values = doc
    else:
        return None
    for value in values:
        found = _find_key(value, keys)
        if found is not None:
            return found
    return None


def _scenario_value(doc, field: str):
    """Scenario-style results: {"scenario": "collector", "requests_per_sec": N, "cores": 1}."""
    if not isinstance(doc, dict):
        return None
    cores = doc.get("cores") or 1
    if field == "collector_rps_per_core" and doc.get("scenario") == "collector":
        value = doc.get("requests_per_sec") or (doc.get("median") or {}).get("requests_per_sec")
    elif field == "processor_eps_per_core" and doc.get("scenario") == "processor":
        value = doc.get("events_per_sec") or (doc.get("median") or {}).get("events_per_sec")
    else:
        return None
    return value / cores if isinstance(value, (int, float)) and value > 0 else None


def load_capacities(results_dir: Path) -> Capacities:
    """Measured numbers from the newest benchmark JSON that has them, else the fallbacks."""
    files = sorted(Path(results_dir).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if Path(results_dir).is_dir() else []
    docs = []
    for path in files:
        try:
            docs.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    values, sources = {}, {}
    for field, keys in RESULT_KEYS.items():
        for path, doc in docs:
            value = _find_key(doc, keys) or _scenario_value(doc, field)
            if value is not None:
                values[field], sources[field] = float(value), f"measured: {path}"
                break
        else:
            values[field], sources[field] = FALLBACKS[field], "FALLBACK (no benchmark result has it)"
    bare = None
    for _, doc in docs:
        rsgi = (doc.get("candidates") or {}).get("granian-rsgi") if isinstance(doc, dict) else None
        if rsgi:
            bare = (rsgi.get("median") or {}).get("requests_per_sec")
            break
    return Capacities(**values, sources=sources, bare_server_rps_per_core=bare)


# --- sizing -------------------------------------------------------------------------------

@dataclasses.dataclass
class Inputs:
    peak_rps: float
    events_per_request: float = 10
    events_per_day: float | None = None
    retention_days: float = 30  # ClickHouse raw events
    collector_target: float = 0.6  # HPA target utilisation
    surge: float = 2.0  # max replicas cover this multiple of the peak
    zones: int = 3
    max_disk_per_node_tb: float = 8.0
    free_disk_fraction: float = 0.3  # kept free on brokers and ClickHouse (merges, rebalancing)

    @property
    def peak_eps(self) -> float:
        return self.peak_rps * self.events_per_request

    @property
    def daily_events(self) -> float:
        return self.events_per_day if self.events_per_day else self.peak_eps * 86400 * 0.4


def _nice_partitions(needed: int, floor: int) -> int:
    for n in NICE_PARTITIONS:
        if n >= max(needed, floor):
            return n
    return max(needed, floor)


def _balanced_brokers(needed: int, replicas_total: int) -> int:
    """The smallest broker count >= needed that holds the same number of partition replicas each."""
    for brokers in range(needed, 2 * needed + 1):
        if replicas_total % brokers == 0:
            return brokers
    return needed


def size(inputs: Inputs, cap: Capacities, settings: Settings | None = None) -> dict:
    """Replicas, partitions, lag threshold and disks for the given load and capacities."""
    settings = settings or Settings()
    raw, dlq = topic_specs(settings.topic_raw, settings.topic_dlq)
    collector_pod_rps = cap.collector_rps_per_core * COLLECTOR_CPU
    collector_target_rps = collector_pod_rps * inputs.collector_target
    collector_peak = math.ceil(inputs.peak_rps / collector_target_rps)
    collector_min = max(inputs.zones, 2)
    collector_max = max(collector_min + 1, math.ceil(inputs.surge * inputs.peak_rps / collector_target_rps))

    processor_pod_eps = cap.processor_eps_per_core * PROCESSOR_CPU
    processor_target_eps = processor_pod_eps * PROCESSOR_CPU_TARGET_PERCENT / 100
    processor_peak = math.ceil(inputs.peak_eps / processor_target_eps)
    # Each processor owns whole partitions, so between the even splits (12 partitions: 1, 2, 3,
    # 4, 6, 12 replicas) the busiest pod carries ceil(P/R)/(P/R) times the average: up to 1.25x
    # while R <= P/2, up to 1.83x above. Twice the surge need keeps the group in the first range.
    partitions_needed = 2 * math.ceil(inputs.surge * inputs.peak_eps / processor_target_eps)
    partitions = _nice_partitions(partitions_needed, raw.partitions)
    processor_min = min(partitions, max(HA_PROCESSORS, math.ceil(processor_peak / 4)))

    # KEDA's lag is committed offsets, i.e. records, and a record is a bundle: one per collector,
    # partition and bundle window at most. So a group that keeps up shows a lag of at most
    # collectors x partitions x (1000 / window) records/s x commit age, whatever the event rate:
    # record lag saturates with load and cannot size processors. Throughput is tracked by the
    # ScaledObject's CPU trigger; the lag trigger is set so that only a backlog beyond that
    # normal lag (a processor or ClickHouse outage, an undersized group) scales up.
    commit_age_s = settings.processor_batch_seconds + COMMIT_INTERVAL_S / 2
    normal_lag = collector_max * partitions * 1000.0 / settings.bundle_window_ms * commit_age_s
    lag_threshold = math.ceil(normal_lag / processor_min)

    day = inputs.daily_events
    raw_days = raw.retention_ms / DAY_MS
    dlq_days = dlq.retention_ms / DAY_MS
    kafka_logical = day * cap.kafka_bytes_per_event * (raw_days + DLQ_FRACTION * dlq_days)
    kafka_total = kafka_logical * KAFKA_REPLICATION / (1 - inputs.free_disk_fraction)
    write_mb_s = inputs.peak_eps * cap.kafka_bytes_per_event * KAFKA_REPLICATION / 1e6
    max_node = inputs.max_disk_per_node_tb * 1e12
    brokers_for_disk = math.ceil(kafka_total / max_node)
    broker_write_mb_s = cap.kafka_broker_write_mb_s_per_core * BROKER_CPU  # produce + replication per broker
    brokers_for_write = math.ceil(write_mb_s / broker_write_mb_s)
    brokers = _balanced_brokers(max(3, brokers_for_disk, brokers_for_write), partitions * KAFKA_REPLICATION)

    ch_logical = day * cap.clickhouse_bytes_per_event * inputs.retention_days * 1.05  # + rollups
    ch_per_replica = ch_logical / (1 - inputs.free_disk_fraction)
    shards = max(1, math.ceil(ch_per_replica / max_node))
    return {
        "collector": {
            "pod_cpu": COLLECTOR_CPU, "pod_capacity_rps": collector_pod_rps,
            "hpa_target_cpu_percent": round(inputs.collector_target * 100),
            "hpa_target_rps_per_pod": round(collector_target_rps),
            "replicas_at_peak": collector_peak, "min_replicas": collector_min, "max_replicas": collector_max,
        },
        "processor": {
            "pod_cpu": PROCESSOR_CPU, "pod_capacity_eps": processor_pod_eps,
            "replicas_at_peak": processor_peak, "min_replicas": processor_min, "max_replicas": partitions,
            "cpu_target_percent": PROCESSOR_CPU_TARGET_PERCENT,
            "lag_threshold_records": lag_threshold, "commit_age_s": commit_age_s,
            "normal_lag_records_max": round(normal_lag),
        },
        "kafka": {
            "partitions": partitions, "partitions_needed": partitions_needed,
            "topics_py_partitions": raw.partitions, "raw_retention_days": raw_days,
            "replication": KAFKA_REPLICATION, "brokers": brokers,
            "brokers_for_disk": brokers_for_disk, "brokers_for_write": brokers_for_write,
            "write_mb_s_with_replication": round(write_mb_s, 1),
            "broker_write_mb_s": round(broker_write_mb_s, 1),
            "disk_total_tb": round(kafka_total / 1e12, 2),
            "disk_tb_per_retention_day": round(kafka_total / (raw_days + DLQ_FRACTION * dlq_days) / 1e12, 2),
            "disk_per_broker_gib": math.ceil(kafka_total / brokers / 2**30),
        },
        "clickhouse": {
            "retention_days": inputs.retention_days, "shards": shards, "replicas": 2,
            "data_per_day_gb": round(day * cap.clickhouse_bytes_per_event / 1e9, 1),
            "disk_per_replica_set_tb": round(ch_per_replica / 1e12, 2),
            "disk_per_node_gib": math.ceil(ch_per_replica / shards / 2**30),
        },
    }


def events_per_record(rps: float, events_per_request: float, collectors: int, partitions: int,
                      window_ms: float) -> float:
    """A bundle holds the requests one collector accepted for one partition within one window."""
    bundles_per_s = max(1, collectors) * partitions * 1000.0 / window_ms
    return events_per_request * max(1.0, rps / bundles_per_s)


# --- traffic ------------------------------------------------------------------------------

def daily_curve(peak: float, mean_ratio: float, peak_hour: float = 20.0, seed: int = 7,
                step_s: int = TICK_S) -> list[float]:
    """A day of load (one value per step) peaking at ``peak`` with the given mean/peak ratio.

    Shape: ``a + (1-a) * ((1 + cos)/2) ** p``, the smallest power p whose floor a is >= 10 %
    of the peak, plus 3 % smoothed noise (seeded), clipped at the peak.
    """
    if not 0 < mean_ratio <= 1:
        raise ValueError(f"events/day implies a mean/peak ratio of {mean_ratio:.2f}; it must be in (0, 1]")
    floor, power = 0.02, 8
    for p in range(1, 9):
        mean_g = math.comb(2 * p, p) / 4 ** p
        a = (mean_ratio - mean_g) / (1 - mean_g) if mean_g < 1 else 1.0
        if a >= 0.1 or (p == 8 and a > 0):
            floor, power = min(a, 1.0), p
            break
    rng = random.Random(seed)
    noise, out = 0.0, []
    for i in range(86400 // step_s):
        hour = i * step_s / 3600
        g = ((1 + math.cos(2 * math.pi * (hour - peak_hour) / 24)) / 2) ** power
        noise = 0.9 * noise + 0.1 * rng.gauss(0, 0.3)  # ~3 % std, minutes-long correlation
        out.append(min(peak, peak * (floor + (1 - floor) * g) * (1 + noise)))
    return out


# --- autoscalers --------------------------------------------------------------------------

@dataclasses.dataclass
class HPA:
    """The replica calculation of the Kubernetes HPA controller (autoscaling/v2) for one target.

    Per metric: usage ratio = current / target; within the tolerance nothing changes, else
    ceil(ratio x pods), where pods still starting count as zero usage when scaling up.
    The largest proposal across metrics wins; it is then stabilised (scale up to the minimum
    over the up window, down to the maximum over the down window), limited by the rate
    policies (selectPolicy Max) and clamped to [min, max].
    """

    min_replicas: int
    max_replicas: int
    tolerance: float = TOLERANCE
    up_window_s: int = SCALE_UP_WINDOW_S
    down_window_s: int = SCALE_DOWN_WINDOW_S
    up_percent: int = SCALE_UP_PERCENT
    up_pods: int = SCALE_UP_PODS
    down_percent: int = SCALE_DOWN_PERCENT
    history: collections.deque = dataclasses.field(default_factory=collections.deque)

    def pods_metric(self, current: int, ready: int, usage_total: float, target_per_pod: float) -> int:
        """A Resource (Utilization) or Pods (AverageValue) metric averaged over ready pods."""
        if ready <= 0:
            return current
        ratio = usage_total / ready / target_per_pod
        if abs(ratio - 1) <= self.tolerance:
            return current
        unready = max(0, current - ready)
        if ratio > 1 and unready:
            ratio_all = usage_total / (ready + unready) / target_per_pod
            if ratio_all <= 1 or abs(ratio_all - 1) <= self.tolerance:
                return current
            return math.ceil(ratio_all * (ready + unready))
        return math.ceil(ratio * ready)

    def external_metric(self, current: int, value: float, target_average: float) -> int:
        """An External metric with an AverageValue target (what KEDA's ScaledObject creates)."""
        ratio = value / (target_average * max(current, 1))
        if abs(ratio - 1) <= self.tolerance:
            return current
        return math.ceil(value / target_average)

    def decide(self, now: float, current: int, proposal: int) -> int:
        up = down = proposal
        for when, rec in self.history:
            if when > now - self.up_window_s:
                up = min(up, rec)
            if when > now - self.down_window_s:
                down = max(down, rec)
        self.history.append((now, proposal))
        while self.history and self.history[0][0] <= now - max(self.up_window_s, self.down_window_s):
            self.history.popleft()
        desired = max(current, up) if current < up else current
        desired = min(desired, down)
        if desired > current:
            limit = max(math.ceil(current * (1 + self.up_percent / 100)), current + self.up_pods)
            desired = min(desired, limit)
        elif desired < current:
            desired = max(desired, int(current * (1 - self.down_percent / 100)))
        return max(self.min_replicas, min(self.max_replicas, desired))


class Pods:
    """Replicas of a Deployment: a new pod serves only after its start-up time."""

    def __init__(self, replicas: int, start_s: float):
        self.start_s = start_s
        self.ready_at = [-math.inf] * replicas

    @property
    def replicas(self) -> int:
        return len(self.ready_at)

    def ready(self, now: float) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def scale(self, now: float, replicas: int) -> None:
        if replicas > self.replicas:
            self.ready_at += [now + self.start_s] * (replicas - self.replicas)
        elif replicas < self.replicas:
            self.ready_at = sorted(self.ready_at)[:replicas]  # newest (least ready) go first


def simulate(inputs: Inputs, cap: Capacities, sizing: dict, settings: Settings | None = None,
             seed: int = 7, warmup_s: int = 7200, peak_factor: float = 1.0) -> dict:
    """24 h of the daily curve (scaled by ``peak_factor``) through both autoscalers.

    Returns per-tick series and a summary. ``peak_factor`` = the surge the max replicas are
    sized for exercises the autoscalers up to their bounds.
    """
    settings = settings or Settings()
    col, proc, kafka = sizing["collector"], sizing["processor"], sizing["kafka"]
    partitions = kafka["partitions"]
    rps_day = [x * peak_factor for x in
               daily_curve(inputs.peak_rps, inputs.daily_events / (inputs.peak_eps * 86400), seed=seed)]
    n = len(rps_day)
    warm = warmup_s // TICK_S
    hpa_c = HPA(col["min_replicas"], col["max_replicas"])
    hpa_p = HPA(proc["min_replicas"], proc["max_replicas"], up_window_s=PROCESSOR_SCALE_UP_WINDOW_S)
    collectors = Pods(col["min_replicas"], COLLECTOR_START_S)
    processors = Pods(proc["min_replicas"], PROCESSOR_START_S)
    backlog = 0.0  # events waiting beyond the in-flight micro-batch
    observed = collections.deque([(0.0, 0.0, 0.0)] * METRICS_DELAY_TICKS, maxlen=METRICS_DELAY_TICKS)
    last_ready_p = processors.ready(0)
    series = {k: [] for k in ("t_h", "rps", "eps", "backlog_events", "collectors", "collectors_ready", "processors",
                              "processors_ready", "lag_records", "freshness_s", "collector_util",
                              "processor_util", "latency_p99_ms", "rejected_rps")}
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
            hpa_c.pods_metric(collectors.replicas, ready_c, cpu_busy * COLLECTOR_CPU,
                              COLLECTOR_CPU * col["hpa_target_cpu_percent"] / 100),
            hpa_c.pods_metric(collectors.replicas, ready_c, rps_seen, col["hpa_target_rps_per_pod"]),
        )
        collectors.scale(now, hpa_c.decide(now, collectors.replicas, want_c))
        # KEDA: CPU trigger and the total lag in records; the HPA it creates takes the larger
        # proposal. allowIdleConsumers is true and maxReplicaCount = partitions is the cap: with
        # false KEDA caps the lag at partitions x threshold, and from P-1 replicas that is a ratio
        # of P/(P-1), inside the HPA's 0.1 tolerance for P >= 11, so the last replica never comes.
        keda_value = lag_records
        want_p = max(
            hpa_p.pods_metric(processors.replicas, ready_p, cpu_busy_p * PROCESSOR_CPU,
                              PROCESSOR_CPU * proc["cpu_target_percent"] / 100),
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
        "collectors": {"min": min(series["collectors"]), "max": max(series["collectors"]),
                       "scale_changes": len(_changes(series["collectors"])),
                       "max_changes_per_hour": max_changes_per_hour(series["collectors"]),
                       "reversals_within_10min": reversals(series["collectors"])},
        "processors": {"min": min(series["processors"]), "max": max(series["processors"]),
                       "partitions": partitions,
                       "scale_changes": len(_changes(series["processors"])),
                       "max_changes_per_hour": max_changes_per_hour(series["processors"]),
                       "reversals_within_10min": reversals(series["processors"])},
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


# --- output -------------------------------------------------------------------------------

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
        ax.axhline(sizing["kafka"]["partitions"], color="tab:red", ls="--", lw=0.8,
                   label="partitions = processor max")
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
        ax.plot(t, [100 * (LATENCY_SLO_MS - x) / LATENCY_SLO_MS for x in series["latency_p99_ms"]],
                color="tab:red", lw=0.8, label="p99 latency headroom to the 50 ms SLO % (model)")
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
    lines = ["eventpipe plan", "",
             f"Inputs: peak {inputs.peak_rps:,.0f} requests/s x {inputs.events_per_request:g} events "
             f"= {inputs.peak_eps:,.0f} events/s; {inputs.daily_events:.3g} events/day"
             + ("" if inputs.events_per_day else " (not given: assumed mean/peak 0.4)")
             + f" (mean/peak {inputs.daily_events / 86400 / inputs.peak_eps:.2f}); "
               f"ClickHouse retention {inputs.retention_days:g} days", "",
             "Assumptions (per core):"]
    for field, label in (("collector_rps_per_core", "collector requests/s"),
                         ("processor_eps_per_core", "processor events/s"),
                         ("clickhouse_bytes_per_event", "ClickHouse bytes/event"),
                         ("kafka_bytes_per_event", "Kafka bytes/event"),
                         ("kafka_broker_write_mb_s_per_core", "Kafka MB/s/broker core")):
        lines.append(f"  {label:<24}{getattr(cap, field):>12,.0f}   {cap.sources[field]}")
    if cap.bare_server_rps_per_core:
        lines.append(f"  (bare-server ceiling {cap.bare_server_rps_per_core:,.0f} requests/s/core "
                     "measured in benchmarks/results/servers.json; not used as collector capacity)")
    lines += [f"  targets: collector CPU {c['hpa_target_cpu_percent']} %, processor "
              f"{PROCESSOR_CPU_TARGET_PERCENT} %; max replicas cover {inputs.surge:g}x the peak; "
              f"{inputs.zones} zones; <= {inputs.max_disk_per_node_tb:g} TB per node, "
              f"{inputs.free_disk_fraction:.0%} kept free", ""]
    rows = [("component", "min", "needed at peak", "max", "per pod", "autoscaling"),
            ("collector", c["min_replicas"], c["replicas_at_peak"], c["max_replicas"],
             f"{c['pod_cpu']:g} CPU",
             f"HPA cpu {c['hpa_target_cpu_percent']}% / {c['hpa_target_rps_per_pod']:,} req/s"),
            ("processor", p["min_replicas"], p["replicas_at_peak"], p["max_replicas"],
             f"{p['pod_cpu']:g} CPU",
             f"KEDA cpu {p['cpu_target_percent']}% + lag {p['lag_threshold_records']:,} records"),
            ("kafka broker", k["brokers"], k["brokers"], k["brokers"],
             f"{k['disk_per_broker_gib']:,} GiB", f"RF {k['replication']}, {k['partitions']} partitions"),
            ("clickhouse", ch["shards"] * ch["replicas"], ch["shards"] * ch["replicas"],
             ch["shards"] * ch["replicas"], f"{ch['disk_per_node_gib']:,} GiB",
             f"{ch['shards']} shard(s) x {ch['replicas']} replicas")]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        lines.append("  " + "  ".join(str(v).ljust(w) if i in (0, 4, 5) else str(v).rjust(w)
                                      for i, (v, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    lines += ["",
              f"Partitions of events.raw: {k['partitions']} (2x the processors a {inputs.surge:g}x peak needs: "
              f"{k['partitions_needed']}; schemas/topics.py has {k['topics_py_partitions']})"
              + ("" if k["partitions"] == k["topics_py_partitions"] else
                 "  -> set it in deploy/k8s/overlays/production (local and CI keep schemas/topics.py's)"),
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
              "so it fires on backlog only"]
    lines += ["", f"Autoscaler simulation over 24 h (HPA tolerance {TOLERANCE}, stabilisation up "
              f"{SCALE_UP_WINDOW_S} s / down {SCALE_DOWN_WINDOW_S} s; processors: KEDA CPU + Kafka lag, "
              f"up window {PROCESSOR_SCALE_UP_WINDOW_S} s):"]
    for title, summary in summaries.items():
        sc, sp = summary["collectors"], summary["processors"]
        lines += [f"  {title}:",
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
                  f"over 2 s for {summary['minutes_freshness_over_2s']:g} min (rebalance pauses)"]
    lines.append("  (a model, not a cluster: pod start-up, rebalance and metric delays are the assumptions "
                 "at the top of eventpipe/plan.py)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipe plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak-rps", type=float, default=15000, help="peak collector requests/s (default 15000)")
    parser.add_argument("--events-per-request", type=float, default=10)
    parser.add_argument("--events-per-day", type=float, help="daily volume (default: peak x 86400 x 0.4)")
    parser.add_argument("--retention-days", type=float, default=30, help="ClickHouse raw events retention")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="benchmark JSON dir")
    parser.add_argument("--out", type=Path, default=Path("deploy/k8s/plan"), help="where plan.png/plan.json go")
    parser.add_argument("--surge", type=float, default=2.0, help="max replicas cover this multiple of the peak")
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--max-disk-per-node-tb", type=float, default=8.0)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = Inputs(peak_rps=args.peak_rps, events_per_request=args.events_per_request,
                    events_per_day=args.events_per_day, retention_days=args.retention_days,
                    surge=args.surge, zones=args.zones, max_disk_per_node_tb=args.max_disk_per_node_tb)
    if inputs.peak_rps <= 0 or inputs.events_per_request <= 0:
        print("eventpipe plan: --peak-rps and --events-per-request must be positive", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    cap = load_capacities(args.results)
    sizing = size(inputs, cap, settings)
    runs = {"planned day (peak 1x)": 1.0, f"surge day (peak {inputs.surge:g}x)": inputs.surge}
    try:
        sims = {title: simulate(inputs, cap, sizing, settings, seed=args.seed, peak_factor=factor)
                for title, factor in runs.items()}
    except ValueError as exc:
        print(f"eventpipe plan: {exc}", file=sys.stderr)
        return 2
    print(report(inputs, cap, sizing, {title: sim["summary"] for title, sim in sims.items()}))
    args.out.mkdir(parents=True, exist_ok=True)
    every = 300 // TICK_S  # 5-minute points keep the JSON small
    doc = {"inputs": dataclasses.asdict(inputs), "capacities": dataclasses.asdict(cap), "sizing": sizing,
           "simulations": {title: {"peak_factor": runs[title], "summary": sim["summary"], "step_s": 300,
                                   "series": {k: [round(x, 3) for x in v[::every]]
                                              for k, v in sim["series"].items()}}
                           for title, sim in sims.items()}}
    (args.out / "plan.json").write_text(json.dumps(doc, indent=1) + "\n")
    written = [args.out / "plan.json"]
    if not args.no_plot:
        try:
            plot({title: sim["series"] for title, sim in sims.items()}, sizing, args.out / "plan.png")
            written.append(args.out / "plan.png")
        except ImportError:
            print("eventpipe plan: matplotlib is not installed; no plot (pip install matplotlib)", file=sys.stderr)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
