"""HTTP in, ClickHouse rows out: the whole pipeline on the real broker and the real chDB engine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

import orjson

from eventpipe.demo import run_demo
from tests.conftest import query, wait_for
from tests.http import get, post


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_n_events_posted_are_exactly_n_rows_with_the_right_fields(stack):
    run_id = uuid.uuid4().hex
    url = stack.collector_url + "/v1/batch"
    sent_at = datetime.now(timezone.utc) + timedelta(hours=1)  # a client clock one hour fast
    requests, per_request = 60, 10
    for r in range(requests):
        key, project = (("test-key-acme", "acme"), ("test-key-beta", "beta"))[r % 2]
        events = [
            {
                "type": "track",
                "event": f"e2e {run_id}",
                "userId": f"user-{r}",
                "anonymousId": f"anon-{r}",
                "messageId": f"{run_id}-{r}-{i}",
                "timestamp": _iso(sent_at - timedelta(seconds=i)),
                "properties": {"revenue": r + i / 10, "run": run_id},
                "context": {"app": {"version": "1.2.3"}},
            }
            for i in range(per_request)
        ]
        status, _, _ = post(
            url, orjson.dumps({"batch": events, "sentAt": _iso(sent_at)}), key, User_Agent="e2e-test/1.0"
        )
        assert status == 200

    where = f"event = 'e2e {run_id}'"
    total = requests * per_request
    count = wait_for(lambda: query(stack, f"SELECT count() FROM events WHERE {where}")[0][0] == total, timeout=30)
    assert count, query(stack, f"SELECT count() FROM events WHERE {where}")
    assert query(
        stack,
        f"SELECT project, count(), uniqExact(message_id) FROM events WHERE {where} GROUP BY project ORDER BY project",
    ) == [["acme", total // 2, total // 2], ["beta", total // 2, total // 2]]

    row = query(
        stack,
        f"SELECT type, user_id, anonymous_id, properties, context, user_agent, ip, "
        f"toUnixTimestamp64Milli(timestamp), toUnixTimestamp64Milli(client_timestamp), "
        f"toUnixTimestamp64Milli(sent_at), toUnixTimestamp64Milli(received_at) "
        f"FROM events WHERE message_id = '{run_id}-7-3'",
    )
    assert len(row) == 1
    kind, user_id, anon, props, context, ua, ip, ts, client_ts, sent_ms, received_ms = row[0]
    # IPs are truncated by default (EVENTPIPE_IP_MODE=truncate): 127.0.0.1 -> 127.0.0.0
    assert (kind, user_id, anon, ua, ip) == ("track", "user-7", "anon-7", "e2e-test/1.0", "127.0.0.0")
    assert json.loads(props) == {"revenue": 7.3, "run": run_id}
    assert json.loads(context) == {"app": {"version": "1.2.3"}}
    # clock-skew correction: timestamp + (receivedAt - sentAt) puts the event back ~3 s before receipt
    assert sent_ms == int(sent_at.timestamp() * 1000)
    assert client_ts == sent_ms - 3000
    assert ts == client_ts + (received_ms - sent_ms)
    assert received_ms - 3000 == ts


def test_demo_traffic_is_queryable_through_the_cli(stack):
    before = query(stack, "SELECT count() FROM events WHERE user_agent LIKE 'eventpipe-demo%'")[0][0]
    result = asyncio.run(
        run_demo(
            stack.collector_url, "test-key-acme", requests=50, events_per_request=10, seed=7, out=open(os.devnull, "w")
        )
    )
    assert (result.requests, result.failed) == (50, 0)
    target = before + 500
    assert wait_for(
        lambda: query(stack, "SELECT count() FROM events WHERE user_agent LIKE 'eventpipe-demo%'")[0][0] == target,
        timeout=30,
    )
    env = {**os.environ, **stack.settings.env()}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventpipe.cli",
            "query",
            "--format",
            "json",
            "SELECT count() AS n FROM events WHERE user_agent LIKE 'eventpipe-demo%'",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"columns": ["n"], "rows": [[target]]}


def test_query_errors_reach_the_analyst(stack):
    env = {**os.environ, **stack.settings.env()}
    out = subprocess.run(
        [sys.executable, "-m", "eventpipe.cli", "query", "SELECT nope FROM events"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "query failed" in out.stderr and "nope" in out.stderr


def test_analyst_sql_is_read_only(stack):
    before = query(stack, "SELECT count() FROM events")[0][0]
    for sql in (
        "INSERT INTO events (project) VALUES ('x')",
        "DROP TABLE events",
        "ALTER TABLE events DELETE WHERE 1",
        "SELECT 1; DROP TABLE events",
    ):
        url = stack.query_url + "?" + urllib.parse.urlencode({"sql": sql})
        status, _, raw = get(url)
        assert status == 400, sql
        assert orjson.loads(raw)["error"]
    assert query(stack, "SELECT count() FROM events")[0][0] >= before
