"""The processor's own web pages on faust's web server: probes, metrics, and read-only SQL.

In embedded mode this process owns the chDB store directory, so analysts' SQL reaches the
store through ``/query`` here (``eventpipe query`` uses it while the pipeline runs).
``/readyz`` is the Deployment's readiness probe: 503 once writes have failed without a
break for ``processor_stall_seconds`` (processors/health.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eventpipe.processors.health import WriteHealth
from eventpipe.store import Store


def register(app, store: Callable[[], Store], health: WriteHealth) -> None:
    @app.page("/query")
    class QueryView(faust.web.View):
        """Read-only SQL over the store this process owns (``GET ?sql=`` or ``POST`` body)."""

        async def get(self, request):
            return await self._run(request.query.get("sql", ""))

        async def post(self, request):
            return await self._run(await request.text())

        async def _run(self, sql: str):
            if not sql.strip():
                return self.json({"error": "send SQL as the POST body or ?sql="}, status=400)
            try:
                result = await asyncio.to_thread(store().query, sql, True)
            except Exception as exc:  # noqa: BLE001 - the analyst sees ClickHouse's own message
                return self.json({"error": str(exc)}, status=400)
            return self.json(result.to_json())

    @app.page("/healthz")
    async def healthz(web, request):
        """Liveness: the web server runs on the worker's event loop, so an answer means the loop is not blocked."""
        return web.json({"ok": True})

    @app.page("/readyz")
    async def readyz(web, request):
        """Readiness: 503 once writes have failed without a break for ``processor_stall_seconds``; 200 again
        after the next successful write."""
        state = health.state()
        return web.json(state, status=503 if state["stalled"] else 200)

    @app.page("/metrics")
    async def prometheus(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
