"""The property of issue 11, "judging is total", as one checker shared by the hypothesis tests and the fuzzer.

``check_explode(records, rules)`` runs ``eventpipe.processors.rows.explode`` and raises ``AssertionError`` naming the
broken rule unless:

* ``explode`` returns (any exception it raises propagates: that is a failure too);
* a record that ``eventpipe.schemas.bundle.decode_bundle`` cannot decode has exactly one rejected row, reason
  ``undecodable_record``, and no stored row;
* a request whose body is not a JSON object with a ``batch`` array has exactly one rejected row, reason
  ``undecodable_request``;
* otherwise every event of every request is either one stored row or one rejected row: per
  (partition, offset), stored + rejected rows == the events in the record; rejected (request_index,
  event_index) pairs are unique and name a real event; every reason is a short machine-readable word, and
  none is ``processing_error`` (explode's net for an exception while judging: a bug, see below);
* the output can be inserted: a null only in a column the schema declares nullable; every DateTime64 value within
  1900-01-01 .. 2299-12-31; a stored ``timestamp`` within [received_at - max_age, received_at + max_future]
  (the events table is partitioned by day: an unbounded range breaks max_partitions_per_insert_block);
  ``writer.message_key`` computable and the message id non-empty (an empty id would make the writer drop
  every later event of the partition as a retry); revenue a Decimal(18, 4) that fits;
* the output is a pure function of the input (exactly-once replays rely on it): a second call gives equal
  tables;
* (issue 12) the native engine's output is identical to the Python specification's,
  ``eventpipe.processors.rows_reference.explode``, and so are its message keys: every property test is also a
  differential test of the two paths.

A request whose ``received_at_ms`` is itself outside the DateTime64 range never comes from the collector
(it stamps its own clock), only from a corrupt or forged record. Every row carries received_at, so no
per-event row of such a request is insertable; the checker accepts it rejected whole: either the record
as one ``undecodable_record`` row, or the request as one rejected row (any reason, event_index 0).
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from eventpipe.processors import rows, rows_reference
from eventpipe.processors.rows import Exploded, Rules, explode
from eventpipe.processors.writer import message_key
from eventpipe.schemas.bundle import decode_bundle

DT64_MIN_MS = -2_208_988_800_000  # 1900-01-01T00:00:00Z
DT64_MAX_MS = 10_413_791_999_999  # 2299-12-31T23:59:59.999Z
TIME_COLUMNS = ("timestamp", "client_timestamp", "sent_at", "received_at")
REASON = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
# explode's safety net: an exception while judging an event rejects it as processing_error. That keeps the
# stream going, but it is a bug in judging (tests/test_hostile_stream.py forbids it too), so it fails here.
ALLOW_PROCESSING_ERROR = False
REVENUE_LIMIT = Decimal(10) ** 14  # Decimal(18, 4): 14 integer digits


class Violation(AssertionError):
    """A broken rule of the property, with the record it concerns."""


def _fail(message: str) -> None:
    raise Violation(message)


def in_dt64(ms: int) -> bool:
    return DT64_MIN_MS <= ms <= DT64_MAX_MS


def request_shape(body: bytes) -> int | None:
    """The number of events of a body that is a JSON object with a ``batch`` array; None for any other body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    batch = doc.get("batch") if isinstance(doc, dict) else None
    return len(batch) if isinstance(batch, list) else None


def _millis(table: pa.Table, name: str) -> list[int]:
    column = table.column(name)
    if not pa.types.is_timestamp(column.type) or column.type.unit != "ms":
        _fail(f"{name} is {column.type}, not timestamp[ms]")
    return column.cast(pa.int64()).to_pylist()


def _check_table(table: pa.Table, what: str, schema: pa.Schema | None) -> None:
    if schema is not None and not table.schema.equals(schema):
        _fail(f"{what} schema differs from the declared one:\n{table.schema}\nvs\n{schema}")
    for field in table.schema:
        column = table.column(field.name)
        declared = schema.field(field.name).nullable if schema is not None and field.name in schema.names else False
        if column.null_count and not declared:
            _fail(f"{what}.{field.name} has {column.null_count} null(s); ClickHouse refuses the whole insert")
        if pa.types.is_list(field.type) and pc.sum(pc.is_null(pc.list_flatten(column))).as_py():
            _fail(f"{what}.{field.name} has a null item")
    for name in TIME_COLUMNS:
        if name in table.column_names:
            for ms in _millis(table, name):
                if ms is not None and not in_dt64(ms):
                    _fail(f"{what}.{name} = {ms} ms is outside DateTime64's 1900-01-01 .. 2299-12-31")


def check_output(records: list[tuple[int, int, bytes]], rules: Rules, out: Exploded) -> None:
    """Assert the property of one ``explode`` result (see the module docstring)."""
    if not isinstance(out.events, pa.Table) or not isinstance(out.rejected, pa.Table):
        _fail("explode must return Arrow tables")
    events, rejected = out.events, out.rejected
    _check_table(events, "events", getattr(rows, "EVENTS_SCHEMA", None))
    _check_table(rejected, "events_rejected", getattr(rows, "REJECTED_SCHEMA", None))

    # -- stored rows: insertable ------------------------------------------------------------------
    stored = events.select(["project", "message_id", "kafka_partition", "kafka_offset"]).to_pylist()
    timestamps, received = _millis(events, "timestamp"), _millis(events, "received_at")
    for row, ts, rec in zip(stored, timestamps, received):
        if not rec - rules.max_age_ms <= ts <= rec + rules.max_future_ms:
            _fail(
                f"stored timestamp {ts} is outside [received_at - max_age, received_at + max_future] = "
                f"[{rec - rules.max_age_ms}, {rec + rules.max_future_ms}] (message_id {row['message_id']!r})"
            )
        if not row["message_id"]:
            _fail("a stored row has an empty message_id")
        try:
            message_key(row["project"], row["message_id"])
        except Exception as exc:  # noqa: BLE001 - the property is that it cannot fail
            _fail(f"message_key({row['project']!r}, {row['message_id']!r}) raises {exc!r}")
    revenue = events.column("revenue")
    if revenue.type != pa.decimal128(18, 4):
        _fail(f"revenue is {revenue.type}, not decimal128(18, 4)")
    for value in revenue.to_pylist():
        if not value.is_finite() or abs(value) >= REVENUE_LIMIT:
            _fail(f"revenue {value} does not fit Decimal(18, 4)")

    # -- classification: every event exactly once -------------------------------------------------
    stored_per_record = Counter((r["kafka_partition"], r["kafka_offset"]) for r in stored)
    rejected_rows = rejected.select(
        ["reason", "message", "kafka_partition", "kafka_offset", "request_index", "event_index"]
    ).to_pylist()
    rejected_per_record: dict[tuple[int, int], list[dict]] = {}
    for row in rejected_rows:
        if not isinstance(row["reason"], str) or not REASON.match(row["reason"]):
            _fail(f"reason {row['reason']!r} is not a short machine-readable word")
        if row["reason"] == "processing_error" and not ALLOW_PROCESSING_ERROR:
            _fail(
                f"event {row['event_index']} of request {row['request_index']} was rejected as processing_error "
                f"({row['message']}): judging raised"
            )
        rejected_per_record.setdefault((row["kafka_partition"], row["kafka_offset"]), []).append(row)

    inputs = {(p, o) for p, o, _ in records}
    if len(inputs) != len(records):
        raise ValueError("the checker needs distinct (partition, offset) per record")
    for key in set(stored_per_record) | set(rejected_per_record):
        if key not in inputs:
            _fail(f"rows name (partition, offset) {key}, which is no input record")

    for partition, offset, value in records:
        key = (partition, offset)
        n_stored, rejects = stored_per_record.get(key, 0), rejected_per_record.get(key, [])
        where = f"record (partition {partition}, offset {offset})"
        try:
            requests = decode_bundle(value)
        except Exception:  # noqa: BLE001 - whatever the format module refuses is "not a decodable bundle"
            requests = None
        whole_record = n_stored == 0 and len(rejects) == 1 and rejects[0]["reason"] == "undecodable_record"
        if requests is None:
            if not whole_record:
                _fail(
                    f"{where} is no decodable bundle: expected one undecodable_record row and nothing stored, "
                    f"got {n_stored} stored and {[r['reason'] for r in rejects]}"
                )
            continue
        hostile = [not in_dt64(r.received_at_ms) for r in requests]
        if any(hostile) and whole_record:
            continue
        per_request: dict[int, list[dict]] = {}
        for row in rejects:
            if row["request_index"] >= len(requests):
                _fail(f"{where}: rejected row names request {row['request_index']} of {len(requests)}")
            per_request.setdefault(row["request_index"], []).append(row)
        expected = 0
        for r_index, request in enumerate(requests):
            mine = per_request.get(r_index, [])
            n_events = request_shape(request.body)
            if hostile[r_index]:
                if len(mine) != 1 or mine[0]["event_index"] != 0:
                    _fail(
                        f"{where} request {r_index} has received_at_ms {request.received_at_ms} outside "
                        f"DateTime64: expected it rejected whole (one row), got {len(mine)} rejected rows"
                    )
                expected += 1
            elif n_events is None:
                if [(r["reason"], r["event_index"]) for r in mine] != [("undecodable_request", 0)]:
                    _fail(
                        f"{where} request {r_index}: body {request.body[:200]!r} is no JSON object with a batch "
                        f"array: expected one undecodable_request row, got {[r['reason'] for r in mine]}"
                    )
                expected += 1
            else:
                indexes = Counter(r["event_index"] for r in mine)
                twice = [i for i, c in indexes.items() if c > 1]
                if twice:
                    _fail(f"{where} request {r_index}: events {twice} rejected more than once")
                beyond = [i for i in indexes if i >= n_events]
                if beyond:
                    _fail(f"{where} request {r_index}: rejected event indexes {beyond} of a batch of {n_events}")
                expected += n_events
        if n_stored + len(rejects) != expected:
            _fail(f"{where}: {n_stored} stored + {len(rejects)} rejected rows for {expected} events/requests")


def check_explode(records: list[tuple[int, int, bytes]], rules: Rules = Rules(), replay: bool = True) -> Exploded:
    """Run ``explode`` and assert the property; returns its output."""
    out = explode(records, rules)
    check_output(records, rules, out)
    check_same_as_reference(records, rules, out)
    if replay:
        again = explode(records, rules)
        if not (again.events.equals(out.events) and again.rejected.equals(out.rejected)):
            _fail("explode is not deterministic: a replay of the same records gives other rows")
    return out


def check_same_as_reference(records: list[tuple[int, int, bytes]], rules: Rules, out: Exploded) -> None:
    """The native engine (``eventpipe.processors.rows``) gives exactly the rows and rejects of the Python specification
    (``eventpipe.processors.rows_reference``), and the message keys the writer's ``message_key`` computes."""
    ref = rows_reference.explode(records, rules)
    for what, got, want in (("events", out.events, ref.events), ("events_rejected", out.rejected, ref.rejected)):
        if got.equals(want):
            continue
        if got.num_rows != want.num_rows:
            _fail(f"{what}: the native path gives {got.num_rows} rows, the reference {want.num_rows}")
        for name in want.schema.names:
            a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    _fail(f"{what}.{name} row {i}: native {x!r}, reference {y!r}")
        _fail(f"{what}: the native table differs from the reference in its schema: {got.schema} vs {want.schema}")
    keys = pa.Array.from_buffers(pa.uint64(), out.events.num_rows, [None, pa.py_buffer(rows.message_keys(out.events))])
    want_keys = [
        message_key(p, m)
        for p, m in zip(out.events.column("project").to_pylist(), out.events.column("message_id").to_pylist())
    ]
    if keys.to_pylist() != want_keys:
        _fail("rows.message_keys differs from writer.message_key")


def explain(records: list[tuple[int, int, bytes]]) -> str:
    """The records as a person reads them: each request's metadata and its body as text."""
    lines = []
    for partition, offset, value in records:
        try:
            requests = decode_bundle(value)
        except Exception as exc:  # noqa: BLE001
            lines.append(f"record ({partition}, {offset}): no bundle ({exc}): {value[:300]!r}")
            continue
        lines.append(f"record ({partition}, {offset}): {len(requests)} request(s)")
        for i, r in enumerate(requests):
            lines.append(
                f"  [{i}] project={r.project!r} received_at_ms={r.received_at_ms} ip={r.ip!r} "
                f"user_agent={r.user_agent!r}"
            )
            lines.append(f"      body={r.body.decode('utf-8', 'backslashreplace')[:3000]}")
    return "\n".join(lines)
