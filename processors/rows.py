"""Turning Kafka bundles into one Arrow table of ``events`` rows.

This is the processor's hot path: it runs once per micro-batch, appends to one
list per column (no object per row) and hands ClickHouse a single Arrow table,
the insert shape measured fastest (DESIGN.md §5). Timestamps are corrected for
client clock skew as Segment does: ``timestamp + (receivedAt - sentAt)``; the
common ``context`` fields become typed columns.

What only a processor can judge is judged here, per event: field types,
timestamps too old (rejected) or in the future (flagged), property schemas from
the registry (per-project off/warn/enforce). Rejected events, and records that
cannot be decoded at all, come out as rows of ``events_rejected`` with a reason,
never silently dropped, and never stalling their partition.

The output is a pure function of the records and the rules: a replay of the
same Kafka offsets yields the same rows in the same order, which the
exactly-once mechanism relies on (generated message ids are positional, and
"too old" is judged against the receive time, not the clock).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas import registry
from schemas.bundle import decode_bundle

UTC_MS = pa.timestamp("ms", tz="UTC")
REVENUE = pa.decimal128(18, 4)
MAX_REVENUE = 1e13  # beyond Decimal(18, 4): treated as absent rather than failing the batch

_STRING_COLUMNS = [
    "project", "type", "event", "message_id", "anonymous_id", "user_id",
    "platform", "app_name", "app_version", "app_build", "os_name", "os_version",
    "device_manufacturer", "device_model", "library_name", "library_version", "locale", "timezone",
    "page_path", "page_url", "page_referrer", "name",
]
_TIME_COLUMNS = ["timestamp", "client_timestamp", "sent_at", "received_at"]
_JSON_COLUMNS = ["properties", "traits", "context", "ip", "user_agent"]

EVENTS_SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in _STRING_COLUMNS]
    + [pa.field(n, UTC_MS, nullable=False) for n in _TIME_COLUMNS]
    + [pa.field("revenue", REVENUE, nullable=False)]
    + [pa.field(n, pa.string(), nullable=False) for n in _JSON_COLUMNS]
    + [pa.field("flags", pa.list_(pa.field("item", pa.string(), nullable=False)), nullable=False),
       pa.field("kafka_partition", pa.uint16(), nullable=False),
       pa.field("kafka_offset", pa.uint64(), nullable=False)]
)

REJECTED_SCHEMA = pa.schema([
    pa.field("project", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("message", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),
    pa.field("message_id", pa.string(), nullable=False),
    pa.field("received_at", UTC_MS, nullable=False),
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.uint16(), nullable=False),
    pa.field("kafka_offset", pa.uint64(), nullable=False),
    pa.field("request_index", pa.uint32(), nullable=False),
    pa.field("event_index", pa.uint32(), nullable=False),
    pa.field("payload", pa.string(), nullable=False),
])


@dataclass(frozen=True)
class Rules:
    """How events are judged and enriched; built once from Settings."""

    topic: str = "events.raw"
    ip_mode: str = "truncate"
    max_age_ms: int = 60 * 86_400_000
    max_future_ms: int = 86_400_000
    schema_modes: dict = field(default_factory=lambda: {"*": "warn"})
    dedup_window_ms: int = 3_600_000

    @classmethod
    def from_settings(cls, settings) -> "Rules":
        if settings.ip_mode not in ("keep", "truncate", "drop"):
            raise ValueError(f"EVENTPIPE_IP_MODE must be keep, truncate or drop, not {settings.ip_mode!r}")
        return cls(settings.topic_raw, settings.ip_mode, int(settings.max_event_age_days * 86_400_000),
                   int(settings.max_future_seconds * 1000), registry.parse_modes(settings.schema_modes),
                   int(settings.dedup_window_seconds * 1000))

    def schema_mode(self, project: str) -> str:
        return self.schema_modes.get(project, self.schema_modes.get("*", "warn"))


@dataclass
class Exploded:
    events: pa.Table
    rejected: pa.Table


class _Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message

# The event name stored for calls that have none.
_NAMES = {"identify": "$identify", "page": "$page", "screen": "$screen", "group": "$group", "alias": "$alias"}
_MOBILE = {"ios": "ios", "ipados": "ios", "iphone os": "ios", "android": "android"}


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


def platform_of(kind: str, context: dict, os_name: str) -> str:
    """ios / android / web / the OS name / unknown, from what SDKs put in context."""
    mobile = _MOBILE.get(os_name.lower())
    if mobile:
        return mobile
    if kind == "page" or "page" in context or "analytics.js" in str((context.get("library") or {}).get("name", "")):
        return "web"
    return os_name.lower() or "unknown"


def _obj(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str:
    return "" if value is None else str(value)


def _object_field(ev: dict, name: str) -> dict:
    value = ev.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Rejected("invalid_field", f"{name} must be an object, not {type(value).__name__}")
    return value


def _id_field(ev: dict, name: str) -> str:
    value = ev.get(name)
    if value is None:
        return ""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise _Rejected("invalid_field", f"{name} must be a string, not {type(value).__name__}")


@functools.lru_cache(maxsize=65536)  # a request's events share one address: explode 1.56x faster
def anonymize_ip(ip: str, mode: str) -> str:
    """keep / truncate (IPv4 /24, IPv6 /48) / drop; unparsable addresses are dropped unless kept."""
    if mode == "keep":
        return ip
    if mode == "drop" or not ip:
        return ""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _revenue(properties: dict) -> float:
    value = properties.get("revenue", properties.get("value"))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < MAX_REVENUE:
        return float(value)
    return 0.0


def bundles_to_table(records: list[tuple[int, int, bytes]], rules: Rules = Rules()) -> pa.Table:
    """The stored rows only (see ``explode``)."""
    return explode(records, rules).events


def explode(records: list[tuple[int, int, bytes]], rules: Rules = Rules()) -> Exploded:
    """Rows for every event in ``records`` = [(partition, offset, bundle bytes)], in record order,
    and a row of ``events_rejected`` for every event or record that cannot be stored."""
    cols: dict[str, list] = {name: [] for name in EVENTS_SCHEMA.names}
    add = {name: col.append for name, col in cols.items()}
    rejected: dict[str, list] = {name: [] for name in REJECTED_SCHEMA.names}

    def reject(reason, message, project, received, partition, offset, r_index, e_index, event, mid, payload):
        for name, value in (("project", project), ("reason", reason), ("message", message), ("event", event),
                            ("message_id", mid), ("received_at", received), ("kafka_topic", rules.topic),
                            ("kafka_partition", partition), ("kafka_offset", offset), ("request_index", r_index),
                            ("event_index", e_index), ("payload", payload)):
            rejected[name].append(value)

    for partition, offset, value in records:
        try:
            requests = decode_bundle(value)
        except Exception as exc:  # noqa: BLE001 - a poison pill: kept with its reason, never retried
            reject("undecodable_record", str(exc)[:500], "", 0, partition, offset, 0, 0, "", "",
                   value.decode("utf-8", "backslashreplace")[:1_000_000])
            continue
        for r_index, request in enumerate(requests):
            received = request.received_at_ms
            try:
                doc = orjson.loads(request.body)
                batch = doc["batch"]
                if not isinstance(batch, list):
                    raise TypeError("batch is not an array")
            except Exception as exc:  # noqa: BLE001 - the collector checked this; a body that still fails is kept
                reject("undecodable_request", str(exc)[:500], request.project, received, partition, offset,
                       r_index, 0, "", "", request.body.decode("utf-8", "backslashreplace"))
                continue
            batch_sent = parse_ms(doc.get("sentAt"))
            schema_mode = rules.schema_mode(request.project)
            for e_index, ev in enumerate(batch):
                try:
                    if not isinstance(ev, dict):
                        raise _Rejected("invalid_event", "an event must be an object")
                    flags = []
                    kind = ev.get("type", "track")
                    name = _str(ev.get("event")) if kind == "track" else _NAMES.get(kind, str(kind))
                    message_id = _id_field(ev, "messageId")
                    if not message_id:
                        message_id = f"gen-{partition}-{offset}-{r_index}-{e_index}"
                        flags.append("message_id_generated")
                    anonymous_id, user_id = _id_field(ev, "anonymousId"), _id_field(ev, "userId")
                    context = _object_field(ev, "context")
                    properties = _object_field(ev, "properties")
                    traits = _object_field(ev, "traits")

                    sent = parse_ms(ev.get("sentAt")) or batch_sent
                    raw_ts = ev.get("timestamp")
                    client = parse_ms(raw_ts)
                    if client is None:
                        corrected = received
                        if raw_ts is not None:
                            flags.append("timestamp_invalid")
                    elif sent is None:
                        corrected = client
                    else:
                        corrected = client + (received - sent)
                    if corrected < received - rules.max_age_ms:
                        raise _Rejected("too_old", f"dated {(received - corrected) // 86_400_000} days "
                                                   "before it was received")
                    if corrected > received + rules.max_future_ms:
                        flags.append("timestamp_in_future")

                    if schema_mode != "off" and kind == "track":
                        problem = registry.violation(name, properties)
                        if problem:
                            if schema_mode == "enforce":
                                raise _Rejected("schema_violation", problem)
                            flags.append("schema_violation")
                except _Rejected as rej:
                    is_obj = isinstance(ev, dict)
                    reject(rej.reason, rej.message, request.project, received, partition, offset, r_index, e_index,
                           _str(ev.get("event")) if is_obj else "", _str(ev.get("messageId")) if is_obj else "",
                           orjson.dumps(ev, default=str).decode())
                    continue

                app, os_, device = _obj(context.get("app")), _obj(context.get("os")), _obj(context.get("device"))
                library, page = _obj(context.get("library")), _obj(context.get("page"))
                os_name = _str(os_.get("name"))
                client_ip = context.get("ip") if isinstance(context.get("ip"), str) else request.ip

                add["project"](request.project)
                add["type"](kind)
                add["event"](name)
                add["message_id"](message_id)
                add["anonymous_id"](anonymous_id)
                add["user_id"](user_id)
                add["platform"](platform_of(kind, context, os_name))
                add["app_name"](_str(app.get("name")))
                add["app_version"](_str(app.get("version")))
                add["app_build"](_str(app.get("build")))
                add["os_name"](os_name)
                add["os_version"](_str(os_.get("version")))
                add["device_manufacturer"](_str(device.get("manufacturer")))
                add["device_model"](_str(device.get("model")))
                add["library_name"](_str(library.get("name")))
                add["library_version"](_str(library.get("version")))
                add["locale"](_str(context.get("locale")))
                add["timezone"](_str(context.get("timezone")))
                add["page_path"](_str(page.get("path") or properties.get("path")))
                add["page_url"](_str(page.get("url") or properties.get("url")))
                add["page_referrer"](_str(page.get("referrer") or properties.get("referrer")))
                add["name"](_str(ev.get("name")))
                add["timestamp"](corrected)
                add["client_timestamp"](client or 0)
                add["sent_at"](sent or 0)
                add["received_at"](received)
                add["revenue"](_revenue(properties))
                add["properties"](orjson.dumps(properties).decode())
                add["traits"](orjson.dumps(traits).decode())
                add["context"](orjson.dumps(context).decode())
                add["ip"](anonymize_ip(client_ip, rules.ip_mode))
                add["user_agent"](request.user_agent)
                add["flags"](flags)
                add["kafka_partition"](partition)
                add["kafka_offset"](offset)

    revenue = cols.pop("revenue")
    cols["revenue"] = pc.round(pa.array(revenue, pa.float64()), 4).cast(REVENUE)  # rounds; no float dust
    return Exploded(pa.Table.from_pydict(cols, schema=EVENTS_SCHEMA),
                    pa.Table.from_pydict(rejected, schema=REJECTED_SCHEMA))
