"""What ``eventpipe forget`` costs on the embedded chDB store, by table size.

Fills a fresh store with N synthetic events of one project (through the real insert path: the
``events`` table with its rollup and message-key views), then forgets a few people one by one and
prints each step's seconds (eventpipe/forget.py), checking ``eventpipe verify`` after each.

    python benchmarks/forget_cost.py --events 1000000 --people 3 --name forget-cost
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from eventpipe.forget import forget
from eventpipe.processors.rows import EVENTS_SCHEMA
from eventpipe.settings import Settings
from eventpipe.store import Store
from eventpipe.verify import verify

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def synthetic_events(n: int, users: int, days: float = 7.0, seed: int = 1, first_offset: int = 0) -> pa.Table:
    """``n`` events of project ``acme`` from ``users`` people over ``days``, every column of EVENTS_SCHEMA."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    ts = START_MS + rng.integers(0, int(days * 86_400_000), n)
    names = np.array(["Viewed", "Clicked", "Signed Up", "Order Completed", "$screen"])
    columns = {}
    for f in EVENTS_SCHEMA:
        t = f.type
        if f.name == "project":
            columns[f.name] = pa.array(["acme"] * n)
        elif f.name == "event":
            columns[f.name] = pa.array(names[rng.integers(0, len(names), n)])
        elif f.name == "message_id":
            columns[f.name] = pa.array([f"m{first_offset + i}" for i in range(n)])
        elif f.name == "anonymous_id":
            columns[f.name] = pa.array(np.char.add("anon-", user.astype(str)))
        elif f.name == "user_id":
            columns[f.name] = pa.array(np.where(user % 2 == 0, np.char.add("user-", user.astype(str)), ""))
        elif f.name == "platform":
            columns[f.name] = pa.array(np.array(["ios", "android", "web"])[user % 3])
        elif f.name == "app_version":
            columns[f.name] = pa.array(np.array(["1.0", "1.1", "2.0"])[user % 3])
        elif f.name in ("timestamp", "received_at", "client_timestamp", "sent_at"):
            columns[f.name] = pa.array(ts, pa.int64()).cast(t)
        elif f.name == "revenue":
            columns[f.name] = pa.array(((user % 7) * 1.25).round(4), pa.float64()).cast(t)
        elif f.name == "flags":
            columns[f.name] = pa.array([[]] * n, t)
        elif f.name == "kafka_partition":
            columns[f.name] = pa.array(user % 12, t)
        elif f.name == "kafka_offset":
            columns[f.name] = pa.array(np.arange(first_offset, first_offset + n), t)
        elif pa.types.is_boolean(t):
            columns[f.name] = pa.array(np.zeros(n, bool))
        elif f.name in ("properties", "traits", "context"):
            columns[f.name] = pa.array(["{}"] * n)
        else:
            columns[f.name] = pa.array([""] * n)
    return pa.Table.from_pydict(columns, schema=EVENTS_SCHEMA)


def run(events: int, people: int, users: int, chunk: int = 200_000) -> dict:
    out = {"events": events, "users": users, "forgets": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings.from_env({}, store_path=Path(tmp) / "store"))
        store.migrate()
        t0 = time.perf_counter()
        for start in range(0, events, chunk):
            table = synthetic_events(min(chunk, events - start), users, seed=start, first_offset=start)
            store.insert_arrow("events", table, token=f"bench/{start}")
        out["fill_seconds"] = round(time.perf_counter() - t0, 2)
        q = lambda sql, params=None: store.query(sql, parameters=params).rows  # noqa: E731
        for i in range(people):
            uid = i * 2  # even ids have a user id
            report = forget(q, "acme", f"user-{uid}", [f"anon-{uid}"])
            checks = verify(q)
            left = q(
                "SELECT count() FROM events WHERE user_id = {u:String} OR anonymous_id = {a:String}",
                {"u": f"user-{uid}", "a": f"anon-{uid}"},
            )[0][0]
            out["forgets"].append(
                {
                    "deleted": report.events_deleted,
                    "keys_1m": report.keys_1m,
                    "keys_1h": report.keys_1h,
                    "seconds": round(report.seconds, 3),
                    "steps": report.steps,
                    "verify_ok": all(c.ok for c in checks),
                    "left": left,
                }
            )
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--name", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    doc = run(args.events, args.people, args.users)
    doc["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(doc, indent=1))
    if args.name:
        (Path(__file__).parent / "results" / f"{args.name}.json").write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
