"""Judging one HTTP request cheaply and at once: write key, size, encoding, JSON shape.

Everything the collector can reject without a processor happens here, and each
rejection is a `Rejected` that names the problem, so the client sees a 4xx it
can act on. Deeper checks (per-event schemas, timestamps) belong to processors.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass

import orjson

EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})


class Rejected(Exception):
    """A request the collector refuses, with the HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        return orjson.dumps({"success": False, "code": self.code, "message": self.message})


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    body: bytes  # the decompressed JSON body, stored as sent
    events: int
    partition_key: bytes  # first event's anonymousId or userId: a device's events stay in order


def write_key_from_basic(header: str | None) -> str | None:
    """The username of an HTTP Basic Authorization header (Segment's write key)."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The request body, gunzipped if it says so, never inflated past ``limit`` bytes (no gzip bombs)."""
    if not encoding or encoding == "identity":
        return body
    if encoding.lower() != "gzip":
        raise Rejected(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Rejected(400, "bad_gzip", "the body is not valid gzip") from None
    if len(out) > limit:
        raise Rejected(413, "body_too_large", f"the decompressed body exceeds {limit} bytes")
    return out


def parse_batch(body: bytes, limit: int) -> ParsedBatch:
    """Check a /v1/batch body's shape; return what the collector needs to route it."""
    if len(body) > limit:
        raise Rejected(413, "body_too_large", f"the body exceeds {limit} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Rejected(400, "invalid_batch", "the body must be a JSON object with a 'batch' array")
    batch = doc.get("batch")
    if not isinstance(batch, list) or not batch:
        raise Rejected(400, "invalid_batch", "'batch' must be a non-empty array of events")
    for i, event in enumerate(batch):
        if not isinstance(event, dict):
            raise Rejected(400, "invalid_event", f"batch[{i}] is not an object")
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise Rejected(400, "invalid_event", f"batch[{i}].type must be one of {sorted(EVENT_TYPES)}")
        if not (event.get("userId") or event.get("anonymousId")):
            raise Rejected(400, "invalid_event", f"batch[{i}] needs a userId or an anonymousId")
        if kind == "track" and not isinstance(event.get("event"), str):
            raise Rejected(400, "invalid_event", f"batch[{i}] is a track call without an 'event' name")
    first = batch[0]
    key = str(first.get("anonymousId") or first.get("userId")).encode()
    return ParsedBatch(body=body, events=len(batch), partition_key=key)
