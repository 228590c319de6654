"""The threaded client: calls return at once, one background thread batches and sends.

Safe to share between threads: every call builds its event on the caller's
thread and then only holds a lock long enough to append it to the queue. A
single daemon thread (started on the first event, and again in a forked
child) takes batches, posts them and retries.
Uses the standard library only.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
import weakref

from eventpipe_sdk.batch import Pending, admit, encode_body
from eventpipe_sdk.calls import Calls
from eventpipe_sdk.config import DEFAULT_HOST, Config
from eventpipe_sdk.http import CONNECTION_ERRORS, Connection, request_headers
from eventpipe_sdk.message import LIBRARY_VERSION
from eventpipe_sdk.retry import Delivery, report
from eventpipe_sdk.stats import Stats


class Client(Calls):
    """Send Segment events to eventpipe (or any Segment-compatible endpoint) from any thread.

    ``Client(write_key, host, **options)``; the options are the fields of
    `sdk.config.Config`. Use it as a context manager, or call ``shutdown()``
    before the process ends (an ``atexit`` hook does so too, for up to
    ``timeout`` seconds).
    """

    def __init__(self, write_key: str, host: str = DEFAULT_HOST, **options):
        self.config = Config(write_key, host, **options)
        self._closed = False
        self._start_fresh()
        self._exit_hook = functools.partial(_shutdown_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)
        _CLIENTS.add(self)

    def _start_fresh(self) -> None:
        """Empty queue, zero counters, no sender yet; also run in a forked child (see `_after_fork`)."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the sender waits here for a batch to be due
        self._done = threading.Condition(self._lock)  # flush() waits here for events to be settled
        self._pending = Pending(self.config)
        self._stats = Stats()
        self._abandon = threading.Event()  # set when shutdown's timeout ran out: stop retrying
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> Stats:
        """A copy of the counters: what was queued, delivered, retried, and dropped (by reason)."""
        with self._lock:
            return self._stats.copy()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far now, and wait until each event is delivered or dropped.

        Returns False if ``timeout`` seconds passed first (the events stay queued).
        """
        with self._lock:
            target = self._pending.accepted
            self._pending.urge(target)
            self._work.notify()
            return self._done.wait_for(lambda: self._pending.finished >= target, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread; events given afterwards are dropped (and counted).

        With a ``timeout``, events still unsent when it runs out are dropped and
        counted in ``stats.dropped_shutdown``, and False is returned.
        """
        with self._lock:
            self._closed = True
            self._pending.urge()
            self._work.notify()
            thread = self._thread
        atexit.unregister(self._exit_hook)
        if thread is None:
            return True
        thread.join(timeout)
        if not thread.is_alive():
            return True
        with self._lock:
            self._abandon.set()
            self._pending.drop_all(self._stats)
            self._done.notify_all()
        return False

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # --- the caller's side ---------------------------------------------------
    def _enqueue(self, encoded: bytes) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="eventpipe-sdk", daemon=True)
                self._thread.start()
            if admit(self._pending, self._stats, self.config, encoded, self._closed, time.monotonic()):
                self._work.notify()

    # --- the background thread -----------------------------------------------
    def _run(self) -> None:
        connection = Connection(self.config, request_headers(self.config, LIBRARY_VERSION))
        try:
            while (batch := self._next_batch()) is not None:
                delivery = self._deliver(connection, batch)
                with self._lock:
                    self._stats.settle(delivery.outcome, len(batch))
                    self._pending.finish(len(batch))
                    self._done.notify_all()
                if delivery.error is not None:
                    report(self.config, delivery.error)
        finally:
            connection.close()

    def _next_batch(self) -> list[bytes] | None:
        """Wait until a batch is due and take it; None once shut down with nothing left."""
        with self._lock:
            while True:
                wait = self._pending.due_in(time.monotonic())
                if wait == 0:
                    return self._pending.take()
                if wait is None and self._closed:
                    return None
                self._work.wait(wait)

    def _deliver(self, connection: Connection, batch: list[bytes]) -> Delivery:
        delivery = Delivery(self.config, len(batch))
        while True:
            try:
                # encoded per attempt: sentAt must be the time this attempt was sent
                response = connection.post(encode_body(batch, self.config.gzip))
                delay = delivery.answered(response.status, response.retry_after, response.body)
            except CONNECTION_ERRORS as exc:
                delay = delivery.failed(exc)
            if delay is None:
                return delivery
            if self._abandon.wait(delay):
                delivery.abandon()
                return delivery
            with self._lock:
                self._stats.retries += 1


# A forked child (gunicorn, multiprocessing) inherits the client but not its thread, and possibly a lock
# held by a parent thread: each client starts over there. The events queued in the parent stay the
# parent's to send; the child sending its copy too would only make duplicates.
_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork() -> None:
    for client in list(_CLIENTS):
        client._start_fresh()


os.register_at_fork(after_in_child=_after_fork)


def _shutdown_at_exit(ref: weakref.ref) -> None:
    client = ref()
    if client is not None:
        client.shutdown(timeout=client.config.timeout)
