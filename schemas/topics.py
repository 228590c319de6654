"""Kafka topic specifications: name, partitions, retention and compression.

The local broker launcher creates these, and the Kubernetes KafkaTopic
resources are meant to mirror them, so they are declared once here.
"""

from __future__ import annotations

import dataclasses

DAY_MS = 24 * 3600 * 1000


@dataclasses.dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    compression: str = "producer"
    max_message_bytes: int = 1024 * 1024
    cleanup_policy: str = "delete"

    def configs(self) -> dict[str, str]:
        out = {
            "retention.ms": str(self.retention_ms),
            "compression.type": self.compression,
            "max.message.bytes": str(self.max_message_bytes),
        }
        if self.cleanup_policy != "delete":
            out["cleanup.policy"] = self.cleanup_policy
        return out


QUOTA_TOPIC = "events.quota"


def topic_specs(raw: str = "events.raw", dlq: str = "events.dlq") -> list[TopicSpec]:
    return [
        # Partitions bound processor parallelism; 12 divides evenly among 1,2,3,4,6,12 processors.
        TopicSpec(raw, partitions=12, retention_ms=7 * DAY_MS),
        TopicSpec(dlq, partitions=3, retention_ms=30 * DAY_MS),
        # Per-project quota usage, one record per (project, period, collector process) holding its running
        # counts (ingest/quotas.py): compaction keeps the latest of each, retention drops past periods.
        TopicSpec(QUOTA_TOPIC, partitions=1, retention_ms=3 * DAY_MS, cleanup_policy="compact,delete"),
    ]
