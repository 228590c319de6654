"""The collector's Prometheus metrics, with conventional names and units (Prometheus' naming rules).

The three updated on every request (requests, events, request duration) are plain numbers in dicts and
lists, handed to prometheus_client only when /metrics is scraped (`HotCounter`, `HotHistogram`): its own
Counter and Histogram take a lock and walk label tuples on every update (~2 µs a request in all), and the
collector's event loop is their only writer. Same names, labels and buckets on /metrics as before.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily


class HotCounter:
    """A labelled counter for the hot path: ``values[labels] += n``; exported at scrape time."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]):
        self._name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def collect(self):
        family = CounterMetricFamily(self._name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        yield family


class HotHistogram:
    """A histogram for the hot path: one bucket count and the sum per observation; exported at scrape time."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]):
        self._name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value equal to a bound counts in its bucket
        self.sum += value

    def collect(self):
        cumulative, buckets = 0, []
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        yield HistogramMetricFamily(self._name, self.documentation, buckets=buckets, sum_value=self.sum)


class _Hot:
    """The hot metrics as one prometheus_client collector."""

    def __init__(self, *metrics):
        self.metrics = metrics

    def collect(self):
        for metric in self.metrics:
            yield from metric.collect()


REQUESTS = HotCounter(
    "eventpipe_collector_requests_total", "HTTP requests answered, by path and status code", ("path", "code")
)
EVENTS = HotCounter("eventpipe_collector_events_total", "Events in answered requests, by outcome", ("outcome",))
REQUEST_SECONDS = HotHistogram(
    "eventpipe_collector_request_duration_seconds",
    "Time from body read to response, including the Kafka ack",
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REGISTRY.register(_Hot(REQUESTS, EVENTS, REQUEST_SECONDS))
for _outcome in ("accepted", "rejected", "unavailable"):
    EVENTS.inc((_outcome,), 0)

REJECTED = Counter("eventpipe_collector_rejected_requests_total", "Requests refused, by reason code", ["reason"])
BUNDLES = Counter("eventpipe_collector_bundles_total", "Kafka records (bundles) sent, by outcome", ["outcome"])
BUNDLE_BYTES = Histogram(
    "eventpipe_collector_bundle_bytes", "Encoded size of a bundle", buckets=(1e3, 4e3, 16e3, 64e3, 256e3, 512e3, 1e6)
)
RECORD_BYTES = Histogram(
    "eventpipe_collector_record_batch_bytes",
    "Bytes of a bundle's Kafka record batch as sent (after compression, if any)",
    buckets=(500, 1e3, 4e3, 16e3, 64e3, 256e3, 512e3, 1e6),
)
BUNDLE_REQUESTS = Histogram(
    "eventpipe_collector_bundle_requests", "Requests per bundle", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
ACK_SECONDS = Histogram(
    "eventpipe_collector_kafka_ack_seconds",
    "Time from bundle close to broker ack",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
KAFKA_REACHABLE = Gauge(
    "eventpipe_collector_kafka_reachable", "1 while the broker answers metadata requests (what /readyz reports), else 0"
)

_rejected: dict = {}


def rejected_counter(reason: str):
    """REJECTED's child for ``reason`` (a fixed set of codes), bound on first use."""
    child = _rejected.get(reason)
    if child is None:
        child = _rejected[reason] = REJECTED.labels(reason)
    return child
