"""The processor's side of ``eventpipe forget``: suppress a forgotten person's later events, and run forgets.

After a GDPR deletion the person's devices may keep sending (an app not yet updated, a queue of offline
events). For ``forget_suppress_days`` the processor stores none of their events: `Suppressor.apply` takes
the Arrow table a batch is about to insert and moves the rows whose (project, user id) or
(project, anonymous id) is forgotten into ``events_rejected`` with reason ``forgotten`` (and so to
events.dlq and the reject counters: nothing vanishes silently), without their payload. The filter is
vectorised (``pyarrow.compute.is_in`` against the forgotten set), never a Python loop per event, and
costs nothing while the set is empty.

The forgotten set is ``forget_log`` (migration 0011), re-read every ``forget_refresh_seconds`` (so with
a ClickHouse server every processor picks up a forget made anywhere) and at once after a forget made here.

In embedded mode this process owns the chDB directory, so ``eventpipe forget`` posts to ``/forget``
here. Its rollup recompute runs between two batch writes (``EXCLUSIVE``, held around each batch write by
``MicroBatches._write_blocking`` in processors/micro_batch.py), so no insert lands between a rollup's delete and re-insert; the raw deletes (seconds on
a large table) do not hold the writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import faust.web
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from eventpipe.forget import forget
from eventpipe.processors.rows import REJECTED_SCHEMA, Exploded

log = logging.getLogger("eventpipe.processor")

EXCLUSIVE = threading.Lock()  # batch writes and forgets, one at a time
FORGOTTEN = Counter(
    "eventpipe_processor_events_forgotten_total",
    "Events of a forgotten person not stored (events_rejected reason forgotten)",
)
FORGETS = Counter("eventpipe_processor_forgets_total", "eventpipe forget requests run by this processor", ["outcome"])
SUPPRESSED_SQL = (
    "SELECT project, user_id, anonymous_ids FROM forget_log WHERE status = 'started' AND suppress_until > now()"
)


def _keys(project: pa.Array, ids: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(project, ids, "\0")


class Suppressor:
    def __init__(self, topic: str):
        self.topic = topic
        self.users = pa.array([], pa.string())  # "project\0user_id"
        self.anons = pa.array([], pa.string())  # "project\0anonymous_id"

    def __len__(self) -> int:
        return len(self.users) + len(self.anons)

    def load(self, rows) -> None:
        """(project, user_id, anonymous_ids) rows of forget_log."""
        users, anons = set(), set()
        for project, user, anonymous_ids in rows:
            if user:
                users.add(f"{project}\0{user}")
            anons.update(f"{project}\0{a}" for a in anonymous_ids)
        self.users, self.anons = pa.array(sorted(users), pa.string()), pa.array(sorted(anons), pa.string())

    def refresh(self, store) -> None:
        self.load(store.query(SUPPRESSED_SQL).rows)

    def mask(self, events: pa.Table) -> pa.Array | None:
        """True for the rows of a forgotten person; None when there is none."""
        if not len(self) or not events.num_rows:
            return None
        project = events.column("project")
        mask = pc.or_(
            pc.is_in(_keys(project, events.column("user_id")), value_set=self.users),
            pc.is_in(_keys(project, events.column("anonymous_id")), value_set=self.anons),
        )
        return mask if pc.any(mask).as_py() else None

    def apply(self, exploded: Exploded) -> Exploded:
        """The batch without the forgotten person's events, which become ``forgotten`` rejects (no payload)."""
        mask = self.mask(exploded.events)
        if mask is None:
            return exploded
        gone = exploded.events.filter(mask)
        n = gone.num_rows
        FORGOTTEN.inc(n)

        def constant(value, type_):
            return pa.repeat(pa.scalar(value, type_), n)

        rejects = pa.Table.from_arrays(
            [
                gone.column("project"),
                constant("forgotten", pa.string()),
                constant("the person was forgotten (eventpipe forget): not stored", pa.string()),
                gone.column("event"),
                gone.column("message_id"),
                gone.column("received_at"),
                constant(self.topic, pa.string()),
                gone.column("kafka_partition"),
                gone.column("kafka_offset"),
                constant(0, pa.uint32()),
                constant(0, pa.uint32()),
                constant("", pa.string()),
            ],
            schema=REJECTED_SCHEMA,
        )
        return Exploded(exploded.events.filter(pc.invert(mask)), pa.concat_tables([exploded.rejected, rejects]))


def register(app, store_fn, settings, suppressor: Suppressor) -> None:
    """``POST /forget`` and the refresh timer on the faust ``app`` (the processor)."""

    def run_forget(project: str, user_id: str, anonymous_ids: list[str]) -> dict:
        store = store_fn()
        report = forget(
            lambda sql, params: store.query(sql, parameters=params).rows,
            project,
            user_id,
            anonymous_ids,
            settings.forget_suppress_days * 86400,
            via="server" if settings.clickhouse_url else "processor",
            exclusive=lambda: EXCLUSIVE,
            on_started=lambda: suppressor.refresh(store),
        )
        log.info(
            "forget %s: project %s, %d events and %d rejects deleted, %d/%d rollup keys recomputed in %.2fs",
            report.forget_id,
            project,
            report.events_deleted,
            report.rejected_deleted,
            report.keys_1m,
            report.keys_1h,
            report.seconds,
        )
        return report.to_json()

    @app.page("/forget")
    class ForgetView(faust.web.View):
        """``POST {"project": …, "user_id": …, "anonymous_ids": […]}``: run a forget, answer its report."""

        async def post(self, request):
            try:
                doc = orjson.loads(await request.read())
                args = (
                    str(doc["project"]),
                    str(doc.get("user_id") or ""),
                    [str(a) for a in doc.get("anonymous_ids") or []],
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                return self.json(
                    {"error": f"expected a JSON object with project, user_id, anonymous_ids: {exc}"}, status=400
                )
            try:
                report = await asyncio.to_thread(run_forget, *args)
            except ValueError as exc:
                FORGETS.labels("refused").inc()
                return self.json({"error": str(exc)}, status=400)
            except Exception as exc:  # noqa: BLE001 - the operator sees the store's message; running it again finishes it
                FORGETS.labels("failed").inc()
                log.warning("forget failed: %r", exc)
                return self.json({"error": str(exc)}, status=500)
            FORGETS.labels("done").inc()
            return self.json(report)

    @app.timer(interval=settings.forget_refresh_seconds)
    async def refresh_forgotten() -> None:
        try:
            await asyncio.to_thread(suppressor.refresh, store_fn())
        except Exception as exc:  # noqa: BLE001 - the last set stays in force; the next refresh tries again
            log.warning("could not refresh the forgotten set (%r); keeping the last one", exc)
