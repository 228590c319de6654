"""A measured proposal: explode request bodies in ClickHouse instead of in Python.

The processor's floor is per-event Python in ``eventpipe.processors.rows.explode`` (~10 µs per event).
This prototype inserts each accepted request's body as one row of a ``Null`` table whose
materialized view explodes the ``batch`` array with ``JSONExtract`` into the real ``events``
table (and so through the rollups), and compares it, in one run and on the same store, with
today's path: Python ``explode`` plus one Arrow insert. Both write the same realistic
10-event batches (``eventpipe.demo``), 100,000 events per insert.

    python benchmarks/sql_explode.py          # writes results/sql-explode.json

What the prototype leaves out, and a real version would have to keep: the per-event judgement
and its rejects (types, too_old, the schema registry), clock-skew correction with sentAt,
generated messageIds, IP truncation, flags and the platform rules. Its numbers are an upper
bound on the gain, not a drop-in replacement.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from test_micro import BODIES, _records  # noqa: E402

from eventpipe.settings import Settings  # noqa: E402
from eventpipe.store import Store  # noqa: E402
from eventpipe.processors.rows import explode  # noqa: E402

EVENTS = 100_000
ROUNDS = 3

NULL_TABLE = """CREATE TABLE raw_requests (project String, received_at DateTime64(3, 'UTC'), ip String,
    user_agent String, body String, kafka_partition UInt16, kafka_offset UInt64) ENGINE = Null"""

EXPLODE_VIEW = """CREATE MATERIALIZED VIEW raw_requests_mv TO events AS
WITH arrayJoin(JSONExtractArrayRaw(body, 'batch')) AS ev,
     JSONExtract(ev, 'Tuple(type String, event String, messageId String, anonymousId String, userId String,
                            timestamp String, name String)') AS f,
     JSONExtractRaw(ev, 'context') AS ctx,
     JSONExtractRaw(ev, 'properties') AS props,
     parseDateTime64BestEffortOrNull(f.6, 3, 'UTC') AS client
SELECT project, f.1 AS type, if(f.1 = 'track', f.2, concat('$', f.1)) AS event, f.3 AS message_id,
       f.4 AS anonymous_id, f.5 AS user_id, coalesce(client, received_at) AS timestamp,
       coalesce(client, toDateTime64(0, 3, 'UTC')) AS client_timestamp, toDateTime64(0, 3, 'UTC') AS sent_at,
       received_at, lower(JSONExtractString(ctx, 'os', 'name')) AS platform,
       JSONExtractString(ctx, 'app', 'name') AS app_name, JSONExtractString(ctx, 'app', 'version') AS app_version,
       JSONExtractString(ctx, 'app', 'build') AS app_build, JSONExtractString(ctx, 'os', 'name') AS os_name,
       JSONExtractString(ctx, 'os', 'version') AS os_version,
       JSONExtractString(ctx, 'device', 'manufacturer') AS device_manufacturer,
       JSONExtractString(ctx, 'device', 'model') AS device_model,
       JSONExtractString(ctx, 'library', 'name') AS library_name,
       JSONExtractString(ctx, 'library', 'version') AS library_version,
       JSONExtractString(ctx, 'locale') AS locale, JSONExtractString(ctx, 'timezone') AS timezone,
       JSONExtractString(ctx, 'page', 'path') AS page_path, JSONExtractString(ctx, 'page', 'url') AS page_url,
       JSONExtractString(ctx, 'page', 'referrer') AS page_referrer, f.7 AS name,
       toDecimal64(JSONExtractFloat(props, 'revenue'), 4) AS revenue, props AS properties,
       JSONExtractRaw(ev, 'traits') AS traits, ctx AS context, ip, user_agent,
       CAST([], 'Array(String)') AS flags, kafka_partition, kafka_offset
FROM raw_requests"""


def _requests_table(n: int) -> pa.Table:
    return pa.table(
        {
            "project": ["bench"] * n,
            "received_at": pa.array([1_764_000_000_000] * n, pa.timestamp("ms", tz="UTC")),
            "ip": ["10.0.0.1"] * n,
            "user_agent": ["bench/1.0"] * n,
            "body": [BODIES[i % len(BODIES)].decode() for i in range(n)],
            "kafka_partition": pa.array([i % 12 for i in range(n)], pa.uint16()),
            "kafka_offset": pa.array(range(n), pa.uint64()),
        }
    )


def _cpu_us_per_event(work, events: int) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) / events * 1e6


def main() -> int:
    store = Store(Settings.from_env({}, data_dir=Path(tempfile.mkdtemp(prefix="eventpipe-sql-explode-"))))
    store.migrate()
    store.query(NULL_TABLE)
    store.query(EXPLODE_VIEW)
    requests = _requests_table(EVENTS // 10)
    records = _records(EVENTS)
    sql, python = [], []
    for i in range(ROUNDS):  # interleaved, so drift on a shared machine hits both alike
        sql.append(_cpu_us_per_event(lambda: store.insert_arrow("raw_requests", requests, token=f"sql-{i}"), EVENTS))
        python.append(
            _cpu_us_per_event(
                lambda: store.insert_arrow("events", explode(records).events, token=f"python-{i}"), EVENTS
            )
        )
        print(
            f"sql-explode: round {i + 1}: ClickHouse {sql[-1]:.2f} µs/event, Python {python[-1]:.2f} µs/event",
            flush=True,
        )
    stored = store.query("SELECT count() FROM events").rows[0][0]
    assert stored == 2 * ROUNDS * EVENTS, stored
    doc = {
        "command": "python benchmarks/sql_explode.py",
        "events_per_insert": EVENTS,
        "what": "CPU µs per event to turn 10-event request bodies into events rows, rollups included "
        "(chDB in-process; median of interleaved rounds)",
        "clickhouse_explode_us_per_event": round(statistics.median(sql), 2),
        "python_explode_us_per_event": round(statistics.median(python), 2),
        "speedup": round(statistics.median(python) / statistics.median(sql), 2),
        "rounds": {"clickhouse": sql, "python": python},
        "left_out": "rejects and their reasons, the schema registry, sentAt skew correction, generated "
        "messageIds, IP truncation, flags, platform rules",
    }
    path = harness.write_result("sql-explode", doc)
    print(
        f"sql-explode: ClickHouse {doc['clickhouse_explode_us_per_event']} µs/event, Python "
        f"{doc['python_explode_us_per_event']} µs/event ({doc['speedup']}x); wrote {path}"
    )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
