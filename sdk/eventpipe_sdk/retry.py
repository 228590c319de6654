"""When to send a batch again, and how long to wait first.

Shared by both clients so they retry identically: 429, 5xx and connection
errors are retried (the batch may succeed later, and its messageIds make a
repeat harmless); any other 4xx is final (the same bytes would fail again).
Delays are "full jitter" exponential backoff, so many clients that failed
together do not come back together, and never shorter than the server's
``Retry-After``.
"""

from __future__ import annotations

import email.utils
import enum
import json
import logging
import math
import random
import time

from eventpipe_sdk.config import Config

log = logging.getLogger("eventpipe.sdk")


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 429 or status >= 500:
        return Outcome.RETRY
    return Outcome.REJECTED


def backoff(config: Config, retry: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (0-based)."""
    ceiling = min(config.backoff_max, config.backoff_base * (2 ** min(retry, 64)))
    delay = random.uniform(0, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Delivery:
    """The fate of one batch, decided attempt by attempt; the clients only do the I/O and the waiting.

    After each attempt the client reports what happened (`answered` or
    `failed`) and gets back either a delay (sleep, then send again) or None
    (done: ``outcome`` and, unless delivered, ``error`` are set).
    """

    def __init__(self, config: Config, events: int):
        self.config = config
        self.events = events
        self.retries = 0
        self.outcome: str | None = None  # "delivered", "rejected", "retries_exhausted" or "shutdown"
        self.error: DeliveryError | None = None
        self._last: tuple[int, bytes] | BaseException | None = None

    def answered(self, status: int, retry_after: str | None, body: bytes) -> float | None:
        verdict = classify(status)
        if verdict is Outcome.DELIVERED:
            self.outcome = "delivered"
            return None
        self._last = (status, body)
        if verdict is Outcome.REJECTED:
            return self._give_up("rejected")
        return self._next(parse_retry_after(retry_after))

    def failed(self, exc: BaseException) -> float | None:
        self._last = exc
        return self._next(None)

    def abandon(self) -> None:
        """Shutdown ran out of time while this batch waited for a retry."""
        self._give_up("shutdown")

    def _next(self, retry_after: float | None) -> float | None:
        if self.retries >= self.config.max_retries:
            return self._give_up("retries_exhausted")
        delay = backoff(self.config, self.retries, retry_after)
        self.retries += 1
        return delay

    def _give_up(self, reason: str) -> None:
        self.outcome = reason
        if isinstance(self._last, tuple):
            self.error = DeliveryError.from_response(self.events, reason, *self._last)
        else:
            self.error = DeliveryError(self.events, reason, message=repr(self._last) if self._last else "")
        return None


class DeliveryError(Exception):
    """A batch the SDK gave up on; passed to ``on_error``. Its events are counted as dropped in ``stats``."""

    def __init__(self, events: int, reason: str, status: int | None = None, code: str | None = None, message: str = ""):
        detail = f"HTTP {status} {code or ''}".rstrip() + f": {message}" if status else message
        super().__init__(f"{events} event(s) dropped: {reason}" + (f" ({detail})" if detail else ""))
        self.events = events
        self.reason = reason  # "rejected", "retries_exhausted" or "shutdown"
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, events: int, reason: str, status: int, body: bytes) -> "DeliveryError":
        """Read the collector's ``{"success":false,"code","message"}`` when the body has it."""
        code, text = None, body[:200].decode(errors="replace")
        try:
            doc = json.loads(body)
            if isinstance(doc, dict):
                code, text = doc.get("code"), doc.get("message", text)
        except ValueError:
            pass
        return cls(events, reason, status, code, text)


def report(config: Config, error: DeliveryError) -> None:
    """Tell the app about a batch given up: a log warning, and ``on_error`` if it set one."""
    log.warning("eventpipe SDK: %s", error)
    if config.on_error is not None:
        try:
            config.on_error(error)
        except Exception:  # noqa: BLE001 - a failing callback must not stop the sender
            log.exception("eventpipe SDK: on_error raised")
