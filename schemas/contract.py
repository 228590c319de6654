"""The event contract: what an event must have, and the type rule of every field it may have.

Both sides judge by these rules, so what the collector accepts the processors
can handle (docs/segment-compatibility.md "Field types"):

- ``required_problem`` is what makes an event unacceptable at once. The
  collector refuses the request with 400 and the problem's code; a processor
  rejects such an event (it can reach Kafka by other ways: a dead-letter
  replay, another producer, an older collector) with the same code.
- The other fields are untrusted JSON of any type. Each has one rule here:
  *reject* the event (``invalid_field``: its data cannot be stored as meant,
  e.g. ``properties`` that is a string), or *coerce* it (harmless, e.g.
  ``context.library`` that is a string: read as absent, and the stored event
  carries the flag ``field_coerced``). The raw ``context`` is stored as sent,
  so coercion loses nothing.

Everything here is total: any JSON value in, a value or a ``Problem`` out,
never an exception.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import orjson

EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})

# Where a call has no `event` name, the stored event column says which call it was.
CALL_NAMES = {"identify": "$identify", "page": "$page", "screen": "$screen", "group": "$group", "alias": "$alias"}

# Top-level fields that must be JSON objects (or absent/null); anything else rejects the event.
OBJECT_FIELDS = ("properties", "traits", "context")
# Identifiers: a non-empty string, or a number (stored as its JSON text); anything else rejects the event.
ID_FIELDS = ("messageId", "anonymousId", "userId")
# context fields read into typed columns: an object expected at each first key; a wrong type is coerced.
CONTEXT_OBJECTS = ("app", "os", "device", "library", "page")

COERCED = "field_coerced"


class Problem(NamedTuple):
    code: str
    message: str


def _type_name(value) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def is_id(value) -> bool:
    """A usable identifier: a non-empty string or a finite number (never a boolean)."""
    kind = type(value)
    return (kind is str and value != "") or kind is int or (kind is float and math.isfinite(value))


def id_text(value) -> str:
    """An identifier as stored: strings as sent, numbers as their JSON text (``42``, ``1.5``)."""
    if type(value) is str:
        return value
    return orjson.dumps(value).decode()


def required_problem(event, where: str = "the event") -> Problem | None:
    """What the spec requires of each call type, or None when ``event`` has it."""
    if type(event) is not dict:
        return Problem("invalid_event", f"{where} is not an object")
    kind = event.get("type")
    if type(kind) is not str or kind not in EVENT_TYPES:
        return Problem("invalid_event", f"{where}.type must be one of {sorted(EVENT_TYPES)}")
    if not (is_id(event.get("userId")) or is_id(event.get("anonymousId"))):
        return Problem("no_user_anon_id", f"{where} needs a userId or an anonymousId (a non-empty string)")
    if kind == "track":
        name = event.get("event")
        if type(name) is not str or not name:
            return Problem("missing_event_name", f"{where} is a track call without an 'event' name")
    elif kind == "alias":
        if not is_id(event.get("previousId")):
            return Problem("missing_previous_id", f"{where} is an alias call without a previousId")
    elif kind == "group":
        if not is_id(event.get("groupId")):
            return Problem("missing_group_id", f"{where} is a group call without a groupId")
    return None


def field_problem(event: dict) -> Problem | None:
    """A top-level field of the wrong type that the event cannot be stored without (rule: reject)."""
    for name in ID_FIELDS:
        value = event.get(name)
        if value is not None and not is_id(value) and value != "":
            return Problem("invalid_field", f"{name} must be a string or a number, not {_type_name(value)}")
    for name in OBJECT_FIELDS:
        value = event.get(name)
        if value is not None and type(value) is not dict:
            return Problem("invalid_field", f"{name} must be an object, not {_type_name(value)}")
    return None


def envelope_problem(context, events: int, limit: int) -> Problem | None:
    """What makes a batch's envelope ``context`` unusable: it is merged into each of the batch's ``events``,
    so it must re-encode, and all its copies together must fit ``limit`` bytes (the batch limit: without
    that bound, a 500 KB request could unfold into gigabytes of rows)."""
    if type(context) is not dict or not context:
        return None
    try:
        size = len(orjson.dumps(context))
    except orjson.JSONEncodeError:
        return Problem("too_deep", "the batch's context nests objects/arrays more than 250 levels deep")
    if size * events > limit:
        return Problem(
            "context_too_large",
            f"the batch's context ({size} bytes) is merged into each of its "
            f"{events} events: {size * events} bytes, over the limit of {limit}",
        )
    return None


def text(value, flags: list[str]) -> str:
    """A scalar as column text (strings as sent, numbers and booleans as JSON); null is empty.

    An object or array where text belongs is coerced to empty, and ``flags`` gets ``field_coerced``."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return orjson.dumps(value).decode() if kind is int or math.isfinite(value) else ""
    _coerce(flags)
    return ""


def obj(value, flags: list[str]) -> dict:
    """An object where one belongs; anything else is coerced to an empty object (null silently)."""
    if type(value) is dict:
        return value
    if value is not None:
        _coerce(flags)
    return {}


def string_or(value, default: str, flags: list[str]) -> str:
    """A string where one belongs; absent means ``default``, another type too (and is flagged)."""
    if type(value) is str:
        return value
    if value is not None:
        _coerce(flags)
    return default


def merge_context(envelope: dict, context: dict) -> dict:
    """A batch's envelope ``context`` merged under an event's own, as Segment's API does (analytics-go sends
    ``context`` once per batch): the event's values win, objects present in both are merged key by key."""
    merged = dict(envelope)
    for key, value in context.items():
        below = merged.get(key)
        merged[key] = merge_context(below, value) if type(below) is dict and type(value) is dict else value
    return merged


def _coerce(flags: list[str]) -> None:
    if COERCED not in flags:
        flags.append(COERCED)
