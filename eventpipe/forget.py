"""``eventpipe forget``: delete one person's rows, and correct the rollups they were counted in.

GDPR deletion is a legal duty, and deleting raw rows alone would leave ``events_1m``/``events_1h``
counting the person (their ``uniq`` states cannot be subtracted from). So a forget:

1. records a ``started`` row in ``forget_log`` (the audit, which also starts the processors'
   suppression of the person's later events: processors/forgetting.py);
2. writes the rollup keys the person's events fall in (project, event, platform, app version, minute)
   to ``forget_keys``, before anything is deleted;
3. deletes the person's rows from ``events`` and ``events_rejected`` (lightweight ``DELETE``, synchronous);
4. for each rollup, deletes the rows of exactly those keys and re-inserts them recomputed from the raw
   rows that remain (the materialized views' own SELECT), so the rollups again equal raw;
5. checks those keys against raw (``eventpipe verify`` restricted to them) and, if a concurrent insert
   landed between the delete and the re-insert of step 4 (possible against a server with processors
   writing; in embedded mode the processor runs a forget between its batches), recomputes them again;
6. records a ``done`` row with what was deleted.

Every step is plain SQL through ``run(sql, parameters) -> rows``, so the same statements run on the
embedded chDB store (through the processor that owns it, or opened directly when nothing runs) and on
a ClickHouse server (only unit-tested: no server can be installed on the project's machines).
Every step is idempotent: a forget that died half-way is finished by running it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable

import orjson

from eventpipe.verify import KEYS, ROLLUPS, USERS, rollup_sql

Run = Callable[[str, dict], list]  # (sql, parameters) -> rows
MAX_RECOMPUTES = 3
PARAMS = "{project:String}"

# The person's rows of `events`: their user id (when given) or one of their anonymous ids.
PERSON = (
    "project = {project:String} AND (({user:String} != '' AND user_id = {user:String}) "
    "OR has({anons:Array(String)}, anonymous_id))"
)
# ... and of `events_rejected`, which keeps the event as sent (payload) rather than typed ids. Records or
# requests that could not be decoded at all are matched by the ids appearing as JSON strings in them.
PERSON_REJECTED = (
    "(project = {project:String} AND (({user:String} != '' AND JSONExtractString(payload, 'userId') = {user:String}) "
    "OR has({anons:Array(String)}, JSONExtractString(payload, 'anonymousId')))) "
    "OR (reason IN ('undecodable_request', 'undecodable_record') AND project IN ({project:String}, '') "
    "AND multiSearchAny(payload, {needles:Array(String)}))"
)
THIS_FORGET = "SELECT project, event, platform, app_version, minute FROM forget_keys WHERE forget_id = {id:String}"


@dataclasses.dataclass
class ForgetReport:
    forget_id: str
    project: str
    user_id: str
    anonymous_ids: list[str]
    events_deleted: int = 0
    rejected_deleted: int = 0
    keys_1m: int = 0
    keys_1h: int = 0
    recomputes: int = 0
    seconds: float = 0.0
    suppress_until: int = 0  # unix seconds
    via: str = "direct"
    steps: dict = dataclasses.field(default_factory=dict)  # step -> seconds

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _keyset(table: str) -> str:
    """The keys of ``table`` this forget touched, as a subquery of (KEYS, time) tuples."""
    column, _ = ROLLUPS[table]
    if column == "minute":
        return THIS_FORGET
    return (
        "SELECT DISTINCT project, event, platform, app_version, toStartOfHour(minute) "
        "FROM forget_keys WHERE forget_id = {id:String}"
    )


def _time_bounds(table: str) -> str:
    """A bound on ``events.timestamp`` for the keys of ``table`` (prunes partitions before the tuple IN)."""
    width = "1 MINUTE" if ROLLUPS[table][0] == "minute" else "1 HOUR"
    lo = "(SELECT min(minute) FROM forget_keys WHERE forget_id = {id:String})"
    hi = "(SELECT max(minute) FROM forget_keys WHERE forget_id = {id:String})"
    if width == "1 HOUR":
        lo, hi = f"toStartOfHour({lo})", f"toStartOfHour({hi})"
    return f"timestamp >= {lo} AND timestamp < {hi} + INTERVAL {width}"


def statements(table: str) -> dict[str, str]:
    """The SQL that recomputes and checks ``table``'s keys of one forget (parameters: id, project)."""
    column, expr = ROLLUPS[table]
    raw_keys = f"project = {PARAMS} AND {_time_bounds(table)} AND ({KEYS}, {expr}) IN ({_keyset(table)})"
    rollup_keys = f"project = {PARAMS} AND ({KEYS}, {column}) IN ({_keyset(table)})"
    rollup, raw = rollup_sql(table, rollup_where=rollup_keys, raw_where=raw_keys)
    return {
        "delete": f"DELETE FROM {table} WHERE {rollup_keys}",
        # the materialized view's SELECT over what remains of the keys; never deduplicated (an identical
        # recomputation of a later forget is new data, not a repeat)
        "insert": (
            f"INSERT INTO {table} ({KEYS}, {column}, events, users, revenue) SETTINGS insert_deduplicate = 0 "
            f"SELECT {KEYS}, {expr} AS {column}, count(), uniqState({USERS}), sum(revenue) "
            f"FROM events WHERE {raw_keys} GROUP BY {KEYS}, {column}"
        ),
        "mismatches": f"SELECT count() FROM ((({rollup}) EXCEPT ({raw})) UNION ALL (({raw}) EXCEPT ({rollup})))",
        "keys": f"SELECT count() FROM ({_keyset(table)})",
    }


LOG_INSERT = (
    "INSERT INTO forget_log (forget_id, status, project, user_id, anonymous_ids, requested_at, suppress_until, "
    "events_deleted, rejected_deleted, keys_1m, keys_1h, seconds, via) VALUES ({id:String}, {status:String}, "
    "{project:String}, {user:String}, {anons:Array(String)}, fromUnixTimestamp64Milli({requested:Int64}), "
    "fromUnixTimestamp({until:Int64}), {events:UInt64}, {rejected:UInt64}, {k1m:UInt64}, {k1h:UInt64}, "
    "{seconds:Float64}, {via:String})"
)
KEYS_INSERT = (
    "INSERT INTO forget_keys (forget_id, project, event, platform, app_version, minute) "
    "SETTINGS insert_deduplicate = 0 "
    f"SELECT DISTINCT {{id:String}}, {KEYS}, toStartOfMinute(timestamp) FROM events WHERE {PERSON}"
)


def validate(project: str, user_id: str, anonymous_ids: list[str]) -> None:
    if not project:
        raise ValueError("forget needs a project")
    if not user_id and not anonymous_ids:
        raise ValueError("forget needs a user id or at least one anonymous id")
    if any(not a for a in anonymous_ids):
        raise ValueError("an anonymous id cannot be empty")


def forget(
    run: Run,
    project: str,
    user_id: str = "",
    anonymous_ids: list[str] | tuple = (),
    suppress_seconds: float = 30 * 86400,
    via: str = "direct",
    forget_id: str | None = None,
    clock=time.time,
    exclusive=contextlib.nullcontext,
    on_started=None,
) -> ForgetReport:
    """Delete the person's rows, correct both rollups, and audit it (see the module docstring).

    In a processor, ``on_started`` puts the person in its forgotten set and ``exclusive()`` holds its
    batch writes: once, so that a batch judged against the old set lands before the delete, and around
    each rollup's recompute, the only step an insert must not land in. The raw deletes (seconds on a
    large chDB table: a mutation of every part) run while the processor keeps writing."""
    anons = sorted(set(anonymous_ids))
    validate(project, user_id, anons)
    started = clock()
    report = ForgetReport(
        forget_id or uuid.uuid4().hex, project, user_id, anons, via=via, suppress_until=int(started + suppress_seconds)
    )
    ids = [i for i in [user_id, *anons] if i]
    base = {
        "id": report.forget_id,
        "project": project,
        "user": user_id,
        "anons": anons,
        "needles": [orjson.dumps(i).decode() for i in ids],
    }

    def log(status: str) -> None:
        run(
            LOG_INSERT,
            base
            | {
                "status": status,
                "requested": int(started * 1000),
                "until": report.suppress_until,
                "events": report.events_deleted,
                "rejected": report.rejected_deleted,
                "k1m": report.keys_1m,
                "k1h": report.keys_1h,
                "seconds": round(report.seconds, 3),
                "via": via,
            },
        )

    def step(name: str, sql: str, **extra):
        t0 = clock()
        rows = run(sql, base | extra)
        report.steps[name] = round(report.steps.get(name, 0.0) + clock() - t0, 4)
        return rows

    log("started")
    if on_started is not None:
        on_started()
    with exclusive():
        pass  # a batch in flight, judged against the forgotten set before this one, is written by now
    step("keys", KEYS_INSERT)
    report.events_deleted = int(step("count", f"SELECT count() FROM events WHERE {PERSON}")[0][0])
    report.rejected_deleted = int(step("count", f"SELECT count() FROM events_rejected WHERE {PERSON_REJECTED}")[0][0])
    step("delete_events", f"DELETE FROM events WHERE {PERSON}")
    step("delete_rejected", f"DELETE FROM events_rejected WHERE {PERSON_REJECTED}")
    for table in ROLLUPS:
        sql = statements(table)
        setattr(report, "keys_" + table.removeprefix("events_"), int(step("keys", sql["keys"])[0][0]))
        for attempt in range(MAX_RECOMPUTES):
            with exclusive():
                step(f"recompute_{table}", sql["delete"])
                step(f"recompute_{table}", sql["insert"])
            report.recomputes += 1
            if not int(step(f"check_{table}", sql["mismatches"])[0][0]):
                break
        else:
            raise RuntimeError(
                f"{table}: the recomputed keys of forget {report.forget_id} still differ from raw "
                f"after {MAX_RECOMPUTES} attempts (inserts kept landing in them); run it again"
            )
    report.seconds = clock() - started
    log("done")
    return report


class ForgetError(RuntimeError):
    pass


def run_forget(settings, project: str, user_id: str = "", anonymous_ids: list[str] | tuple = ()) -> ForgetReport:
    """Forget through the running processor (embedded mode: it owns the store), else on the store directly
    (nothing runs, or a ClickHouse server is configured): the routing of ``eventpipe query``."""
    import urllib.error
    import urllib.request

    from eventpipe.store import Store

    validate(project, user_id, list(anonymous_ids))
    if not settings.clickhouse_url:
        url = f"http://127.0.0.1:{settings.processor_web_port}/forget"
        body = orjson.dumps({"project": project, "user_id": user_id, "anonymous_ids": list(anonymous_ids)})
        request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as resp:
                doc = orjson.loads(resp.read())
            return ForgetReport(**doc)
        except urllib.error.HTTPError as exc:
            raise ForgetError(orjson.loads(exc.read()).get("error", str(exc))) from None
        except (urllib.error.URLError, ConnectionError):
            pass  # no running processor: open the store directly
    store = Store(settings)

    def processors_know_it() -> None:
        """Against a server, processors may be writing: let each re-read forget_log (and finish the batch it
        judged before) before the rows are deleted, or a batch landing after the delete would keep some."""
        time.sleep(settings.forget_refresh_seconds + 5.0)

    try:
        store.migrate()
        return forget(
            lambda sql, params: store.query(sql, parameters=params).rows,
            project,
            user_id,
            anonymous_ids,
            settings.forget_suppress_days * 86400,
            via="server" if settings.clickhouse_url else "direct",
            on_started=processors_know_it if settings.clickhouse_url else None,
        )
    finally:
        store.close()
