"""The numbers `eventpipe plan` assumes where nothing is measured, each with where it comes from.

Fallback capacities (used only when no benchmark result has the number, and then said so), pod sizes,
the autoscaler behaviour written in deploy/k8s (tests/test_k8s.py checks they agree) and the model
constants a cluster adds (pod start-up, rebalance, metric delays).
"""

from __future__ import annotations

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
