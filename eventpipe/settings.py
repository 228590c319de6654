"""The one place eventpipe's configuration is declared.

Every knob is a field of `Settings` with its default inline; each can be set
from the environment as ``EVENTPIPE_<FIELD>`` (upper case), e.g.
``EVENTPIPE_KAFKA_BOOTSTRAP=broker:9092``. The README's configuration table is
this class.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

PREFIX = "EVENTPIPE_"


@dataclasses.dataclass(frozen=True)
class Settings:
    # Local state: broker data and the embedded chDB store live under here.
    # Broker data, the embedded store and faust's state (relative to the working directory).
    data_dir: Path = Path(".eventpipe")
    # Where the Kafka jars resolved by mvn are cached (shared by all checkouts).
    cache_dir: Path = Path.home() / ".cache" / "eventpipe"

    # Kafka
    # Broker address; the local broker's controller listens on the next port.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Apache Kafka version the local launcher resolves with mvn.
    kafka_version: str = "4.1.1"
    # Max heap of the local broker's JVM.
    broker_heap: str = "1g"
    # Accepted request bundles (specs in schemas/topics.py).
    topic_raw: str = "events.raw"
    # Dead letters: what processors reject, with the reason.
    topic_dlq: str = "events.dlq"
    # Local Kafka nodes (`eventpipe broker --nodes`, `eventpipe up --brokers`): 1, or 3 KRaft broker+controller
    # nodes with replication factor 3 and min.insync.replicas 2; with one address in kafka_bootstrap, node i
    # listens on its port + 2 * (i - 1).
    kafka_nodes: int = 1

    # Collector
    # Collector bind address and port.
    collector_host: str = "127.0.0.1"
    collector_port: int = 8080
    # Collector worker processes (granian); scale out with more pods instead where you can.
    collector_workers: int = 1
    # "key=project,key2=project2": write keys accepted and the project each feeds (the last "=" splits a pair,
    # so keys may end in "=" padding; format and rules: eventpipe/ingest/keys.py, read with keys.load_keys).
    write_keys: str = "demo-write-key=demo"
    # Request body limit, also after gunzip (Segment: 500 KB).
    max_batch_bytes: int = 500 * 1024
    # A bundle (one Kafka record) closes after this many ms or bytes; while its partition's previous record
    # waits for the broker's ack it keeps filling and ships at the ack.
    bundle_window_ms: float = 5.0
    bundle_max_bytes: int = 768 * 1024
    # Compression of the collector's Kafka record batches: "lz4", "zstd" or "none".
    record_compression: str = "lz4"
    # More write keys, from a file: JSON {"project": ["key", …]} or lines "key=project" (docs/segment-compatibility.md).
    write_keys_file: Path | None = None
    # Segment's limits: an event (and a single-event request) and the events in one batch.
    max_event_bytes: int = 32 * 1024
    max_batch_events: int = 2500
    # Request line + headers of one request; over it the server answers 431.
    max_header_bytes: int = 32 * 1024
    # Seconds a request body may take to arrive in full, counted from its headers; past it: 408 and the
    # connection closes (a client that stalls or trickles its body holds nothing longer). 500 KB in 5 s needs
    # 0.8 Mbit/s. The rest of a refused body is read and dropped until then too (at most 1 MiB), so that its
    # client can read the answer.
    body_timeout_seconds: float = 5.0
    # A request whose Kafka ack takes longer is answered 503 + Retry-After (its record may still land).
    ack_timeout_ms: int = 2000
    # Bytes accepted but not yet acked by Kafka, per collector process; past it: 503.
    max_inflight_bytes: int = 48 * 1024 * 1024
    # Per write key and collector process, events per second (token bucket, 1 s burst); 0 = no limit.
    rate_limit_events_per_s: float = 0.0
    # Origins browsers may send from: "*" any, "" none (no CORS headers), or "https://a.example,https://b.example".
    cors_origins: str = "*"

    # Quotas (ingest/quotas.py): events per day or hour per project, shared by all collector processes
    # "project=N/day,project2=N/hour:drop": a project's limit; past it a request is refused (429 + Retry-After
    # until the period ends) or, with ":drop", answered 200 and its events dropped. Empty: no quotas.
    quotas: str = ""
    # What a quota without ":reject" or ":drop" does: "reject" or "drop".
    quota_mode: str = "reject"
    # How often each collector process publishes its counts to the events.quota topic (what other replicas, and a
    # restarted collector, see); also the bound on how late one replica sees another's counts.
    quota_sync_seconds: float = 1.0

    # Hot-key overflow (ingest/overflow.py)
    # A (project, device) sending more events per second than this has its further requests spread over all
    # partitions (flagged hot_key_overflow) instead of loading its own; 0 = off. No real device comes near 100/s.
    hot_key_events_per_s: float = 0.0
    # Keys whose rate each collector process tracks (an LRU: the least recently seen is forgotten).
    hot_key_tracked: int = 10_000
    # A key stays hot (spread) this long after its last request over the rate, so that a client's retry of a
    # spread request is spread to the same partition, where the processors' messageId dedup looks for it; keep it
    # at least dedup_window_seconds.
    hot_key_sticky_seconds: float = 3600.0

    # Processor
    # Processor web server: /query, /metrics, /dashboard.
    processor_web_host: str = "127.0.0.1"
    processor_web_port: int = 6066
    # A micro-batch closes at this many Kafka records (bundles) or after this many seconds.
    processor_batch_records: int = 1000
    processor_batch_seconds: float = 0.5
    # A micro-batch is written in parts of at most this many bytes of Kafka records (bounds the processor's memory).
    processor_batch_max_bytes: int = 32 * 1024 * 1024
    # A processor that stops heartbeating loses its partitions after this many seconds.
    processor_session_timeout: float = 10.0
    # After this many seconds of writes failing without a break, the processor's /readyz answers 503 (200 again
    # after the next successful write); the dashboard shows it as stalled.
    processor_stall_seconds: float = 60.0
    # Analyst SQL (/query, `eventpipe query`, the dashboard) is stopped after this many seconds. An embedded
    # store runs one query at a time, so the processor's writes wait while an analyst query runs.
    query_timeout: float = 10.0
    # A query whose result has more rows than this fails (aggregate, or add a LIMIT); 0 = no limit.
    query_max_rows: int = 100_000

    # Validation and enrichment (processors)
    # Client IPs stored as sent ("keep"), truncated to /24 (IPv4) or /48 (IPv6) ("truncate"), or not at all ("drop").
    ip_mode: str = "truncate"
    # Events older than this (after clock-skew correction) go to the dead-letter topic.
    max_event_age_days: float = 60.0
    # Events dated further than this in the future are kept but flagged.
    max_future_seconds: float = 86_400.0
    # Property schemas (schemas/events/*.json) per project: "project=mode,*=mode", mode off|warn|enforce.
    schema_modes: str = "*=warn"
    # An event whose (project, messageId) was stored this recently (client retry) is dropped (at most 7 days:
    # the message_keys lookup table keeps a key that long).
    dedup_window_seconds: float = 3600.0

    # Deletion (`eventpipe forget`, eventpipe/forget.py)
    # After a forget, the processors store none of that person's later events for this many days (they go to
    # events_rejected as reason `forgotten`, without payload).
    forget_suppress_days: float = 30.0
    # How often each processor re-reads the forgotten ids from forget_log (a forget made through another
    # processor, or directly against a server, is in force everywhere after at most this long).
    forget_refresh_seconds: float = 10.0

    # Store: the embedded chDB directory, unless clickhouse_url names a server.
    # Embedded chDB directory (default: <data_dir>/store).
    store_path: Path | None = None
    # A ClickHouse server DSN instead of chDB, e.g. clickhouse://user:pw@host:8123/db (same client, same SQL).
    clickhouse_url: str = ""
    # Fault injection for tests and drills: while this file exists, store writes fail; if it contains
    # `after`, inserts go through and then report failure (an acknowledgement lost on the way back).
    store_failpoint: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.type, raw, f.name)
        values.update(overrides)
        return cls(**values)

    @property
    def store_dir(self) -> Path:
        return self.store_path or self.data_dir / "store"

    @property
    def broker_port(self) -> int:
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])

    def env(self) -> dict[str, str]:
        """These settings as environment variables, for child processes."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[PREFIX + f.name.upper()] = str(value)
        return out


def _convert(annotation: str, raw: str, name: str):
    kind = annotation.split("|")[0].strip()
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw).expanduser()
        return raw
    except ValueError as exc:
        raise ValueError(f"{PREFIX}{name.upper()}={raw!r}: {exc}") from None
