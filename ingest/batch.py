"""Judging a request body cheaply and at once: JSON, shape, required fields, sizes.

Everything the collector can reject without a processor happens here, and each
rejection is a `Rejected` that names the problem (and the event, by index), so
the client sees a 4xx it can act on. What an event requires comes from
``eventpipe.schemas.contract``, the rules the processors judge by too; deeper checks
(field types, timestamps, per-event schemas) belong to processors.

A ``/v1/batch`` body is stored as sent: it is parsed once to judge it and not
re-encoded. That parse is one pass that decodes *and* validates (`fast_batch`), in
the processors' Rust engine (``eventpipe._explode.settle_batch``): their JSON reader,
which reads what orjson reads, and their contract check, building only the
document, its events and their fields (properties, traits and context are
checked as JSON, never built), each event's size and a batch context's bounded
from their text. Anything that pass cannot settle (an error to word, an event or
a context that may re-encode past its limit) goes the long way, ``decode`` then
``judge_batch``, so every rejection keeps its code and message.

A single-event body (``/v1/track`` …) is re-encoded into the same batch shape,
``{"batch": [event], "sentAt": …}``, with ``type`` taken from the path, so the
Kafka record format stays one shape for the processors.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from eventpipe._explode import settle_batch as _settle
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


def fast_batch(
    body: bytes,
    max_event_bytes: int = MAX_EVENT_BYTES,
    max_events: int = MAX_BATCH_EVENTS,
    max_batch_bytes: int = MAX_BATCH_BYTES,
) -> ParsedBatch | None:
    """A /v1/batch body judged in one pass; None when it needs the long way (``decode`` + ``judge_batch``).

    Accepts exactly what the long way accepts and returns the same ParsedBatch; it never rejects, so every
    4xx keeps its code and message. The caller has checked ``len(body)`` against the batch limit."""
    head = _settle(body, max_events, max_event_bytes, max_batch_bytes)
    if head is None:
        return None
    events, first_id, key = head  # first_id: the first event's `anonymousId or userId`, already chosen
    return ParsedBatch(body=body, events=events, partition_key=partition_key(None, first_id), write_key=key)


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
