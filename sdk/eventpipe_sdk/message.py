"""What one Segment event looks like on the wire, built and encoded once per call.

A call is turned into its final JSON bytes at once, on the caller's thread:
the ``messageId`` and ``timestamp`` are fixed there, so every retry of the
batch carries the same ids (the server can deduplicate them), the size limits
are checked on the exact bytes that will be sent, and a value that cannot be
encoded raises where the caller can see it instead of failing a whole batch later.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.metadata
import json
import uuid

LIBRARY_NAME = "eventpipe-python"


def _library_version() -> str:
    """The SDK ships inside the eventpipe distribution, so it carries that version."""
    try:
        return importlib.metadata.version("eventpipe-sdk")
    except importlib.metadata.PackageNotFoundError:  # used from a source tree that is not installed
        return "0.0.0"


LIBRARY_VERSION = _library_version()


def iso_utc(moment: dt.datetime | None = None) -> str:
    """ISO-8601 in UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z`` (naive datetimes are taken as UTC)."""
    if moment is None:
        moment = dt.datetime.now(dt.timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    else:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build(
    kind: str,
    fields: dict,
    *,
    user_id=None,
    anonymous_id=None,
    context=None,
    timestamp=None,
    integrations=None,
    message_id=None,
) -> dict:
    """The Segment message for one call: common fields plus the call's own (``fields``, Nones left out)."""
    if user_id is None and anonymous_id is None:
        raise ValueError(f"{kind}: a user_id or an anonymous_id is required")
    if timestamp is not None and not isinstance(timestamp, dt.datetime):
        raise TypeError(f"{kind}: timestamp must be a datetime, got {type(timestamp).__name__}")
    for name, value in (("context", context), ("integrations", integrations)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{kind}: {name} must be a dict")
    msg = {
        "type": kind,
        "messageId": str(message_id) if message_id is not None else str(uuid.uuid4()),
        "timestamp": iso_utc(timestamp),
        "context": {**(context or {}), "library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}},
    }
    if user_id is not None:
        msg["userId"] = _id(user_id, "user_id", kind)
    if anonymous_id is not None:
        msg["anonymousId"] = _id(anonymous_id, "anonymous_id", kind)
    if integrations is not None:
        msg["integrations"] = integrations
    for key, value in fields.items():
        if value is not None:
            msg[key] = value
    return msg


def encode(msg: dict) -> bytes:
    """Compact JSON bytes; raises TypeError/ValueError for values JSON cannot carry (NaN, unknown objects)."""
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default).encode()


def _id(value, name: str, kind: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise TypeError(f"{kind}: {name} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError(f"{kind}: {name} must not be empty")
    return text


def _default(value):
    """JSON for the few non-JSON types common in event properties; anything else is a caller's bug."""
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")
