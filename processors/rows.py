"""Kafka bundles -> one Arrow ``events`` table plus rejects: the processor's hot path, native.

Issue 12: the per-event Python of ``eventpipe.processors.rows_reference`` (~11 µs per event) was the whole
budget of 150,000 events/s per core. Here Python handles records and requests only: it decodes each
bundle (msgspec), hands every request's body and metadata to the Rust engine ``eventpipe._explode``,
which parses, judges, corrects and flags each event and returns the columns as Arrow buffers (no
Python object per event). What needs a value per *distinct* input stays in Python, vectorised back
over the rows: IP anonymisation and the user-agent parse. The revenue column is rounded by the same
Arrow kernel as the reference.

The engine judges exactly what the reference would and hands back whole requests it does not judge
itself (rejects, unusual timestamp forms, schema violations: ``_explode``'s docstring lists them);
those go through the reference ``Judge`` and their rows are merged back in input order. The result
is identical to ``rows_reference.explode`` for any input (tests/test_native_explode.py), so it is
deterministic and total in the same way, which exactly-once replays rely on.
"""

from __future__ import annotations

import functools
import json

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from eventpipe import _explode
from eventpipe.processors import user_agents
from eventpipe.processors.rows_reference import (  # noqa: F401 - the batch contract is defined by the reference
    EVENTS_SCHEMA,
    STRING_COLUMNS,
    REJECTED_SCHEMA,
    REVENUE,
    UTC_MS,
    Exploded,
    Judge,
    Rules,
    anonymize_ip,
    parse_ms,
)
from eventpipe.processors.rows_reference import explode as reference_explode
from eventpipe.schemas import registry
from eventpipe.schemas.bundle import decode_bundle

# the engine's string columns, in the order it returns them
_NATIVE_STRINGS = (
    *STRING_COLUMNS,
    "properties",
    "traits",
    "context",
    "user_agent",
    "group_id",
    "previous_id",
    "client_ip",
    "effective_user_agent",
)
_FLAGS = EVENTS_SCHEMA.field("flags").type

# the slow path, measured: requests the engine handed to the per-event Python reference
DEFERRED = Counter(
    "eventpipe_processor_requests_judged_in_python_total",
    "Requests whose events the native engine left to the Python reference (rejects, unusual "
    "timestamps, schema violations)",
)


@functools.lru_cache(maxsize=16)
def _engine(max_age_ms: int, max_future_ms: int, max_batch_bytes: int, modes: tuple) -> _explode.Engine:
    """One engine per set of rules, with the registry's schemas compiled once."""
    schemas = [(name, json.dumps(entry[1].schema)) for name, entry in registry.validators().items()]
    return _explode.Engine(max_age_ms, max_future_ms, max_batch_bytes, dict(modes), schemas)


def engine_for(rules: Rules) -> _explode.Engine:
    return _engine(
        rules.max_age_ms, rules.max_future_ms, rules.max_batch_bytes, tuple(sorted(rules.schema_modes.items()))
    )


def bundles_to_table(records: list[tuple[int, int, bytes]], rules: Rules = Rules()) -> pa.Table:
    """The stored rows only (see ``explode``)."""
    return explode(records, rules).events


def _buf(data: bytes) -> pa.Buffer:
    return pa.py_buffer(data)


def _strings(n: int, part) -> pa.Array:
    return pa.Array.from_buffers(pa.string(), n, [None, _buf(part[0]), _buf(part[1])])


def _per_distinct(values: pa.Array, fn, types: list[pa.DataType]) -> list[pa.Array]:
    """``fn`` applied once per distinct value of ``values``, its results mapped back to every row."""
    encoded = pc.dictionary_encode(values)
    outputs = [fn(v) for v in encoded.dictionary.to_pylist()]
    if len(types) == 1:
        return [pa.array(outputs, types[0]).take(encoded.indices)]
    columns = list(zip(*outputs)) if outputs else [()] * len(types)
    return [pa.array(column, t).take(encoded.indices) for column, t in zip(columns, types)]


def explode(records: list[tuple[int, int, bytes]], rules: Rules = Rules()) -> Exploded:
    """Rows for every event in ``records`` = [(partition, offset, bundle bytes)], in record order, and a
    row of ``events_rejected`` for every event or record that cannot be stored; the same as
    ``rows_reference.explode``."""
    requests: list[tuple] = []
    items: list[tuple] = []  # by ordinal: what the reference may have to judge, in input order
    for partition, offset, value in records:
        try:
            decoded = decode_bundle(value)
        except Exception:  # noqa: BLE001 - the reference words the reject of a record that is no bundle
            items.append((partition, offset, value, None, None))
            continue
        for r_index, request in enumerate(decoded):
            requests.append(
                (
                    len(items),
                    partition,
                    offset,
                    r_index,
                    request.project,
                    request.received_at_ms,
                    request.ip,
                    request.user_agent,
                    request.body,
                    request.overflow,
                )
            )
            items.append((partition, offset, None, r_index, request))
    try:
        out = engine_for(rules).explode(requests)
    except OverflowError:  # a column beyond Arrow's 2 GiB of strings: the reference's rows, in large batches too
        return reference_explode(records, rules)
    n, parts = out[0], out[1:]
    deferred = set(parts[-1])
    if deferred:
        DEFERRED.inc(len(deferred))
    judge = Judge(rules)
    for ordinal, (partition, offset, value, r_index, request) in enumerate(items):
        judge.ordinal = ordinal
        if request is None:
            judge.decode(partition, offset, value)
        elif ordinal in deferred:
            judge.request(partition, offset, r_index, request)
    python = judge.finish()
    events = _table(n, parts, rules)
    if python.events.num_rows:
        order = pa.concat_arrays(
            [
                pc.add(
                    pc.multiply(
                        pa.Array.from_buffers(pa.uint32(), n, [None, _buf(parts[-3])]).cast(pa.uint64()),
                        pa.scalar(1 << 32, pa.uint64()),
                    ),
                    pa.Array.from_buffers(pa.uint32(), n, [None, _buf(parts[-2])]).cast(pa.uint64()),
                ),
                pa.array([(o << 32) + e for o, e in judge.kept], pa.uint64()),
            ]
        )
        events = pa.concat_tables([events, python.events]).take(pc.sort_indices(order))
    return Exploded(events, python.rejected)


def _table(n: int, parts: tuple, rules: Rules) -> pa.Table:
    """The engine's buffers as an ``events`` table (EVENTS_SCHEMA)."""
    strings = {name: _strings(n, part) for name, part in zip(_NATIVE_STRINGS, parts)}
    (ts, client, client_valid, sent, sent_valid, received, revenue, flags, partition, offset) = parts[
        len(_NATIVE_STRINGS) : len(_NATIVE_STRINGS) + 10
    ]
    columns = dict(strings)
    columns["timestamp"] = pa.Array.from_buffers(UTC_MS, n, [None, _buf(ts)])
    columns["client_timestamp"] = pa.Array.from_buffers(UTC_MS, n, [_buf(client_valid), _buf(client)])
    columns["sent_at"] = pa.Array.from_buffers(UTC_MS, n, [_buf(sent_valid), _buf(sent)])
    columns["received_at"] = pa.Array.from_buffers(UTC_MS, n, [None, _buf(received)])
    columns["revenue"] = pc.round(pa.Array.from_buffers(pa.float64(), n, [None, _buf(revenue)]), 4).cast(REVENUE)
    items = pa.Array.from_buffers(pa.string(), len(flags[1]) // 4 - 1, [None, _buf(flags[1]), _buf(flags[2])])
    columns["flags"] = pa.Array.from_buffers(_FLAGS, n, [None, _buf(flags[0])], children=[items])
    columns["kafka_partition"] = pa.Array.from_buffers(pa.uint16(), n, [None, _buf(partition)])
    columns["kafka_offset"] = pa.Array.from_buffers(pa.uint64(), n, [None, _buf(offset)])
    (columns["ip"],) = _per_distinct(strings["client_ip"], lambda ip: anonymize_ip(ip, rules.ip_mode), [pa.string()])
    ua = _per_distinct(strings["effective_user_agent"], user_agents.parse, [pa.string()] * 5 + [pa.bool_()])
    columns.update(zip(user_agents.COLUMNS, ua))
    return pa.Table.from_arrays([columns[name] for name in EVENTS_SCHEMA.names], schema=EVENTS_SCHEMA)


def message_keys(events: pa.Table) -> pa.Buffer:
    """``message_keys.key`` of each row (MD5 of project \\0 messageId, first 8 bytes LE), as uint64 bytes."""
    project, mid = (events.column(c).combine_chunks() for c in ("project", "message_id"))

    def bufs(a):
        _, offsets, data = a.buffers()
        return memoryview(offsets).cast("B"), a.offset, memoryview(data if data is not None else b"").cast("B")

    return _explode.message_keys(events.num_rows, *bufs(project), *bufs(mid))
