"""Reading a request body without trusting what the client says about its size or how fast it sends.

A body can announce its length (Content-Length), stream it (chunked) or
shrink it (gzip). Each way is bounded here before any byte is parsed: a
declared length over the limit is refused unread, a stream is cut off at the
limit, and gzip is inflated only up to the limit (a gzip bomb costs at most
``limit`` bytes of output, never its full size). The whole body must also
arrive within a time limit: granian bounds only the wait for headers (hyper's
header read timeout, 30 s), and once the handler awaits a body nothing would
stop a client that stalls or trickles it from holding the connection forever.
"""

from __future__ import annotations

import asyncio
import zlib

from granian.rsgi import ProtocolClosed, ProtocolError

from ingest.errors import Rejected

GZIP = frozenset({"gzip", "x-gzip"})
IDENTITY = frozenset({"", "identity"})


def too_large(limit: int, what: str = "the body") -> Rejected:
    return Rejected(413, "body_too_large", f"{what} exceeds {limit} bytes")


async def read_body(proto, content_length: str | None, limit: int, timeout: float) -> bytes:
    """The raw body, at most ``limit`` bytes, within ``timeout`` seconds; 413 past the size, 408 past the time,
    400 if the client stops sending."""
    try:
        async with asyncio.timeout(timeout):
            return await _read(proto, content_length, limit)
    except TimeoutError:
        raise Rejected(408, "body_timeout", f"the body did not arrive within {timeout:g} s") from None
    except (ProtocolClosed, ProtocolError):
        raise Rejected(400, "incomplete_body", "the connection closed before the whole body arrived") from None


async def _read(proto, content_length: str | None, limit: int) -> bytes:
    if content_length is not None:
        if not (content_length.isascii() and content_length.isdigit()):
            raise Rejected(400, "bad_content_length", "Content-Length is not a number")
        if int(content_length) > limit:
            raise too_large(limit)
        return await proto()
    chunks, size = [], 0  # no length announced: a chunked stream, cut off at the limit
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The request body, gunzipped if it says so, never inflated past ``limit`` bytes (no gzip bombs)."""
    if not encoding:
        return body
    name = encoding.strip().lower()
    if name in IDENTITY:
        return body
    if name not in GZIP:
        raise Rejected(415, "unsupported_encoding", f"Content-Encoding {encoding[:40]!r} is not supported; use gzip")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Rejected(400, "bad_gzip", "the body is not valid gzip") from None
    if len(out) > limit:
        raise too_large(limit, "the decompressed body")
    if not inflater.eof:
        raise Rejected(400, "bad_gzip", "the gzip body is truncated")
    return out
