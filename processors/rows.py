"""Turning a batch of Kafka bundles into one Arrow table of `events` rows.

This is the processor's hot path: it runs once per micro-batch, builds one
list per column (no object per row) and hands ClickHouse a single Arrow table,
the insert shape measured fastest (DESIGN.md §5). Timestamps are corrected for
client clock skew as Segment does: ``timestamp + (receivedAt - sentAt)``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pyarrow as pa

from schemas.bundle import decode_bundle

UTC_MS = pa.timestamp("ms", tz="UTC")

EVENTS_SCHEMA = pa.schema([
    pa.field("project", pa.string(), nullable=False),
    pa.field("type", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),
    pa.field("message_id", pa.string(), nullable=False),
    pa.field("anonymous_id", pa.string(), nullable=False),
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("timestamp", UTC_MS, nullable=False),
    pa.field("client_timestamp", UTC_MS, nullable=False),
    pa.field("sent_at", UTC_MS, nullable=False),
    pa.field("received_at", UTC_MS, nullable=False),
    pa.field("properties", pa.string(), nullable=False),
    pa.field("traits", pa.string(), nullable=False),
    pa.field("context", pa.string(), nullable=False),
    pa.field("ip", pa.string(), nullable=False),
    pa.field("user_agent", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.uint16(), nullable=False),
    pa.field("kafka_offset", pa.uint64(), nullable=False),
])

# The event name stored for calls that have none (Segment's own convention for these types).
_NAMES = {"identify": "$identify", "page": "$page", "screen": "$screen", "group": "$group", "alias": "$alias"}


def parse_ms(value) -> int | None:
    """Epoch milliseconds of an ISO-8601 string (UTC when it names no zone); None when absent or invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def _json(value) -> str:
    return orjson.dumps(value).decode() if value else "{}"


def bundles_to_table(records: list[tuple[int, int, bytes]]) -> pa.Table:
    """Rows for every event in ``records`` = [(partition, offset, bundle bytes)]."""
    cols: dict[str, list] = {name: [] for name in EVENTS_SCHEMA.names}
    project, kind, event, message_id = cols["project"], cols["type"], cols["event"], cols["message_id"]
    anonymous_id, user_id = cols["anonymous_id"], cols["user_id"]
    timestamp, client_ts, sent_at_col, received_at_col = (
        cols["timestamp"], cols["client_timestamp"], cols["sent_at"], cols["received_at"])
    properties, traits, context = cols["properties"], cols["traits"], cols["context"]
    ip, user_agent, k_partition, k_offset = cols["ip"], cols["user_agent"], cols["kafka_partition"], cols["kafka_offset"]

    for partition, offset, value in records:
        for r_index, request in enumerate(decode_bundle(value)):
            doc = orjson.loads(request.body)
            received = request.received_at_ms
            batch_sent = parse_ms(doc.get("sentAt"))
            for e_index, ev in enumerate(doc["batch"]):
                sent = parse_ms(ev.get("sentAt")) or batch_sent
                client = parse_ms(ev.get("timestamp"))
                if client is None:
                    corrected = received
                elif sent is None:
                    corrected = client
                else:
                    corrected = client + (received - sent)
                t = ev.get("type", "track")
                project.append(request.project)
                kind.append(t)
                event.append(str(ev.get("event") or "") if t == "track" else _NAMES.get(t, t))
                message_id.append(str(ev.get("messageId") or f"gen-{partition}-{offset}-{r_index}-{e_index}"))
                anonymous_id.append(str(ev.get("anonymousId") or ""))
                user_id.append(str(ev.get("userId") or ""))
                timestamp.append(corrected)
                client_ts.append(client or 0)
                sent_at_col.append(sent or 0)
                received_at_col.append(received)
                properties.append(_json(ev.get("properties")))
                traits.append(_json(ev.get("traits")))
                context.append(_json(ev.get("context")))
                ip.append(request.ip)
                user_agent.append(request.user_agent)
                k_partition.append(partition)
                k_offset.append(offset)
    return pa.Table.from_pydict(cols, schema=EVENTS_SCHEMA)
