"""Reading a request body without trusting what the client says about its size or how fast it sends.

A body can announce its length (Content-Length), stream it (chunked) or
shrink it (gzip). Each way is bounded here before any byte is parsed: a
declared length over the limit is refused unread, a stream is cut off at the
limit, and gzip is inflated only up to the limit (a gzip bomb costs at most
``limit`` bytes of output, never its full size). The whole body must also
arrive within a time limit: granian bounds only the wait for headers (hyper's
header read timeout, 30 s), and once the handler awaits a body nothing would
stop a client that stalls or trickles it from holding the connection forever.
A body refused before it was read to its end is still read, and dropped, after
the answer (within the same deadline and a byte cap), so that the client can
read that answer: see `Body.discard`.

The deadline costs one timer per worker, not one per request (`Deadlines`):
``asyncio.timeout_at`` per request was ~4 µs of timer handles and context
managers on the hot path, where almost every body has arrived already.
"""

from __future__ import annotations

import asyncio
import collections
import zlib

from granian.rsgi import ProtocolClosed, ProtocolError

from eventpipe.ingest.errors import Rejected

GZIP = frozenset({"gzip", "x-gzip"})
IDENTITY = frozenset({"", "identity"})


# Bytes a refused body may still send and have read, so that its client can read the answer (twice the
# default batch limit: a client over a limit is usually over it by little).
DISCARD_BYTES = 1024 * 1024


def too_large(limit: int, what: str = "the body") -> Rejected:
    return Rejected(413, "body_too_large", f"{what} exceeds {limit} bytes")


class Deadlines:
    """The bodies being read in one worker, oldest first, and one timer for the oldest deadline.

    Every body of a worker gets the same timeout, so deadlines come in the order bodies start: the oldest
    live entry is the next to expire and the timer only ever waits for it. A body that arrives leaves the
    queue at once (a dict deletion); when the timer fires, the bodies past their deadline have their reading
    task cancelled (``Body.read`` turns that into a 408), and the timer is set again for the next one."""

    __slots__ = ("loop", "waiting", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.waiting: collections.OrderedDict = collections.OrderedDict()  # Body -> its reading task
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> "Deadlines":
        global _deadlines
        if _deadlines is None or _deadlines.loop is not loop:  # a worker has one loop; tests make new ones
            _deadlines = cls(loop)
        return _deadlines

    def add(self, body: "Body", task: asyncio.Task) -> None:
        self.waiting[body] = task
        if self.timer is None:
            self.timer = self.loop.call_at(body.deadline, self._expire)

    def _expire(self) -> None:
        self.timer = None
        waiting, now = self.waiting, self.loop.time()
        while waiting:
            body = next(iter(waiting))
            if body.deadline > now:
                self.timer = self.loop.call_at(body.deadline, self._expire)
                return
            task = waiting.pop(body)
            body.expired = True
            task.cancel()


_deadlines: Deadlines | None = None  # the running loop's


class Body:
    """One request's body: read within a size limit and a deadline, or, once refused, discarded within bounds."""

    __slots__ = ("proto", "timeout", "deadline", "chunks", "complete", "expired")

    def __init__(self, proto, timeout: float, loop: asyncio.AbstractEventLoop | None = None):
        self.proto = proto
        self.timeout = timeout
        self.deadline = (loop or asyncio.get_running_loop()).time() + timeout
        self.chunks = None  # a chunked body's stream once reading began (granian gives out one per request)
        self.complete = False  # read to its end, so the connection can carry another request
        self.expired = False  # its deadline passed while it was being read

    async def read(self, content_length: str | None, limit: int) -> bytes:
        """The raw body, at most ``limit`` bytes; 413 past the size, 408 past the deadline, 400 if the client
        stops sending."""
        task = asyncio.current_task()
        deadlines = Deadlines.of(task.get_loop())
        deadlines.add(self, task)
        try:
            raw = await self._read(content_length, limit)
        except asyncio.CancelledError:
            if not self.expired:  # not ours: the request itself was cancelled
                raise
            task.uncancel()
            raise Rejected(408, "body_timeout", f"the body did not arrive within {self.timeout:g} s") from None
        except (ProtocolClosed, ProtocolError):
            raise Rejected(400, "incomplete_body", "the connection closed before the whole body arrived") from None
        finally:
            deadlines.waiting.pop(self, None)
        self.complete = True
        return raw

    async def _read(self, content_length: str | None, limit: int) -> bytes:
        if content_length is not None:
            if not (content_length.isascii() and content_length.isdigit()):
                raise Rejected(400, "bad_content_length", "Content-Length is not a number")
            if int(content_length) > limit:
                raise too_large(limit)
            return await self.proto()
        # No length announced: a chunked stream, cut off at the limit. The stream is kept for discard() and
        # walked with anext(): `async for` would ask granian for a second stream, and anext() with a default
        # crashes granian's worker (2.8.9) at the end of the stream.
        self.chunks = chunks = aiter(self.proto)
        parts, size = [], 0
        try:
            while True:
                chunk = await anext(chunks)
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                parts.append(chunk)
        except StopAsyncIteration:
            return b"".join(parts)

    async def discard(self) -> None:
        """Read and drop the rest of a refused body, after its answer went out: a lingering close.

        hyper closes the connection once the answer is sent and the handler is done with the body. A
        socket closed with unread bytes in it sends a reset, which can destroy the answer before the
        client reads it, and a client still writing its body gets EPIPE instead of the answer. Read to
        the end, the body lets the connection close in order. The reading stops at DISCARD_BYTES and
        at the body's deadline, so a client that keeps sending cannot hold the connection; past the
        deadline (a 408), or when the body was taken by a read that failed, it ends at once."""
        left = DISCARD_BYTES
        try:
            async with asyncio.timeout_at(self.deadline):
                chunks = aiter(self.proto) if self.chunks is None else self.chunks
                while left > 0:
                    left -= len(await anext(chunks))
        except (StopAsyncIteration, TimeoutError, ProtocolClosed, ProtocolError):
            pass


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
