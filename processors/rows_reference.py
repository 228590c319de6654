"""The specification of "Kafka bundles -> one Arrow table of ``events`` rows, plus rejects", in Python.

The processor's hot path is the native engine behind ``eventpipe.processors.rows`` (issue 12:
per-event Python here cost ~11 µs per event, the whole budget at 150k events/s). This
module stays as the reference it is tested against, event for event
(tests/test_native_explode.py), and as the path the engine hands back whatever it
does not judge itself: rejects, unusual timestamp forms, schema violations. Timestamps are corrected for
client clock skew as Segment does: ``timestamp + (receivedAt - sentAt)``; the
common ``context`` fields become typed columns.

What only a processor can judge is judged here, per event, by the rules of
``eventpipe.schemas.contract`` (the same the collector uses): field types (reject, or
coerce and flag), timestamps too old (rejected) or in the future (flagged),
property schemas from the registry (per-project off/warn/enforce). Rejected
events, and records that cannot be decoded at all, come out as rows of
``events_rejected`` with a reason, never silently dropped. Judging is total: no
event, whatever its JSON, can make ``explode`` raise and so stall the stream.

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

from eventpipe.processors import user_agents
from eventpipe.schemas import contract, registry
from eventpipe.schemas.bundle import decode_bundle

UTC_MS = pa.timestamp("ms", tz="UTC")
REVENUE = pa.decimal128(18, 4)
MAX_REVENUE = 1e13  # beyond Decimal(18, 4): treated as absent rather than failing the batch

STRING_COLUMNS = [
    "project",
    "type",
    "event",
    "message_id",
    "anonymous_id",
    "user_id",
    "platform",
    "app_name",
    "app_version",
    "app_build",
    "os_name",
    "os_version",
    "device_manufacturer",
    "device_model",
    "library_name",
    "library_version",
    "locale",
    "timezone",
    "page_path",
    "page_url",
    "page_referrer",
    "name",
]
_TIME_COLUMNS = ["timestamp", "client_timestamp", "sent_at", "received_at"]
_NULLABLE = {"client_timestamp", "sent_at"}  # the client's own times: NULL when it sent none (migration 0007)
_JSON_COLUMNS = ["properties", "traits", "context", "ip", "user_agent"]

EVENTS_SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in STRING_COLUMNS]
    + [pa.field(n, UTC_MS, nullable=n in _NULLABLE) for n in _TIME_COLUMNS]
    + [pa.field("revenue", REVENUE, nullable=False)]
    + [pa.field(n, pa.string(), nullable=False) for n in _JSON_COLUMNS]
    + [
        pa.field("flags", pa.list_(pa.field("item", pa.string(), nullable=False)), nullable=False),
        pa.field("kafka_partition", pa.uint16(), nullable=False),
        pa.field("kafka_offset", pa.uint64(), nullable=False),
    ]
    + [pa.field(n, pa.string(), nullable=False) for n in user_agents.COLUMNS[:-1]]
    + [pa.field(user_agents.COLUMNS[-1], pa.bool_(), nullable=False)]
    + [pa.field(n, pa.string(), nullable=False) for n in ("group_id", "previous_id")]
)

REJECTED_SCHEMA = pa.schema(
    [
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
    ]
)


@dataclass(frozen=True)
class Rules:
    """How events are judged and enriched; built once from Settings."""

    topic: str = "events.raw"
    ip_mode: str = "truncate"
    max_age_ms: int = 60 * 86_400_000
    max_future_ms: int = 86_400_000
    schema_modes: dict = field(default_factory=lambda: {"*": "warn"})
    dedup_window_ms: int = 3_600_000
    max_batch_bytes: int = 500 * 1024  # bounds a batch context's copies (schemas.contract.envelope_problem)

    @classmethod
    def from_settings(cls, settings) -> "Rules":
        if settings.ip_mode not in ("keep", "truncate", "drop"):
            raise ValueError(f"EVENTPIPE_IP_MODE must be keep, truncate or drop, not {settings.ip_mode!r}")
        return cls(
            settings.topic_raw,
            settings.ip_mode,
            int(settings.max_event_age_days * 86_400_000),
            int(settings.max_future_seconds * 1000),
            registry.parse_modes(settings.schema_modes),
            int(settings.dedup_window_seconds * 1000),
            settings.max_batch_bytes,
        )

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


_MOBILE = {"ios": "ios", "ipados": "ios", "iphone os": "ios", "android": "android"}
# ClickHouse's DateTime64(3) range, 1900-01-01 .. 2299-12-31, in epoch ms: a time outside it is no time.
MIN_MS, MAX_MS = -2_208_988_800_000, 10_413_791_999_999


def parse_ms(value) -> int | None:
    """Epoch milliseconds of an ISO-8601 string (UTC when it names no zone); None when absent, invalid or
    outside what ClickHouse can store."""
    if type(value) is not str or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        ms = int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):
        return None
    return ms if MIN_MS <= ms <= MAX_MS else None


def platform_of(kind: str, context: dict, os_name: str, library_name: str) -> str:
    """ios / android / web / the OS name / unknown, from what SDKs put in context."""
    mobile = _MOBILE.get(os_name.lower())
    if mobile:
        return mobile
    if kind == "page" or "page" in context or "analytics.js" in library_name:
        return "web"
    return os_name.lower() or "unknown"


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
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _revenue(properties: dict) -> float:
    value = properties.get("revenue", properties.get("value"))
    if type(value) in (int, float) and abs(value) < MAX_REVENUE:  # NaN compares false: absent
        return float(value)
    return 0.0


def _payload(event) -> str:
    """The event as JSON text for a reject: as sent where it can be re-encoded, else as much as can be said."""
    try:
        return orjson.dumps(event, default=str).decode()
    except Exception as exc:  # noqa: BLE001 - a reject must never fail (e.g. nesting orjson cannot re-encode)
        return orjson.dumps({"unencodable_event": f"{type(exc).__name__}: {exc}"}).decode()


def _json_texts(*values) -> list[str]:
    """Objects as JSON text for their columns; orjson reads 1,024 levels of nesting but writes only 254."""
    try:
        return [orjson.dumps(value).decode() for value in values]
    except orjson.JSONEncodeError:
        raise _Rejected("too_deep", "the event nests objects/arrays more than 250 levels deep") from None


def _event_row(
    ev,
    request,
    batch_sent,
    envelope,
    partition: int,
    offset: int,
    r_index: int,
    e_index: int,
    rules: Rules,
    schema_mode: str,
) -> tuple:
    """One event's ``events`` row, in EVENTS_SCHEMA's column order; raises `_Rejected` (or anything, for a
    bug: the caller turns every exception into a reject of this event alone)."""
    problem = contract.required_problem(ev) or contract.field_problem(ev)
    if problem is not None:
        raise _Rejected(*problem)
    flags: list[str] = ["hot_key_overflow"] if request.overflow else []  # spread by ingest/overflow.py
    text = contract.text
    kind = ev["type"]
    name = ev["event"] if kind == "track" else contract.CALL_NAMES[kind]
    message_id = ev.get("messageId")
    if message_id is None or message_id == "":
        message_id = f"gen-{partition}-{offset}-{r_index}-{e_index}"
        flags.append("message_id_generated")
    else:
        message_id = contract.id_text(message_id)
    anonymous_id, user_id = ev.get("anonymousId"), ev.get("userId")
    anonymous_id = "" if anonymous_id is None else contract.id_text(anonymous_id)
    user_id = "" if user_id is None else contract.id_text(user_id)
    context = ev.get("context") or {}
    if envelope is not None:  # the batch's own context goes under the event's (Segment merges them)
        if type(envelope) is dict:
            context = contract.merge_context(envelope, context) if envelope else context
        else:
            contract.obj(envelope, flags)  # not an object: ignored, and the event says so
    properties = ev.get("properties") or {}
    traits = ev.get("traits") or {}

    received = request.received_at_ms
    sent = parse_ms(ev.get("sentAt"))
    if sent is None:
        sent = batch_sent
    raw_ts = ev.get("timestamp")
    if raw_ts is None:  # the spec's other name for the client's clock (RudderStack sends only this one)
        raw_ts = ev.get("originalTimestamp")
    client = parse_ms(raw_ts)
    if client is None:
        corrected = received
        if raw_ts is not None:
            flags.append("timestamp_invalid")
    elif sent is None:
        corrected = client
    else:
        corrected = client + (received - sent)
        if not MIN_MS <= corrected <= MAX_MS:  # a skew that leaves what ClickHouse can store: no usable time
            corrected = received
            flags.append("timestamp_invalid")
    if corrected < received - rules.max_age_ms:
        raise _Rejected("too_old", f"dated {(received - corrected) // 86_400_000} days before it was received")
    if corrected > received + rules.max_future_ms:
        # Kept, but placed at its receipt: a date far ahead means nothing to analysts, and an unbounded
        # range of days in one insert would exceed ClickHouse's partitions per insert (client_timestamp keeps it).
        flags.append("timestamp_in_future")
        corrected = received

    if schema_mode != "off" and kind == "track":
        violation = registry.violation(name, properties)
        if violation:
            if schema_mode == "enforce":
                raise _Rejected("schema_violation", violation)
            flags.append("schema_violation")

    obj = contract.obj
    app, os_, device = obj(context.get("app"), flags), obj(context.get("os"), flags), obj(context.get("device"), flags)
    library, page = obj(context.get("library"), flags), obj(context.get("page"), flags)
    os_name, library_name = text(os_.get("name"), flags), text(library.get("name"), flags)
    client_ip = contract.string_or(context.get("ip"), request.ip, flags)
    user_agent = contract.string_or(context.get("userAgent"), request.user_agent, flags)
    return (
        request.project,
        kind,
        name,
        message_id,
        anonymous_id,
        user_id,
        platform_of(kind, context, os_name, library_name),
        text(app.get("name"), flags),
        text(app.get("version"), flags),
        text(app.get("build"), flags),
        os_name,
        text(os_.get("version"), flags),
        text(device.get("manufacturer"), flags),
        text(device.get("model"), flags),
        library_name,
        text(library.get("version"), flags),
        text(context.get("locale"), flags),
        text(context.get("timezone"), flags),
        text(page.get("path") or properties.get("path"), flags),
        text(page.get("url") or properties.get("url"), flags),
        text(page.get("referrer") or properties.get("referrer"), flags),
        text(ev.get("name"), flags),
        corrected,
        client,
        sent,
        received,
        _revenue(properties),
        *_json_texts(properties, traits, context),
        anonymize_ip(client_ip, rules.ip_mode),
        request.user_agent,
        flags or (),
        partition,
        offset,  # the empty tuple is one shared object: no garbage to track per event
        *user_agents.parse(user_agent),
        contract.id_text(ev["groupId"]) if kind == "group" else "",
        contract.id_text(ev["previousId"]) if kind == "alias" else "",
        r_index,
        e_index,  # not columns: where the event was, should Arrow refuse its row
    )


def bundles_to_table(records: list[tuple[int, int, bytes]], rules: Rules = Rules()) -> pa.Table:
    """The stored rows only (see ``explode``)."""
    return explode(records, rules).events


def explode(records: list[tuple[int, int, bytes]], rules: Rules = Rules()) -> Exploded:
    """Rows for every event in ``records`` = [(partition, offset, bundle bytes)], in record order,
    and a row of ``events_rejected`` for every event or record that cannot be stored.

    Total: whatever the records hold, every event ends as exactly one row of one of the two tables,
    and nothing raises. A failure while judging one event (a bug, any exception) rejects that event
    as ``processing_error`` with the exception named; only the store's own failures can fail a batch."""
    judge = Judge(rules)
    for partition, offset, value in records:
        requests = judge.decode(partition, offset, value)
        for r_index, request in enumerate(requests or ()):
            judge.request(partition, offset, r_index, request)
    return judge.finish()


class Judge:
    """One batch's rows and rejects, judged per event: the specification the native engine
    (``eventpipe.processors.rows``) is tested against, and the path it hands back what it does not judge itself."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self.rows: list[tuple] = []
        self.rejected: dict[str, list] = {name: [] for name in REJECTED_SCHEMA.names}
        self.ordinal = 0  # set by a caller that orders these rows among others (processors.rows)
        self.order: list[tuple[int, int]] = []  # (ordinal, event index) of each row
        self.kept: list[tuple[int, int]] = []  # after finish(): the same, of the rows in the events table

    def reject(self, reason, message, project, received, partition, offset, r_index, e_index, event, mid, payload):
        for name, value in (
            ("project", project),
            ("reason", reason),
            ("message", message),
            ("event", event),
            ("message_id", mid),
            ("received_at", received),
            ("kafka_topic", self.rules.topic),
            ("kafka_partition", partition),
            ("kafka_offset", offset),
            ("request_index", r_index),
            ("event_index", e_index),
            ("payload", payload),
        ):
            self.rejected[name].append(value)

    def decode(self, partition: int, offset: int, value) -> list | None:
        """The record's requests, or None (and a reject) for a record that is no bundle."""
        try:
            return decode_bundle(value)
        except Exception as exc:  # noqa: BLE001 - a poison pill: kept with its reason, never retried
            raw = value if isinstance(value, bytes) else b""  # a record without a value (a tombstone) too
            self.reject(
                "undecodable_record",
                str(exc)[:500],
                "",
                0,
                partition,
                offset,
                0,
                0,
                "",
                "",
                raw[:1_000_000].decode("utf-8", "backslashreplace"),
            )
            return None

    def request(self, partition: int, offset: int, r_index: int, request) -> None:
        """Every event of one request: a row each, or a reject each."""
        rules, reject = self.rules, self.reject
        received = request.received_at_ms
        try:
            doc = orjson.loads(request.body)
            batch = doc["batch"]
            if not isinstance(batch, list):
                raise TypeError("batch is not an array")
            if not MIN_MS <= received <= MAX_MS:
                raise ValueError(f"received_at {received} is outside 1900..2299")
        except Exception as exc:  # noqa: BLE001 - the collector checked this; a body that still fails is kept
            reject(
                "undecodable_request",
                str(exc)[:500],
                request.project,
                min(max(received, 0), MAX_MS),
                partition,
                offset,
                r_index,
                0,
                "",
                "",
                request.body.decode("utf-8", "backslashreplace"),
            )
            return
        batch_sent = parse_ms(doc.get("sentAt"))
        envelope = doc.get("context")
        envelope_problem = contract.envelope_problem(envelope, len(batch), rules.max_batch_bytes)
        schema_mode = rules.schema_mode(request.project)
        for e_index, ev in enumerate(batch):
            try:
                if envelope_problem is not None:  # what the collector refuses: each event, the same code
                    raise _Rejected(*envelope_problem)
                self.rows.append(
                    _event_row(
                        ev, request, batch_sent, envelope, partition, offset, r_index, e_index, rules, schema_mode
                    )
                )
                self.order.append((self.ordinal, e_index))
                continue
            except _Rejected as rej:
                reason, message = rej.reason, rej.message
            except Exception as exc:  # noqa: BLE001 - judging is total: this event is rejected, not its batch
                reason, message = "processing_error", f"{type(exc).__name__}: {exc}"[:500]
            flags: list[str] = []
            is_obj = type(ev) is dict
            reject(
                reason,
                message,
                request.project,
                received,
                partition,
                offset,
                r_index,
                e_index,
                contract.text(ev.get("event"), flags) if is_obj else "",
                contract.text(ev.get("messageId"), flags) if is_obj else "",
                _payload(ev),
            )

    def finish(self) -> Exploded:
        rows = self.rows
        events = _events_table(rows)
        self.kept = self.order
        if events is None:  # a value Arrow refuses: find the rows, reject them, keep the rest
            good, self.kept = [], []
            for row, ordinal in zip(rows, self.order):
                if _events_table([row]) is None:
                    at = _EVENT_COLUMNS.index
                    self.reject(
                        "processing_error",
                        "a value of this event cannot be stored",
                        row[0],
                        row[at("received_at")],
                        row[at("kafka_partition")],
                        row[at("kafka_offset")],
                        row[-2],
                        row[-1],
                        row[at("event")],
                        row[at("message_id")],
                        "",
                    )
                else:
                    good.append(row)
                    self.kept.append(ordinal)
            events = _events_table(good)
        return Exploded(events, pa.Table.from_pydict(self.rejected, schema=REJECTED_SCHEMA))


_EVENT_COLUMNS = EVENTS_SCHEMA.names
_REVENUE_AT = _EVENT_COLUMNS.index("revenue")


def _events_table(rows: list[tuple]) -> pa.Table | None:
    """``rows`` as one Arrow table (columns transposed in C, not appended per event); None if Arrow refuses."""
    try:
        columns = list(zip(*rows)) if rows else [()] * len(_EVENT_COLUMNS)
        arrays = [
            pa.array(columns[i], type=EVENTS_SCHEMA.field(i).type)
            if i != _REVENUE_AT
            # rounded to the column's 4 decimals first: no float dust in sums
            else pc.round(pa.array(columns[i], pa.float64()), 4).cast(REVENUE)
            for i in range(len(_EVENT_COLUMNS))
        ]
        return pa.Table.from_arrays(arrays, schema=EVENTS_SCHEMA)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return None
