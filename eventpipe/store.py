"""ClickHouse access for every part of eventpipe: one client, two backends.

clickhouse-connect talks to the embedded chDB engine (``interface="chdb"``,
the default, a local directory) or to a ClickHouse server (``clickhouse_url``)
with the same SQL. This module is the narrow seam: connect, migrate, insert
an Arrow table, run a query. The server path is only unit-tested here: no
ClickHouse server can be installed on the project's machines.

Inserts are the one place the two backends differ, in transport only: to a server,
clickhouse-connect sends the Arrow table as the body of ``INSERT … FORMAT Arrow``; on chDB
it would write that body to a temporary file for ``INSERT … FROM INFILE``, so the store
instead reads the table in memory with chDB's ``Python()`` table function
(``INSERT … SELECT … FROM Python(table)``), through a chDB handle of its own:
1.1 µs less CPU per ``events`` row (6.6 → 5.5 µs with every view, benchmarks/README.md).
The same columns, the same settings, the same deduplication token either way.
"""

from __future__ import annotations

import importlib.resources
import re
import threading
import weakref
from dataclasses import dataclass

import chdb
import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.external import ExternalData

from eventpipe.settings import Settings

MIGRATIONS_TABLE = "schema_migrations"


def connect(settings: Settings, readonly: bool = False):
    """A clickhouse-connect client for the configured store; ``readonly`` ones refuse every write.

    Analysts get their own read-only client: the chDB backend keeps a failed query's settings on
    its client, so a refused write on a shared client would leave the processor's writer read-only.
    That client carries the analyst limits (a timeout and a row limit, from settings), then
    ``readonly=1``, last: from there on no query may change a setting, so neither a ``SETTINGS``
    clause nor a ``SET`` lifts the limits (with ``readonly=2`` a ``SET max_result_rows = 0`` would
    stay on this shared client for every later query).
    """
    extra = {}
    if readonly:
        extra["settings"] = {
            "max_execution_time": settings.query_timeout,
            "max_result_rows": settings.query_max_rows,
            "result_overflow_mode": "throw",  # an error, never a silently cut result
            "readonly": 1,
        }
    if settings.clickhouse_url:
        return clickhouse_connect.get_client(dsn=settings.clickhouse_url, **extra)
    settings.store_dir.mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(interface="chdb", path=str(settings.store_dir.resolve()), **extra)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for each file in schemas/clickhouse, in order."""
    out = []
    for entry in importlib.resources.files("eventpipe.schemas").joinpath("clickhouse").iterdir():
        match = re.fullmatch(r"(\d{4})_(.+)\.sql", entry.name)
        if match:
            out.append((int(match[1]), match[2], entry.read_text()))
    return sorted(out)


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def migrate(client) -> list[str]:
    """Apply the migrations not yet applied; return the names applied now."""
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, "
        "applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for version, name, sql in migration_files():
        if version in done:
            continue
        for statement in _statements(sql):
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[version, name]], column_names=["version", "name"])
        applied.append(f"{version:04d}_{name}")
    return applied


def _literal(value) -> str:
    """A setting's value as ClickHouse SQL: numbers as they are, anything else a quoted string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def insert_statement(table: str, columns: list[str], source: str, settings: dict) -> str:
    """``INSERT INTO table (columns) SELECT columns FROM source SETTINGS …``: chDB's in-memory insert."""
    names = ", ".join(quote_identifier(c) for c in columns)
    clause = ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())
    return f"INSERT INTO {quote_identifier(table)} ({names}) SELECT {names} FROM {source}" + (
        f" SETTINGS {clause}" if clause else ""
    )


class StoreUnavailable(RuntimeError):
    """A write the store refused; the processor retries it with backoff."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]

    def to_json(self) -> dict:
        return {"columns": self.columns, "rows": [list(r) for r in self.rows]}


class Store:
    """A client plus a lock: chDB sessions are not safe to use from two threads at once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = connect(settings)
        self.failpoint = settings.store_failpoint
        self._lock = threading.Lock()
        self._reader = None
        # inserts on chDB read the Arrow table in memory on a handle of their own (the module docstring)
        self._embedded = None if settings.clickhouse_url else chdb.connect(str(settings.store_dir.resolve()))
        # closed at the latest when the interpreter exits, before chDB's own teardown: a handle left to the
        # garbage collector then crashed the processor (SIGSEGV) on SIGTERM; clickhouse-connect does the same
        self._close_embedded = weakref.finalize(self, self._embedded.close) if self._embedded is not None else None

    def migrate(self) -> list[str]:
        with self._lock:
            return migrate(self.client)

    def _check_failpoint(self, after: bool = False) -> None:
        """Fail a write before it is made; or, when the failpoint file says ``after``, once it went through."""
        try:
            mode = self.failpoint.read_text().strip() if self.failpoint is not None else None
        except FileNotFoundError:
            return
        if mode is not None and (mode == "after") == after:
            raise StoreUnavailable(
                f"store writes are failing ({self.failpoint} exists)"
                if not after
                else f"store write went through but reports failure ({self.failpoint} says after)"
            )

    def insert_arrow(self, table: str, data: pa.Table, token: str | None = None) -> None:
        """Insert an Arrow table; with ``token``, a repeat of the same token is dropped, rollups included."""
        # The processors bound the days of a batch (too old is rejected, too far ahead placed at receipt), so
        # ClickHouse's per-insert partition guard (100) could only turn a backlog of old events into a stall.
        settings = {"max_partitions_per_insert_block": 0}
        if token:
            settings |= {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}
        with self._lock:
            self._check_failpoint()
            if self._embedded is None:
                self.client.insert_arrow(table, data, settings=settings)
            else:
                eventpipe_rows = data  # noqa: F841 - chDB's Python() finds the table by this local's name
                self._embedded.query(insert_statement(table, data.column_names, "Python(eventpipe_rows)", settings))
            self._check_failpoint(after=True)

    def query_keys(self, sql: str, keys: bytes) -> QueryResult:
        """Run ``sql``, in which ``{keys}`` names a table of one column ``key UInt64`` holding ``keys`` (packed
        little-endian UInt64s): a micro-batch's 50-60k message keys go to ClickHouse as a table, not as a 1 MB
        array literal for its SQL parser (the messageId lookup: 0.98 -> 0.54 µs CPU per event on chDB). chDB
        reads the table in memory through ``Python()``; a server gets it as external data in RowBinary, whose
        bytes are the keys as they are (that path is only unit-tested: no server runs on these machines)."""
        with self._lock:
            if self._embedded is None:
                data = ExternalData(file_name="eventpipe_keys", data=keys, fmt="RowBinary", structure="key UInt64")
                result = self.client.query(sql.replace("{keys}", "eventpipe_keys"), external_data=data)
                return QueryResult(list(result.column_names), list(result.result_rows))
            column = pa.Array.from_buffers(pa.uint64(), len(keys) // 8, [None, pa.py_buffer(keys)])
            eventpipe_keys = pa.table({"key": column})  # noqa: F841 - chDB's Python() finds the table by this name
            table = self._embedded.query(sql.replace("{keys}", "Python(eventpipe_keys)"), "ArrowTable")
            return QueryResult(table.column_names, list(zip(*(c.to_pylist() for c in table.columns))))

    def query_arrow(self, sql: str) -> pa.Table:
        """Run one statement of the pipeline's own (not analysts'), its result as an Arrow table."""
        with self._lock:
            if self._embedded is None:
                return self.client.query_arrow(sql)
            return self._embedded.query(sql, "ArrowTable")

    def insert_rows(self, table: str, rows: list[list], columns: list[str]) -> None:
        with self._lock:
            self._check_failpoint()
            self.client.insert(table, rows, column_names=columns)

    def query(self, sql: str, readonly: bool = False, parameters: dict | None = None) -> QueryResult:
        """Run one statement; ``readonly`` is for analysts' SQL: ClickHouse itself refuses writes."""
        with self._lock:
            client = self.client
            if readonly:
                sql = sql.strip().rstrip(";").strip()
                if ";" in sql:
                    raise ValueError("one statement per query")
                if self._reader is None:
                    self._reader = connect(self.settings, readonly=True)
                client = self._reader
            try:
                result = client.query(sql, parameters=parameters)
            except Exception:
                if readonly:
                    # chDB hands the part of a failed query's output it had already produced (rows before
                    # the row limit or the timeout hit) to the next query on the same connection: a failed
                    # analyst query gets a fresh reader.
                    self._reader = None
                    client.close()
                raise
            return QueryResult(list(result.column_names), list(result.result_rows))

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
            if self._close_embedded is not None:
                self._close_embedded()  # once: a finalizer runs at most one time
                self._embedded = None
            self.client.close()
