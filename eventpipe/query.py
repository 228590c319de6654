"""Analyst SQL from the command line, wherever the store is reachable, in the format the analyst wants.

chDB lets one process own a store directory. When the pipeline runs, the
processor owns it, so ``eventpipe query`` asks the processor's ``/query``
endpoint; when nothing runs (or a ClickHouse server is configured), it opens
the store itself. Either way the SQL runs on the read-only client
(``store.connect(readonly=True)``): writes are refused, and a query stops at
``query_timeout`` seconds or ``query_max_rows`` result rows.

Output: ``table`` (aligned text), ``csv`` (RFC 4180, header row), ``json``
(``{"columns": [...], "rows": [[...], ...]}``) or ``parquet`` (typed columns:
the ClickHouse types come from ``DESCRIBE (query)``, so a ``DateTime64`` is a
timestamp and a ``Decimal`` a decimal in the file, also through the processor's
JSON endpoint).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import re
import urllib.error
import urllib.request
import zoneinfo
from pathlib import Path

from eventpipe.settings import Settings
from eventpipe.store import QueryResult, Store

FORMATS = ("table", "csv", "json", "parquet")


class QueryError(RuntimeError):
    pass


def run_query(settings: Settings, sql: str, timeout: float | None = None) -> QueryResult:
    if timeout is None:  # the query's own limit, plus time for a write that holds the store first
        timeout = settings.query_timeout + 30.0
    if not settings.clickhouse_url:
        url = f"http://127.0.0.1:{settings.processor_web_port}/query"
        request = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                doc = json.load(resp)
            return QueryResult(doc["columns"], [tuple(r) for r in doc["rows"]])
        except urllib.error.HTTPError as exc:
            raise QueryError(json.load(exc).get("error", str(exc))) from None
        except (urllib.error.URLError, ConnectionError):
            pass  # no running processor: open the store directly
    store = Store(settings)
    try:
        return store.query(sql, readonly=True)
    except Exception as exc:  # noqa: BLE001 - ClickHouse's message is what the analyst needs
        raise QueryError(str(exc)) from None
    finally:
        store.close()


def column_types(settings: Settings, sql: str) -> list[str] | None:
    """The ClickHouse type of each result column of ``sql`` (None when the statement cannot be described)."""
    try:
        rows = run_query(settings, f"DESCRIBE TABLE ({sql.strip().rstrip(';')})").rows
    except QueryError:
        return None  # e.g. SHOW TABLES: the values' own Python types decide
    return [str(row[1]) for row in rows]


# --- text formats -----------------------------------------------------------


def _text(value) -> str:
    """One value as text: ISO 8601 times, JSON for arrays/maps/tuples, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def format_table(result: QueryResult) -> str:
    cells = [[str(c) for c in result.columns]] + [[_text(v) for v in row] for row in result.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})"


def format_csv(result: QueryResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([_text(v) for v in row] for row in result.rows)
    return out.getvalue()


def _json_default(value):
    return value.isoformat() if isinstance(value, (dt.date, dt.time)) else str(value)


def format_json(result: QueryResult) -> str:
    return json.dumps(result.to_json(), default=_json_default)


# --- Parquet ----------------------------------------------------------------

_INTS = {f"{u}Int{n}": f"{u.lower()}int{n}" for u in ("", "U") for n in (8, 16, 32, 64)}


def _unwrap(ch_type: str) -> str:
    while True:
        m = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", ch_type)
        if not m:
            return ch_type
        ch_type = m[1]


def _args(ch_type: str) -> list[str]:
    """The top-level arguments of ``Name(a, b(c, d))``: ``["a", "b(c, d)"]``."""
    inner = ch_type[ch_type.index("(") + 1 : -1]
    out, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(inner[start:i].strip())
            start = i + 1
    return out + [inner[start:].strip()]


def _tz(ch_type: str) -> str:
    m = re.search(r"'([^']+)'", ch_type)
    return m[1] if m else "UTC"


def arrow_type(ch_type: str):
    """The Arrow type for a ClickHouse type, or None where pyarrow should infer it from the values."""
    import pyarrow as pa

    t = _unwrap(ch_type.strip())
    if t in _INTS:
        return getattr(pa, _INTS[t])()
    if t in ("Float32", "Float64"):
        return pa.float32() if t == "Float32" else pa.float64()
    if t == "Bool":
        return pa.bool_()
    if t in ("Date", "Date32"):
        return pa.date32()
    if t == "DateTime" or t.startswith("DateTime("):
        return pa.timestamp("s", tz=_tz(t))
    if t.startswith("DateTime64("):
        precision = int(re.match(r"DateTime64\((\d+)", t)[1])
        unit = "ms" if precision <= 3 else "us" if precision <= 6 else "ns"
        return pa.timestamp(unit, tz=_tz(t))
    if m := re.fullmatch(r"Decimal\((\d+),\s*(\d+)\)", t):
        precision, scale = int(m[1]), int(m[2])
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if m := re.fullmatch(r"Decimal(32|64|128|256)\((\d+)\)", t):
        precision = {"32": 9, "64": 18, "128": 38, "256": 76}[m[1]]
        return pa.decimal128(precision, int(m[2])) if precision <= 38 else pa.decimal256(precision, int(m[2]))
    if (
        t in ("String", "UUID", "IPv4", "IPv6")
        or t.startswith(("FixedString(", "Enum8(", "Enum16("))
        or t.startswith("Int128")
        or t.startswith("UInt128")
        or t.endswith("Int256")
    ):
        return pa.string()
    if t.startswith("Array("):
        inner = arrow_type(_args(t)[0])
        return pa.list_(inner) if inner is not None else None
    if t.startswith("Map("):
        key, value = (arrow_type(a) for a in _args(t))
        return pa.map_(key, value) if key is not None and value is not None else None
    return None  # Map, Tuple, JSON, ...: inferred from the values


def _converter(arrow_t, ch_type: str):
    """A function turning one value (native from chDB, or its JSON form from /query) into what Arrow takes."""
    import pyarrow as pa

    if arrow_t is None:
        return lambda v: v
    if pa.types.is_timestamp(arrow_t):
        tz = dt.timezone.utc if arrow_t.tz in (None, "UTC") else zoneinfo.ZoneInfo(arrow_t.tz)

        def to_datetime(v):
            if v is None:
                return None
            if not isinstance(v, dt.datetime):
                v = dt.datetime.fromisoformat(str(v))
            return v if v.tzinfo else v.replace(tzinfo=tz)  # naive values are in the column's zone

        return to_datetime
    if pa.types.is_date(arrow_t):
        return lambda v: v if v is None or isinstance(v, dt.date) else dt.date.fromisoformat(str(v))
    if pa.types.is_decimal(arrow_t):
        return lambda v: v if v is None or isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
    if pa.types.is_string(arrow_t):
        return lambda v: v if v is None or isinstance(v, str) else str(v)
    if pa.types.is_list(arrow_t):
        inner = _converter(arrow_t.value_type, _args(_unwrap(ch_type))[0])
        return lambda v: v if v is None else [inner(x) for x in v]
    if pa.types.is_map(arrow_t):
        key_type, value_type = _args(_unwrap(ch_type))
        kc, vc = _converter(arrow_t.key_type, key_type), _converter(arrow_t.item_type, value_type)
        return lambda v: v if v is None else [(kc(k), vc(x)) for k, x in dict(v).items()]
    return lambda v: v


def to_arrow(result: QueryResult, types: list[str] | None = None):
    """The result as an Arrow table, typed from ClickHouse ``types`` where given (one per column)."""
    import pyarrow as pa

    if types is not None and len(types) != len(result.columns):
        types = None
    arrays = []
    for i, name in enumerate(result.columns):
        values = [row[i] for row in result.rows]
        ch_type = types[i] if types else ""
        target = arrow_type(ch_type) if ch_type else None
        try:
            arrays.append(pa.array([_converter(target, ch_type)(v) for v in values], type=target))
        except (pa.ArrowException, ValueError, TypeError, decimal.InvalidOperation):
            arrays.append(pa.array([None if v is None else _text(v) for v in values], type=pa.string()))
    return pa.table(arrays, names=[str(c) for c in result.columns])


def write_parquet(result: QueryResult, path: Path, types: list[str] | None = None) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(result, types), str(path), compression="zstd")


def render(result: QueryResult, fmt: str) -> str:
    """``table``, ``csv`` or ``json`` text (Parquet is binary: ``write_parquet``)."""
    return {"table": format_table, "csv": format_csv, "json": format_json}[fmt](result)
