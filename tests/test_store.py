"""The store seam on the pinned clickhouse-connect + chDB pair (its chDB backend is experimental upstream)."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

import eventpipe.store as store_mod
from eventpipe.store import Store, migration_files
from eventpipe.processors.rows import EVENTS_SCHEMA
from tests.conftest import make_settings


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
