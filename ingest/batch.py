"""Judging a request body cheaply and at once: JSON, shape, required fields, sizes.

Everything the collector can reject without a processor happens here, and each
rejection is a `Rejected` that names the problem (and the event, by index), so
the client sees a 4xx it can act on. What an event requires comes from
``eventpipe.schemas.contract``, the rules the processors judge by too; deeper checks
(field types, timestamps, per-event schemas) belong to processors.

A ``/v1/batch`` body is stored as sent: it is parsed once to judge it and not
re-encoded. That parse is one pass that decodes *and* validates (`fast_batch`):
msgspec decodes only the fields the contract requires into typed structs (the
rest of each event is skipped, never built into Python objects) and yyjson
checks the whole body the way orjson, which the processors parse with, would.
Anything that pass cannot settle (an error to word, a body that might hide an
oversized or too deeply nested event) goes the long way, ``decode`` then
``judge_batch``, so every rejection keeps its code and message. A single-event body (``/v1/track`` …) is re-encoded into the same
batch shape, ``{"batch": [event], "sentAt": …}``, with ``type`` taken from the
path, so the Kafka record format stays one shape for the processors.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import orjson

try:  # orjson parses with yyjson: its Document checks a body exactly as orjson.loads would, without objects
    from yyjson import Document as _json_check
except ImportError:  # pragma: no cover - the same check, slower
    _json_check = orjson.loads

from eventpipe.ingest.body import decompress  # noqa: F401 - part of this module's interface
from eventpipe.ingest.errors import Rejected
from eventpipe.ingest.keys import write_key_from_basic  # noqa: F401 - part of this module's interface
from eventpipe.ingest.partitioning import event_partition_key, partition_key
from eventpipe.schemas import contract

EVENT_TYPES = contract.EVENT_TYPES
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_EVENTS = 2500
MAX_BATCH_BYTES = 500 * 1024
# orjson (here and in the processors) re-encodes at most 254 nested containers; below this many
# brackets in a whole body no event can come near, so the per-event re-encoding check is skipped.
_DEEP_BRACKETS = 250


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    body: bytes  # the JSON body to store: as sent for /v1/batch, the batch shape for single events
    events: int
    partition_key: bytes  # first event's anonymousId or userId: a device's events stay in order
    write_key: str | None = None  # the body's writeKey, when it has one


def _loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _judge_event(where: str, event) -> None:
    """Raise `Rejected` unless ``event`` has what its call type requires (eventpipe.schemas.contract)."""
    problem = contract.required_problem(event, where)
    if problem is not None:
        raise Rejected(400, problem.code, problem.message)


def _encoded_size(where: str, value) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError: nested deeper than orjson (and the processors) can re-encode
        raise Rejected(400, "too_deep", f"{where} nests objects/arrays more than 250 levels deep") from None


def write_key_in(doc: dict) -> str | None:
    """The body's writeKey (Segment's alternative to HTTP Basic): top level, else the first event's."""
    key = doc.get("writeKey")
    if key is None:
        batch = doc.get("batch")
        if type(batch) is list and batch and type(batch[0]) is dict:
            key = batch[0].get("writeKey")
    return key if type(key) is str and key else None


_Id = str | int | float | None


class _Event(msgspec.Struct):
    """The fields of an event that the contract (``eventpipe.schemas.contract.required_problem``) reads; others are skipped.

    A field of another JSON type than these fails the decode, and the body goes the long way."""

    type: str
    userId: _Id = None
    anonymousId: _Id = None
    event: str | None = None
    previousId: _Id = None
    groupId: _Id = None
    writeKey: str | None = None


class _Batch(msgspec.Struct):
    batch: list[_Event]
    writeKey: str | None = None
    context: msgspec.Raw | None = None  # a batch context is bounded by the long way (contract.envelope_problem)


_decode_batch = msgspec.json.Decoder(_Batch).decode
_ERRORS = (msgspec.DecodeError, ValueError)  # yyjson raises ValueError


def _present(value) -> bool:
    """eventpipe.schemas.contract.is_id for what _Event can hold (never a boolean; floats from JSON are finite)."""
    return value is not None and value != ""


def fast_batch(
    body: bytes, max_event_bytes: int = MAX_EVENT_BYTES, max_events: int = MAX_BATCH_EVENTS
) -> ParsedBatch | None:
    """A /v1/batch body judged in one typed decode; None when it needs the long way (``decode`` + ``judge_batch``).

    Accepts exactly what the long way accepts and returns the same ParsedBatch; it never rejects, so every
    4xx keeps its code and message. The caller has checked ``len(body)`` against the batch limit."""
    # Per-event sizes and nesting need the events as objects: only for bodies that could hide an offender.
    if len(body) > max_event_bytes or body.count(b"{") + body.count(b"[") >= _DEEP_BRACKETS:
        return None
    try:
        doc = _decode_batch(body)
        _json_check(body)  # what msgspec skips unread (UTF-8, numbers beyond a double) must still be JSON
    except _ERRORS:
        return None
    batch = doc.batch
    if not batch or len(batch) > max_events or doc.context is not None:
        return None
    for (
        event
    ) in batch:  # eventpipe.schemas.contract.required_problem for what _Event can hold (no booleans, finite floats)
        kind = event.type
        if kind not in EVENT_TYPES:
            return None
        user = event.userId
        if user is None or user == "":
            anon = event.anonymousId
            if anon is None or anon == "":
                return None
        if kind == "track":
            if not event.event:
                return None
        elif kind == "alias":
            if not _present(event.previousId):
                return None
        elif kind == "group" and not _present(event.groupId):
            return None
    first = batch[0]
    by = first.anonymousId or first.userId
    if type(by) is int and not -(2**63) <= by < 2**64:  # orjson reads such an integer as a float: its text differs
        return None
    key = doc.writeKey
    if key is None:
        key = first.writeKey
    return ParsedBatch(
        body=body,
        events=len(batch),
        partition_key=partition_key(first.anonymousId, first.userId),
        write_key=key or None,
    )


def decode(body: bytes, limit: int, single: bool = False) -> dict:
    """The body as a JSON object (step one: enough to find a write key in it)."""
    if len(body) > limit:
        raise Rejected(413, "body_too_large", f"the body exceeds {limit} bytes")
    doc = _loads(body)
    if type(doc) is not dict:
        if single:
            raise Rejected(400, "invalid_event", "the body must be a JSON object: one event")
        raise Rejected(400, "invalid_batch", "the body must be a JSON object with a 'batch' array")
    return doc


def judge_batch(
    doc: dict,
    body: bytes,
    max_event_bytes: int = MAX_EVENT_BYTES,
    max_events: int = MAX_BATCH_EVENTS,
    max_batch_bytes: int = MAX_BATCH_BYTES,
) -> ParsedBatch:
    """Check a decoded /v1/batch body (step two); the stored body is ``body``, as sent."""
    batch = doc.get("batch")
    if type(batch) is not list or not batch:
        raise Rejected(400, "invalid_batch", "'batch' must be a non-empty array of events")
    if len(batch) > max_events:
        raise Rejected(413, "too_many_events", f"the batch has {len(batch)} events; at most {max_events} are allowed")
    for i, event in enumerate(batch):
        _judge_event(f"batch[{i}]", event)
    if "context" in doc:  # merged into every event by the processors: bounded like them
        problem = contract.envelope_problem(doc["context"], len(batch), max_batch_bytes)
        if problem is not None:
            raise Rejected(400 if problem.code == "too_deep" else 413, *problem)
    # Sizes (and nesting) are judged per event only when the body could hide an offender.
    if len(body) > max_event_bytes or body.count(b"{") + body.count(b"[") >= _DEEP_BRACKETS:
        for i, event in enumerate(batch):
            size = _encoded_size(f"batch[{i}]", event)
            if size > max_event_bytes:
                raise Rejected(
                    413,
                    "event_too_large",
                    f"batch[{i}] is {size} bytes; an event may be at most {max_event_bytes} bytes",
                )
    return ParsedBatch(
        body=body, events=len(batch), partition_key=event_partition_key(batch[0]), write_key=write_key_in(doc)
    )


def judge_single(event: dict, kind: str) -> ParsedBatch:
    """Check a decoded single-event body (/v1/track …) and wrap it as a one-event batch of that ``kind``."""
    key = write_key_in(event) if "writeKey" in event else None
    event.pop("writeKey", None)
    sent_at = event.pop("sentAt", None)
    event["type"] = kind  # the path says what the call is
    _judge_event("the event", event)
    wrapped = {"batch": [event]} if sent_at is None else {"batch": [event], "sentAt": sent_at}
    try:
        stored = orjson.dumps(wrapped)
    except TypeError:
        raise Rejected(400, "too_deep", "the event nests objects/arrays more than 250 levels deep") from None
    return ParsedBatch(body=stored, events=1, partition_key=event_partition_key(event), write_key=key)


def parse_batch(
    body: bytes, limit: int, max_event_bytes: int = MAX_EVENT_BYTES, max_events: int = MAX_BATCH_EVENTS
) -> ParsedBatch:
    """Check a /v1/batch body's shape; return what the collector needs to route it."""
    return judge_batch(decode(body, limit), body, max_event_bytes, max_events)


def parse_single(body: bytes, kind: str, max_event_bytes: int = MAX_EVENT_BYTES) -> ParsedBatch:
    """Check a single-event body (/v1/track …) and wrap it as a one-event batch of that ``kind``."""
    return judge_single(decode(body, max_event_bytes, single=True), kind)
