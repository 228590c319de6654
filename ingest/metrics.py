"""The collector's Prometheus metrics, with conventional names and units (DESIGN.md §8)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("eventpipe_collector_requests_total", "HTTP requests answered, by path and status code",
                   ["path", "code"])
EVENTS = Counter("eventpipe_collector_events_total", "Events in answered requests, by outcome",
                 ["outcome"])
REJECTED = Counter("eventpipe_collector_rejected_requests_total", "Requests refused, by reason code", ["reason"])
REQUEST_SECONDS = Histogram(
    "eventpipe_collector_request_duration_seconds", "Time from body read to response, including the Kafka ack",
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BUNDLES = Counter("eventpipe_collector_bundles_total", "Kafka records (bundles) sent, by outcome", ["outcome"])
BUNDLE_BYTES = Histogram("eventpipe_collector_bundle_bytes", "Encoded size of a bundle",
                         buckets=(1e3, 4e3, 16e3, 64e3, 256e3, 512e3, 1e6))
RECORD_BYTES = Histogram("eventpipe_collector_record_batch_bytes",
                         "Bytes of a bundle's Kafka record batch as sent (after compression, if any)",
                         buckets=(500, 1e3, 4e3, 16e3, 64e3, 256e3, 512e3, 1e6))
BUNDLE_REQUESTS = Histogram("eventpipe_collector_bundle_requests", "Requests per bundle",
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
ACK_SECONDS = Histogram("eventpipe_collector_kafka_ack_seconds", "Time from bundle close to broker ack",
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0))
KAFKA_REACHABLE = Gauge("eventpipe_collector_kafka_reachable",
                        "1 while the broker answers metadata requests (what /readyz reports), else 0")


# Labelled children bound once: ``labels()`` per request cost ~1 µs (a lock, a tuple, a dict lookup) on the hot path.
ACCEPTED_EVENTS = EVENTS.labels("accepted")
REJECTED_EVENTS = EVENTS.labels("rejected")
UNAVAILABLE_EVENTS = EVENTS.labels("unavailable")
_requests: dict = {}
_rejected: dict = {}


def request_counter(path: str, code: int):
    """REQUESTS' child for (path, code), bound on first use (paths are the route table's, or "other")."""
    child = _requests.get((path, code))
    if child is None:
        child = _requests[(path, code)] = REQUESTS.labels(path, str(code))
    return child


def rejected_counter(reason: str):
    child = _rejected.get(reason)
    if child is None:
        child = _rejected[reason] = REJECTED.labels(reason)
    return child
