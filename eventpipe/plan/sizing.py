"""Sizing: replicas, partitions, lag threshold and disks that follow from a load and measured capacities."""

from __future__ import annotations

import dataclasses
import math

from eventpipe.plan.assumptions import (
    BROKER_CPU,
    COLLECTOR_CPU,
    COMMIT_INTERVAL_S,
    DLQ_FRACTION,
    HA_PROCESSORS,
    KAFKA_REPLICATION,
    NICE_PARTITIONS,
    PROCESSOR_CPU,
    PROCESSOR_CPU_TARGET_PERCENT,
)
from eventpipe.plan.capacities import Capacities
from eventpipe.schemas.topics import DAY_MS, topic_specs
from eventpipe.settings import Settings


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
    raw, dlq = topic_specs(settings.topic_raw, settings.topic_dlq)[:2]
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
            "pod_cpu": COLLECTOR_CPU,
            "pod_capacity_rps": collector_pod_rps,
            "hpa_target_cpu_percent": round(inputs.collector_target * 100),
            "hpa_target_rps_per_pod": round(collector_target_rps),
            "replicas_at_peak": collector_peak,
            "min_replicas": collector_min,
            "max_replicas": collector_max,
        },
        "processor": {
            "pod_cpu": PROCESSOR_CPU,
            "pod_capacity_eps": processor_pod_eps,
            "replicas_at_peak": processor_peak,
            "min_replicas": processor_min,
            "max_replicas": partitions,
            "cpu_target_percent": PROCESSOR_CPU_TARGET_PERCENT,
            "lag_threshold_records": lag_threshold,
            "commit_age_s": commit_age_s,
            "normal_lag_records_max": round(normal_lag),
        },
        "kafka": {
            "partitions": partitions,
            "partitions_needed": partitions_needed,
            "topics_py_partitions": raw.partitions,
            "raw_retention_days": raw_days,
            "replication": KAFKA_REPLICATION,
            "brokers": brokers,
            "brokers_for_disk": brokers_for_disk,
            "brokers_for_write": brokers_for_write,
            "write_mb_s_with_replication": round(write_mb_s, 1),
            "broker_write_mb_s": round(broker_write_mb_s, 1),
            "disk_total_tb": round(kafka_total / 1e12, 2),
            "disk_tb_per_retention_day": round(kafka_total / (raw_days + DLQ_FRACTION * dlq_days) / 1e12, 2),
            "disk_per_broker_gib": math.ceil(kafka_total / brokers / 2**30),
        },
        "clickhouse": {
            "retention_days": inputs.retention_days,
            "shards": shards,
            "replicas": 2,
            "data_per_day_gb": round(day * cap.clickhouse_bytes_per_event / 1e9, 1),
            "disk_per_replica_set_tb": round(ch_per_replica / 1e12, 2),
            "disk_per_node_gib": math.ceil(ch_per_replica / shards / 2**30),
        },
    }


def events_per_record(
    rps: float, events_per_request: float, collectors: int, partitions: int, window_ms: float
) -> float:
    """A bundle holds the requests one collector accepted for one partition within one window."""
    bundles_per_s = max(1, collectors) * partitions * 1000.0 / window_ms
    return events_per_request * max(1.0, rps / bundles_per_s)
