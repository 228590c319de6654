"""The store seam on the pinned clickhouse-connect + chDB pair (its chDB backend is experimental upstream)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

import eventpipe.store as store_mod
from eventpipe.store import Store, insert_statement, migration_files
from eventpipe.processors.rows import EVENTS_SCHEMA, explode
from tests.conftest import make_settings
from tests.test_judging_properties import batch_and_rules

_tokens = itertools.count()


def _rows(n: int, offset: int = 0) -> pa.Table:
    cols = {f.name: [] for f in EVENTS_SCHEMA}
    for i in range(n):
        for f in EVENTS_SCHEMA:
            if pa.types.is_decimal(f.type):
                cols[f.name].append(Decimal(i) / 100)
            elif pa.types.is_timestamp(f.type):
                cols[f.name].append(1_767_225_600_000 + i)
            elif pa.types.is_boolean(f.type):
                cols[f.name].append(i % 2 == 0)
            elif pa.types.is_integer(f.type):
                cols[f.name].append(offset + i)
            else:
                cols[f.name].append(f"{f.name}-{offset + i}")
    return pa.Table.from_pydict(cols, schema=EVENTS_SCHEMA)


def test_migrations_apply_once_and_survive_reopen(tmp_path):
    settings = make_settings(tmp_path)
    store = Store(settings)
    names = [f"{v:04d}_{n}" for v, n, _ in migration_files()]
    assert store.migrate() == names
    assert store.migrate() == []
    store.insert_arrow("events", _rows(10))
    store.close()
    reopened = Store(settings)
    assert reopened.migrate() == []
    assert reopened.query("SELECT count(), max(kafka_offset) FROM events").rows == [(10, 9)]
    reopened.close()


def test_insert_arrow_with_dedup_token(tmp_path):
    store = Store(make_settings(tmp_path))
    store.migrate()
    store.insert_arrow("events", _rows(1000), token="p0-o0")
    store.insert_arrow("events", _rows(1000), token="p0-o0")  # a replay of the same batch
    store.insert_arrow("events", _rows(500, offset=1000), token="p0-o1000")
    assert store.query("SELECT count(), uniqExact(message_id) FROM events").rows == [(1500, 1500)]
    store.close()


def test_server_url_uses_the_same_client(tmp_path, monkeypatch):
    """No ClickHouse server can run on these machines: this path is checked only up to the client call."""
    calls = []
    monkeypatch.setattr(store_mod.clickhouse_connect, "get_client", lambda **kw: calls.append(kw) or object())
    store_mod.connect(make_settings(tmp_path, clickhouse_url="clickhouse://user:pw@ch.internal:8123/analytics"))
    store_mod.connect(make_settings(tmp_path, clickhouse_url="clickhouse://ch.internal/a"), readonly=True)
    assert calls == [
        {"dsn": "clickhouse://user:pw@ch.internal:8123/analytics"},
        {
            "dsn": "clickhouse://ch.internal/a",
            "settings": {
                "max_execution_time": 10.0,
                "max_result_rows": 100_000,
                "result_overflow_mode": "throw",
                "readonly": 1,
            },
        },
    ]


def test_refused_analyst_writes_leave_the_writer_writable(tmp_path):
    """Analyst SQL runs read-only on its own client; a refusal there must not leak into the writer's client."""
    store = Store(make_settings(tmp_path))
    store.migrate()
    for sql in ("INSERT INTO events (project) VALUES ('x')", "DROP TABLE events", "SELECT 1; DROP TABLE events"):
        try:
            store.query(sql, readonly=True)
        except Exception:  # noqa: BLE001 - refused, as it must be
            pass
        else:
            raise AssertionError(f"allowed: {sql}")
    store.insert_arrow("events", _rows(5), token="after-refusals")
    assert store.query("SELECT count() FROM events", readonly=True).rows == [(5,)]
    store.close()


# --- the in-memory insert on chDB against clickhouse-connect's own -------------------------------------------
@pytest.fixture(scope="module")
def twin_store(tmp_path_factory):
    store = Store(make_settings(tmp_path_factory.mktemp("twin-store")))
    store.migrate()
    for table in ("events", "events_rejected"):
        for twin in ("memory", "client"):
            store.client.command(f"CREATE TABLE {table}_{twin} AS {table}")
    yield store
    store.close()


def _all_rows(store, table: str, columns: list[str]) -> list[tuple]:
    names = ", ".join(f"`{c}`" for c in columns)
    return store.query(f"SELECT {names} FROM {table} ORDER BY ALL").rows


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(batch_and_rules())
def test_the_in_memory_insert_stores_what_clickhouse_connect_stores(twin_store, case):
    """Store.insert_arrow on chDB reads the Arrow table through ``Python()`` (``INSERT … SELECT``) instead of
    clickhouse-connect's Arrow file: on hostile batches, every column of every row must come out the same
    as clickhouse-connect's insert of the same table (the server path's format)."""
    records, rules = case
    out = explode(records, rules)
    for table, data in (("events", out.events), ("events_rejected", out.rejected)):
        for twin in ("memory", "client"):
            twin_store.client.command(f"TRUNCATE TABLE {table}_{twin}")
        twin_store.insert_arrow(f"{table}_memory", data, token=f"twin/{next(_tokens)}")
        twin_store.client.insert_arrow(f"{table}_client", data)
        assert _all_rows(twin_store, f"{table}_memory", data.column_names) == _all_rows(
            twin_store, f"{table}_client", data.column_names
        )
        assert len(_all_rows(twin_store, f"{table}_memory", data.column_names)) == data.num_rows


def test_settings_reach_the_in_memory_insert_as_literals():
    assert insert_statement("events", ["a", "b`c"], "Python(t)", {"n": 0, "token": "p/0-1,it's"}) == (
        "INSERT INTO `events` (`a`, `b\\`c`) SELECT `a`, `b\\`c` FROM Python(t) SETTINGS n = 0, token = 'p/0-1,it\\'s'"
    )


def test_query_keys_gives_the_keys_as_a_table_on_both_backends(twin_store, tmp_path, monkeypatch):
    """chDB (real): the keys arrive as a table; the server (no server runs here): the same keys go as RowBinary
    external data named in the SQL, checked up to clickhouse-connect's call."""
    keys = [3, 2**64 - 1, 7]
    packed = b"".join(k.to_bytes(8, "little") for k in keys)
    result = twin_store.query_keys("SELECT key, key % 10 AS last FROM {keys} ORDER BY key", packed)
    assert result.columns == ["key", "last"] and result.rows == [(3, 3), (7, 7), (2**64 - 1, 5)]

    calls = []

    class Client:
        def query(self, sql, external_data=None):
            calls.append((sql, external_data))
            return type("R", (), {"column_names": ("key",), "result_rows": [(3,)]})()

    monkeypatch.setattr(store_mod.clickhouse_connect, "get_client", lambda **kw: Client())
    server = Store(make_settings(tmp_path / "server", clickhouse_url="clickhouse://ch.internal/a"))
    assert server.query_keys("SELECT key FROM message_keys WHERE key IN (SELECT key FROM {keys})", packed).rows == [
        (3,)
    ]
    ((sql, data),) = calls
    assert sql == "SELECT key FROM message_keys WHERE key IN (SELECT key FROM eventpipe_keys)"
    (file,) = data.files
    assert (file.name, file.data, file.fmt, file.structure) == ("eventpipe_keys", packed, "RowBinary", "key UInt64")
