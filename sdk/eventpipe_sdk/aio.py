"""The asyncio client: the same calls, batching and retries, sent by a task with aiohttp.

For apps that already run an event loop (aiohttp, FastAPI, ...), where a
thread doing blocking HTTP would be out of place. Calls stay plain methods
(queuing never waits); ``flush()`` and ``shutdown()`` are coroutines. Use it
from the loop's thread only; the sender task starts on the first event.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from eventpipe_sdk.batch import Pending, admit, encode_body
from eventpipe_sdk.calls import Calls
from eventpipe_sdk.config import DEFAULT_HOST, Config
from eventpipe_sdk.http import request_headers
from eventpipe_sdk.message import LIBRARY_VERSION
from eventpipe_sdk.retry import Delivery, report
from eventpipe_sdk.stats import Stats


# What aiohttp raises when no answer came: retried like a 5xx.
CONNECTION_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class AsyncClient(Calls):
    """``AsyncClient(write_key, host, **options)``: options as for `sdk.Client` (`sdk.config.Config`).

    Use ``async with AsyncClient(...) as client:`` or ``await client.shutdown()``:
    there is no ``atexit`` flush for a client whose loop is gone.
    """

    def __init__(self, write_key: str, host: str = DEFAULT_HOST, **options):
        self.config = Config(write_key, host, **options)
        self._pending = Pending(self.config)
        self._stats = Stats()
        self._closed = False
        self._wakeup = asyncio.Event()  # the sender waits here for a batch to be due
        self._progress = asyncio.Event()  # flush() waits here for events to be settled
        self._task: asyncio.Task | None = None

    @property
    def stats(self) -> Stats:
        """A copy of the counters: what was queued, delivered, retried, and dropped (by reason)."""
        return self._stats.copy()

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far now, and wait until each event is delivered or dropped.

        Returns False if ``timeout`` seconds passed first (the events stay queued).
        """
        target = self._pending.accepted
        self._pending.urge(target)
        self._wakeup.set()
        try:
            await asyncio.wait_for(self._settled(target), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the sender; events given afterwards are dropped (and counted).

        With a ``timeout``, events still unsent when it runs out are dropped and
        counted in ``stats.dropped_shutdown``, and False is returned.
        """
        self._closed = True
        self._pending.urge()
        self._wakeup.set()
        if self._task is None:
            return True
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if done:
            return True
        self._task.cancel()  # settles the batch in flight as dropped_shutdown
        await asyncio.wait({self._task})
        self._pending.drop_all(self._stats)
        self._progress.set()
        return False

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.shutdown()

    # --- the caller's side ---------------------------------------------------
    def _enqueue(self, encoded: bytes) -> None:
        if self._task is None and not self._closed:  # raises RuntimeError outside a running loop
            self._task = asyncio.get_running_loop().create_task(self._run(), name="eventpipe-sdk")
        if admit(self._pending, self._stats, self.config, encoded, self._closed, time.monotonic()):
            self._wakeup.set()

    async def _settled(self, target: int) -> None:
        while self._pending.finished < target:
            self._progress.clear()
            await self._progress.wait()

    # --- the sender task -------------------------------------------------------
    async def _run(self) -> None:
        headers = request_headers(self.config, LIBRARY_VERSION)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            while (batch := await self._next_batch()) is not None:
                delivery = Delivery(self.config, len(batch))
                try:
                    await self._deliver(session, batch, delivery)
                except asyncio.CancelledError:
                    delivery.abandon()
                    raise
                finally:
                    self._stats.settle(delivery.outcome, len(batch))
                    self._pending.finish(len(batch))
                    self._progress.set()
                    if delivery.error is not None:
                        report(self.config, delivery.error)

    async def _next_batch(self) -> list[bytes] | None:
        """Wait until a batch is due and take it; None once shut down with nothing left."""
        while True:
            wait = self._pending.due_in(time.monotonic())
            if wait == 0:
                return self._pending.take()
            if wait is None and self._closed:
                return None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def _deliver(self, session: aiohttp.ClientSession, batch: list[bytes], delivery: Delivery) -> None:
        while True:
            try:
                # encoded per attempt: sentAt must be the time this attempt was sent
                async with session.post(self.config.batch_url, data=encode_body(batch, self.config.gzip)) as resp:
                    body = await resp.read()
                delay = delivery.answered(resp.status, resp.headers.get("Retry-After"), body)
            except CONNECTION_ERRORS as exc:
                delay = delivery.failed(exc)
            if delay is None:
                return
            await asyncio.sleep(delay)
            self._stats.retries += 1
