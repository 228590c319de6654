"""``eventpipe forget``: a person's rows leave events, events_rejected and the rollups; later events are suppressed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import orjson

from eventpipe.forget import KEYS_INSERT, LOG_INSERT, PERSON, forget, run_forget, statements
from eventpipe.processors.forgetting import Suppressor
from eventpipe.processors.rows import Rules, explode
from eventpipe.processors.writer import EventWriter
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from eventpipe.settings import Settings
from eventpipe.store import Store
from eventpipe.verify import verify
from tests.conftest import free_port, query, wait_for
from tests.http import get, post

RECEIVED = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _bundle(project: str, *events: dict, received: int = RECEIVED) -> bytes:
    body = orjson.dumps({"batch": list(events), "sentAt": "2026-01-01T00:00:00.000Z"})
    return encode_bundle([AcceptedRequest(project, received, "203.0.113.7", "ua", body)])


def _ev(
    mid: str, user: str = "", anon: str = "", event: str = "Viewed", ts: str | None = "2026-01-01T00:00:10Z", **extra
) -> dict:
    ev = {"type": "track", "event": event, "messageId": mid, "properties": {"revenue": 2.5}, **extra}
    if ts:
        ev["timestamp"] = ts
    if user:
        ev["userId"] = user
    if anon:
        ev["anonymousId"] = anon
    return ev


# --- the SQL, as a server would get it (no ClickHouse server can be installed here) -------------------------


def test_the_statements_run_in_order_and_touch_only_the_persons_keys():
    seen = []

    def run(sql, params):
        seen.append((sql, params))
        return [[0]] if sql.startswith("SELECT count()") else []

    report = forget(
        run,
        "acme",
        "u1",
        ["a1", "a1"],
        suppress_seconds=60,
        via="server",
        forget_id="f1",
        clock=lambda: 1000.0,
        on_started=lambda: seen.append(("<processors know it>", {"id": "f1", "project": "acme"})),
    )
    assert [s for s, _ in seen[:3]] == [LOG_INSERT, "<processors know it>", KEYS_INSERT]  # before any delete
    seen.remove(seen[1])
    sqls = [s for s, _ in seen]
    assert sqls[0] == LOG_INSERT and seen[0][1]["status"] == "started" and seen[0][1]["until"] == 1060
    assert sqls[-1] == LOG_INSERT and seen[-1][1]["status"] == "done"
    assert seen[0][1]["anons"] == ["a1"] and seen[0][1]["needles"] == ['"u1"', '"a1"']
    # keys are recorded before any delete; both rollups are deleted by key, re-inserted from raw, then checked
    keys_at = next(i for i, s in enumerate(sqls) if s.startswith("INSERT INTO forget_keys"))
    deletes = [i for i, s in enumerate(sqls) if s.startswith("DELETE FROM")]
    assert keys_at < deletes[0]
    assert [sqls[i].split()[2] for i in deletes] == ["events", "events_rejected", "events_1m", "events_1h"]
    for table in ("events_1m", "events_1h"):
        sql = statements(table)
        assert sql["delete"] in sqls and sql["insert"] in sqls and sql["mismatches"] in sqls
        assert sqls.index(sql["delete"]) < sqls.index(sql["insert"]) < sqls.index(sql["mismatches"])
        assert "SETTINGS insert_deduplicate = 0" in sql["insert"]
    assert "toStartOfHour(minute)" in statements("events_1h")["insert"]
    assert "user_id = {user:String}" in PERSON and "{user:String} != ''" in PERSON  # no user id: never ''
    assert all(p["id"] == "f1" and p["project"] == "acme" for _, p in seen)
    assert report.recomputes == 2 and report.via == "server"


def test_a_recompute_that_still_differs_is_run_again():
    mismatches = iter([1, 0, 0])

    def run(sql, params):
        if "EXCEPT" in sql:
            return [[next(mismatches)]]
        return [[0]] if sql.startswith("SELECT") else []

    assert forget(run, "acme", "u1").recomputes == 3  # events_1m twice, events_1h once


# --- the processor's filter -------------------------------------------------------------------------------


def test_suppression_moves_a_forgotten_persons_events_to_rejects_without_payload():
    records = [
        (
            3,
            9,
            _bundle(
                "acme",
                _ev("k1", user="u1"),
                _ev("k2", anon="a1"),
                _ev("k3", user="u2", anon="a2"),
                _ev("k4", user="u1", anon="a9"),
            ),
        ),
        (4, 2, _bundle("beta", _ev("k5", user="u1"))),
    ]  # the same id in another project is someone else
    exploded = explode(records, Rules())
    s = Suppressor("events.raw")
    assert s.apply(exploded) is exploded  # nothing forgotten: untouched
    s.load([("acme", "u1", []), ("acme", "", ["a1"])])
    out = s.apply(exploded)
    assert out.events.column("message_id").to_pylist() == ["k3", "k5"]
    rejected = out.rejected.to_pylist()
    assert [
        (r["message_id"], r["reason"], r["payload"], r["kafka_partition"], r["kafka_offset"]) for r in rejected
    ] == [("k1", "forgotten", "", 3, 9), ("k2", "forgotten", "", 3, 9), ("k4", "forgotten", "", 3, 9)]


# --- on a store opened directly (nothing running) ---------------------------------------------------------


def test_forget_on_a_store_leaves_no_row_of_the_person_and_verify_passing(tmp_path):
    settings = Settings.from_env({}, data_dir=tmp_path, processor_web_port=free_port())
    store = Store(settings)
    store.migrate()
    writer = EventWriter(store, "events.raw")
    writer.write(
        [
            (
                0,
                0,
                _bundle(
                    "acme",
                    _ev("m1", user="u1", anon="a1"),
                    _ev("m2", anon="a1"),
                    _ev("m3", user="u2"),
                    _ev("m4", user="u1", event="Paid"),
                    _ev("m5", user="u1", properties=[1]),
                ),
            ),
            (0, 1, _bundle("acme", _ev("m6", user="u3", event="Paid"), _ev("m7", anon="a1", properties=[2]))),
        ]
    )
    q = lambda sql: store.query(sql).rows  # noqa: E731
    assert q("SELECT count() FROM events_rejected")[0][0] == 2
    store.close()

    report = run_forget(settings, "acme", "u1", ["a1"])  # no processor on that port: the store directly
    assert (report.via, report.events_deleted, report.rejected_deleted) == ("direct", 3, 2)
    store = Store(settings)
    q = lambda sql: store.query(sql).rows  # noqa: E731
    assert q("SELECT message_id FROM events ORDER BY message_id") == [("m3",), ("m6",)]
    assert q("SELECT count() FROM events_rejected")[0][0] == 0
    assert all(c.ok for c in verify(q))
    # the rollups count exactly what is left: u2 and u3 once each
    assert q(
        "SELECT event, sum(events), uniqMerge(users), sum(revenue) FROM events_1m GROUP BY event ORDER BY event"
    ) == [("Paid", 1, 1, 2.5), ("Viewed", 1, 1, 2.5)]
    audit = q("SELECT status, project, user_id, anonymous_ids, events_deleted, via FROM forget_log ORDER BY logged_at")
    assert audit == [("started", "acme", "u1", ["a1"], 0, "direct"), ("done", "acme", "u1", ["a1"], 3, "direct")]
    # later events of u1 (or a1) are not stored by a writer that knows the forgotten set
    suppressor = Suppressor("events.raw")
    suppressor.refresh(store)
    writer = EventWriter(store, "events.raw", suppress=suppressor.apply)
    stored, rejected = writer.write([(0, 2, _bundle("acme", _ev("m8", user="u1"), _ev("m9", user="u2")))])
    assert stored == 1 and [r["reason"] for t in rejected for r in t.to_pylist()] == ["forgotten"]
    assert q("SELECT count() FROM events WHERE user_id = 'u1'")[0][0] == 0
    store.close()


# --- while the pipeline runs: through the processor that owns the store -----------------------------------


def test_forget_while_the_pipeline_runs(stack):
    user, anon, other = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("user", "anon", "other"))
    now = {"ts": None}  # received now: the same minute and rollup keys for the person and the other user
    events = (
        [_ev(f"{user}-{i}", user=user, anon=anon, **now) for i in range(5)]
        + [_ev(f"{anon}-p", anon=anon, **now)]
        + [_ev(f"{other}-{i}", user=other, **now) for i in range(3)]
    )
    status, _, _ = post(stack.collector_url + "/v1/batch", orjson.dumps({"batch": events}), key="test-key-acme")
    assert status == 200
    mine = f"(user_id = '{user}' OR anonymous_id = '{anon}' OR user_id = '{other}')"
    assert wait_for(lambda: query(stack, f"SELECT count() FROM events WHERE {mine}")[0][0] == 9, timeout=30)

    env = {**os.environ, **stack.settings.env()}
    out = subprocess.run(
        [sys.executable, "-m", "eventpipe.cli", "forget", "--project", "acme", "--user", user, "--anonymous-id", anon],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "(processor): deleted 6 events" in out.stdout
    assert query(stack, f"SELECT count() FROM events WHERE user_id = '{user}' OR anonymous_id = '{anon}'") == [[0]]
    assert query(stack, f"SELECT count() FROM events WHERE user_id = '{other}'") == [[3]]
    verified = subprocess.run(
        [sys.executable, "-m", "eventpipe.cli", "verify"], env=env, capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert query(
        stack, f"SELECT status, events_deleted, via FROM forget_log WHERE user_id = '{user}' ORDER BY logged_at"
    ) == [["started", 0, "processor"], ["done", 6, "processor"]]

    # the person's device keeps sending: nothing of it is stored, every event is counted as forgotten
    later = [_ev(f"{user}-later-{i}", anon=anon, **now) for i in range(4)] + [_ev(f"{other}-later", user=other, **now)]
    status, _, _ = post(stack.collector_url + "/v1/batch", orjson.dumps({"batch": later}), key="test-key-acme")
    assert status == 200
    assert wait_for(lambda: query(stack, f"SELECT count() FROM events WHERE user_id = '{other}'") == [[4]], timeout=30)
    assert query(stack, f"SELECT count() FROM events WHERE anonymous_id = '{anon}'") == [[0]]
    assert query(
        stack,
        f"SELECT reason, count(), max(payload) FROM events_rejected "
        f"WHERE message_id LIKE '{user}-later-%' GROUP BY reason",
    ) == [["forgotten", 4, ""]]
    _, _, metrics = get(f"http://127.0.0.1:{stack.settings.processor_web_port}/metrics")
    assert b'eventpipe_processor_events_rejected_total{reason="forgotten"}' in metrics


def test_a_forget_without_an_id_is_refused_by_the_processor(stack):
    status, _, body = post(
        f"http://127.0.0.1:{stack.settings.processor_web_port}/forget", json.dumps({"project": "acme"}).encode()
    )
    assert status == 400 and "user id" in body["error"]
