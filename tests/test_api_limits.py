"""Limits and hostile input: every oversize, malformed or abusive request gets a 4xx that names it, never a 5xx.

Against the shared stack: Segment's size limits (32 KB per event, 500 KB per
batch, 2,500 events), gzip truncation, chunked bodies, refused bodies read to
their end (up to a bound) so that a client still sending gets its answer,
nesting, numbers and unicode, then a seeded fuzz pass over every ingest route
that checks no input is answered 5xx and every refusal is counted in /metrics.
Against a collector of its own (``python -m eventpipe.ingest.server``, keys from a file,
a rate limit, a small header limit and a short body timeout): key rotation,
429 + Retry-After, 431 for oversized headers or URLs, 408 for bodies that
stall or trickle, and the time bound on reading a refused body.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import http.client
import json
import os
import random
import select
import socket
import sys
import time
import urllib.parse
import uuid

import aiohttp
import orjson
import pytest

from eventpipe.stack import Child, wait_http
from eventpipe.ingest.app import ROUTES
from eventpipe.ingest.body import DISCARD_BYTES
from tests.conftest import free_port
from tests.http import basic, get, post

KEY = "test-key-acme"


def event(**extra) -> dict:
    return {"type": "track", "event": "Limit", "anonymousId": str(uuid.uuid4()), **extra}


def batch_url(stack) -> str:
    return stack.collector_url + "/v1/batch"


# --- Segment's size limits -------------------------------------------------------------------------


def test_an_event_over_32kb_is_413_and_named(stack):
    limit = stack.settings.max_event_bytes
    events = [event(), event(properties={"pad": "x" * limit}), event()]
    status, _, doc = post(batch_url(stack), orjson.dumps({"batch": events}), KEY)
    assert (status, doc["code"]) == (413, "event_too_large")
    assert doc["message"].startswith("batch[1] is ") and str(limit) in doc["message"]
    # the same event alone on a single-call endpoint: the request itself is over 32 KB
    status, _, doc = post(stack.collector_url + "/v1/track", orjson.dumps(events[1]), KEY)
    assert (status, doc["code"]) == (413, "body_too_large")
    # just under the limit passes
    fits = event(properties={"pad": "x" * (limit - 200)})
    assert post(batch_url(stack), orjson.dumps({"batch": [fits, event()]}), KEY)[0] == 200


def test_too_many_events_is_413(stack):
    cap = stack.settings.max_batch_events
    tiny = {"type": "track", "event": "e", "userId": "u"}
    status, _, doc = post(batch_url(stack), orjson.dumps({"batch": [tiny] * (cap + 1)}), KEY)
    assert (status, doc["code"]) == (413, "too_many_events")
    assert str(cap) in doc["message"]


def test_truncated_gzip_is_400_and_unknown_encoding_415(stack):
    packed = gzip.compress(orjson.dumps({"batch": [event()]}))
    status, _, doc = post(batch_url(stack), packed[: len(packed) // 2], KEY, Content_Encoding="gzip")
    assert (status, doc["code"]) == (400, "bad_gzip")
    status, _, doc = post(batch_url(stack), packed, KEY, Content_Encoding="br")
    assert (status, doc["code"]) == (415, "unsupported_encoding")
    assert post(batch_url(stack), packed, KEY, Content_Encoding="GZIP")[0] == 200


def _post_chunked(stack, chunks) -> tuple[int, dict]:
    url = urllib.parse.urlsplit(stack.collector_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/batch",
            body=iter(chunks),
            encode_chunked=True,
            headers={"Authorization": basic(KEY), "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _head(base: str, key: str, framing: str) -> bytes:
    url = urllib.parse.urlsplit(base)
    return (
        f"POST /v1/batch HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {basic(key)}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


PIECE = _chunk(b" " * 8192)


def _answer(sock: socket.socket) -> tuple[int, bytes, dict]:
    """Status, lower-cased head and JSON body of the answer waiting on ``sock``."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), head.lower(), orjson.loads(body)


def _refused_mid_stream(base: str, key: str, limit: int) -> tuple[socket.socket, float]:
    """A chunked request sent just past ``limit``: the socket with the body still open and the 413 waiting on it,
    and when the headers went out."""
    url = urllib.parse.urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    started = time.monotonic()
    sock.sendall(_head(base, key, "Transfer-Encoding: chunked") + _chunk(b'{"batch": ['))
    for _ in range(limit // 8192 + 2):
        sock.sendall(PIECE)
    assert select.select([sock], [], [], 10)[0], "no answer to a body over the limit"
    return sock, started


def test_chunked_bodies_are_read_up_to_the_limit_only(stack):
    body = orjson.dumps({"batch": [event()]})
    assert _post_chunked(stack, [body[:10], body[10:]]) == (200, {"success": True})
    limit = stack.settings.max_batch_bytes
    pieces = [b" " * 8192] * (limit // 8192 + 2)  # just over the limit, never announced
    status, doc = _post_chunked(stack, [b'{"batch": ['] + pieces + [b"]}"])
    assert (status, doc["code"]) == (413, "body_too_large")
    # The same with the race it used to lose made certain: the 413 is out while the client still sends.
    # The collector reads and drops the rest, so the client can write its whole body, read the answer,
    # and see an orderly close (a reset would raise here).
    sock, _ = _refused_mid_stream(stack.collector_url, KEY, limit)
    with sock:
        time.sleep(0.1)  # a collector that closes as soon as it has answered has done so by now
        for _ in range(16):
            sock.sendall(PIECE)
        sock.sendall(_chunk(b"]}") + b"0\r\n\r\n")
        status, head, doc = _answer(sock)
        assert (status, doc["code"]) == (413, "body_too_large") and b"connection: close" in head
        assert sock.recv(1) == b""


@pytest.mark.parametrize(
    "key,declared,expected",
    [("no-such-key", 100_000, (401, "invalid_write_key")), (KEY, 600_000, (413, "body_too_large"))],
    ids=["401-basic", "413-content-length"],
)
def test_bodies_refused_unread_are_drained_so_the_answer_arrives(stack, key, declared, expected):
    """A 401 from HTTP Basic or a 413 from Content-Length is answered before any byte of the body is read."""
    url = urllib.parse.urlsplit(stack.collector_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(_head(stack.collector_url, key, f"Content-Length: {declared}"))
        assert select.select([sock], [], [], 10)[0], "no answer"
        time.sleep(0.1)  # as in the test above
        for sent in range(0, declared, 8192):  # the whole body, written as a client streams it
            sock.sendall(b" " * min(8192, declared - sent))
        status, head, doc = _answer(sock)
        assert (status, doc["code"]) == expected
        assert b"connection: close" in head and sock.recv(1) == b""


def test_a_refused_body_is_drained_only_up_to_a_byte_cap(stack):
    sock, started = _refused_mid_stream(stack.collector_url, KEY, stack.settings.max_batch_bytes)
    sent = 0
    with sock, pytest.raises(OSError):  # the collector stops reading and resets the connection
        while sent < 64 * DISCARD_BYTES:
            sock.sendall(PIECE)
            sent += len(PIECE)
    took = time.monotonic() - started
    print(f"\ncut off after {sent} bytes past the limit in {took:.3f} s")
    assert took < stack.settings.body_timeout_seconds / 2  # by the byte cap, long before the body's deadline


@pytest.mark.parametrize("depth,code", [(200, None), (253, "too_deep"), (1100, "malformed_json")])
def test_deep_nesting(stack, depth, code):
    nested = "[" * depth + "]" * depth
    body = ('{"batch":[{"type":"track","event":"Deep","userId":"u","properties":{"x":' + nested + "}}]}").encode()
    status, _, doc = post(batch_url(stack), body, KEY)
    assert (status, doc.get("code")) == ((200, None) if code is None else (400, code))


def test_numbers_unicode_and_wrong_types(stack):
    url = batch_url(stack)
    ok = [
        b'{"batch":[{"type":"track","event":"N","userId":"u","properties":{"big":123456789012345678901234567890}}]}',
        b'{"batch":[{"type":"track","event":"N","userId":"u","properties":{"x":1.7976931348623157e308,"y":-0.0}}]}',
        '{"batch":[{"type":"track","event":"Ünïcødé 🎉 \u202e","userId":"ユーザー","properties":{"z":"\\u0000"}}]}'.encode(),
        b'{"batch":[{"type":"identify","userId":42}]}',
    ]
    for body in ok:
        assert post(url, body, KEY)[0] == 200, body
    bad = {
        b'{"batch":[{"type":"track","event":"N","userId":"u","properties":{"x":1e400}}]}': "malformed_json",
        b'{"batch":[{"type":"track","event":"N","userId":"\\ud800"}]}': "malformed_json",
        b'{"batch":[{"type":"track","event":"N","userId":"\xff\xfe"}]}': "malformed_json",
        b'\xef\xbb\xbf{"batch":[]}': "malformed_json",
        b'{"batch":[{"type":["track"],"event":"N","userId":"u"}]}': "invalid_event",
        b'{"batch":[{"type":"track","event":{"n":1},"userId":"u"}]}': "missing_event_name",
        b'{"batch":[{"type":"track","event":"N","userId":{"id":1}}]}': "no_user_anon_id",
        b'{"batch":[{"type":"track","event":"N","userId":true}]}': "no_user_anon_id",
        b'{"batch":[{"type":"alias","userId":"u"}]}': "missing_previous_id",
        b'{"batch":[{"type":"group","userId":"u"}]}': "missing_group_id",
        b'{"batch":{"type":"track"}}': "invalid_batch",
        b'"batch"': "invalid_batch",
        b"": "malformed_json",
    }
    for body, code in bad.items():
        status, _, doc = post(url, body, KEY)
        assert (status, doc["code"]) == (400, code), body


# --- fuzzing -----------------------------------------------------------------------------------------

STRINGS = ["", "a", "track", "Ünïcødé", "🎉" * 3, "\u202e\u0000\t\n", "x" * 300, "null", "1e999", "\\ud800"]


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**64, 10**30, 1.5, -0.0, 1e308, 5e-324])
    if kind in (2, 3, 4):
        return rng.choice(STRINGS) + "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(5)))
    if kind in (5, 6):
        return {
            rng.choice(
                [
                    "type",
                    "event",
                    "userId",
                    "anonymousId",
                    "batch",
                    "properties",
                    "writeKey",
                    "previousId",
                    "groupId",
                    "context",
                    "sentAt",
                    rng.choice(STRINGS),
                ]
            ): random_json(rng, depth + 1)
            for _ in range(rng.randrange(6))
        }
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]


def valid_batch(rng: random.Random) -> dict:
    kinds = ["track", "identify", "page", "screen", "group", "alias"]
    events = []
    for _ in range(rng.randrange(1, 6)):
        ev = {
            "type": rng.choice(kinds),
            "userId": f"fuzz-{rng.randrange(10**6)}",
            "event": "Fuzz",
            "previousId": "p",
            "groupId": "g",
            "properties": {"n": rng.random()},
        }
        events.append(ev)
    return {"batch": events, "sentAt": "2026-01-01T00:00:00.000Z"}


def _dumps(value) -> bytes:
    """JSON of any value (orjson refuses integers past 64 bits, which clients may well send)."""
    return json.dumps(value, ensure_ascii=False).encode()


def fuzz_cases(rng: random.Random, n: int) -> list[tuple[str, bytes, dict]]:
    """(path, body, headers) for ``n`` hostile requests of many shapes."""
    paths = sorted(ROUTES)
    auth = {"Authorization": basic(KEY)}
    cases = []
    for _ in range(n):
        path = rng.choice(paths)
        headers = dict(auth)
        valid = orjson.dumps(valid_batch(rng) if ROUTES[path] == "batch" else valid_batch(rng)["batch"][0])
        shape = rng.randrange(12)
        if shape == 0:  # random bytes
            body = rng.randbytes(rng.randrange(0, 2000))
        elif shape == 1:  # truncated
            body = valid[: rng.randrange(len(valid))]
        elif shape == 2:  # bit flips
            raw = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            body = bytes(raw)
        elif shape in (3, 4):  # random JSON, maybe wrapped as a batch
            value = random_json(rng)
            body = _dumps({"batch": [value]} if shape == 4 else value)
        elif shape == 5:  # one field of a valid body replaced by a random value
            doc = orjson.loads(valid)
            target = doc["batch"][0] if "batch" in doc else doc
            target[
                rng.choice(
                    [
                        "type",
                        "userId",
                        "anonymousId",
                        "event",
                        "previousId",
                        "groupId",
                        "properties",
                        "sentAt",
                        "context",
                    ]
                )
            ] = random_json(rng)
            if rng.random() < 0.3:
                doc[rng.choice(["batch", "writeKey", "sentAt"])] = random_json(rng)
            body = _dumps(doc)
        elif shape == 6:  # deep nesting
            depth = rng.choice([100, 252, 253, 254, 255, 400, 1023, 1024, 1025, 5000])
            body = valid[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
        elif shape == 7:  # numbers out of every range
            number = rng.choice([b"1" * 400, b"1e999", b"-1e400", b"1.5e308", b"1e-400", b"-0", b"0.0000001e-320"])
            body = valid[:-1] + b',"num":' + number + b"}"
        elif shape == 8:  # gzip done wrong (or right)
            packed = gzip.compress(valid)
            body = rng.choice([packed, packed[: rng.randrange(len(packed))], rng.randbytes(200), packed + b"junk"])
            headers["Content-Encoding"] = rng.choice(["gzip", "gzip", "deflate", "br", "GZip", "x-gzip", "ü"])
        elif shape == 9:  # keys done wrong
            body = valid
            headers["Authorization"] = rng.choice(
                [
                    "Basic " + base64.b64encode(rng.randbytes(rng.randrange(1, 40))).decode(),
                    "Basic " + rng.choice(["", "a", "Ünïcødé", "🎉🎉", "x" * 300]).encode().decode("latin-1"),
                    "Basic",
                    "Bearer abc",
                    "basic " + base64.b64encode(b"\xff\xfe:").decode(),
                    "",
                ]
            )
            if rng.random() < 0.5:
                doc = orjson.loads(valid)
                doc["writeKey"] = random_json(rng)
                body = _dumps(doc)
        elif shape == 10:  # oversize
            doc = orjson.loads(valid)
            target = doc["batch"][0] if "batch" in doc else doc
            target["properties"] = {"pad": "y" * rng.choice([30_000, 33_000, 600_000])}
            body = orjson.dumps(doc)
        else:  # a valid body: the fuzz must not break what works
            body = valid
        cases.append((path, body, headers))
    return cases


def rejected_total(stack) -> float:
    _, _, raw = get(stack.collector_url + "/metrics")
    return sum(
        float(line.split()[-1])
        for line in raw.decode().splitlines()
        if line.startswith("eventpipe_collector_rejected_requests_total{")
    )


def test_fuzz_never_5xx_and_every_refusal_is_counted(stack):
    seed = int(os.environ.get("EVENTPIPE_FUZZ_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    cases = fuzz_cases(rng, int(os.environ.get("EVENTPIPE_FUZZ_CASES", "1500")))

    async def send_all() -> list[int]:
        sem = asyncio.Semaphore(32)
        async with aiohttp.ClientSession(auto_decompress=False) as session:

            async def one(path, body, headers):
                async with (
                    sem,
                    session.post(
                        stack.collector_url + path,
                        data=body,
                        headers=headers,
                        skip_auto_headers=["Content-Type"],
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as resp,
                ):
                    answer = await resp.read()
                    if resp.status != 200:
                        doc = json.loads(answer)  # every refusal is our JSON error body
                        assert doc["success"] is False and doc["code"] and doc["message"], doc
                    return resp.status

            return await asyncio.gather(*(one(*case) for case in cases))

    before = rejected_total(stack)
    statuses = asyncio.run(send_all())
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    print(f"\nfuzz seed={seed}: {len(cases)} inputs, status counts {counts}")
    assert all(code < 500 for code in statuses), (seed, counts)
    refused = sum(n for code, n in counts.items() if code >= 400)
    assert wait_until(lambda: rejected_total(stack) - before == refused), (seed, rejected_total(stack) - before)
    assert counts.get(200, 0) > 0 and refused > len(cases) / 2
    assert get(stack.collector_url + "/readyz")[0] == 200


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- a collector of its own: keys from a file, rate limits, header limits -----------------------------

KEYS_FILE = {
    "acme": ["tuned-key-new-0001", "tuned-key-old-0001"],
    "slow": {"keys": ["tuned-key-slow-0001"], "rate_limit_events_per_s": 10},
}


BODY_TIMEOUT_S = 1.0
TUNED_KEY = "tuned-key-new-0001"


@pytest.fixture(scope="module")
def tuned(stack, tmp_path_factory):
    """A second collector process on the shared broker, served by eventpipe.ingest.server with its own settings."""
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    keys_file.write_text(json.dumps(KEYS_FILE))
    settings = dataclasses.replace(
        stack.settings,
        collector_port=free_port(),
        write_keys="",
        write_keys_file=keys_file,
        max_header_bytes=8192,
        body_timeout_seconds=BODY_TIMEOUT_S,
    )
    env = {**os.environ, **settings.env(), "PYTHONUNBUFFERED": "1"}
    child = Child("tuned", [sys.executable, "-m", "eventpipe.ingest.server"], env, out=None)
    try:
        wait_http(f"http://127.0.0.1:{settings.collector_port}/readyz", child, 60)
        yield f"http://127.0.0.1:{settings.collector_port}"
        assert not any("Traceback" in line for line in child.lines), "\n".join(child.lines)
        assert not any(key in line for line in child.lines for key in KEYS_FILE["acme"]), "a key was logged"
    finally:
        child.stop()


def test_keys_from_a_file_old_and_new_both_valid(tuned):
    body = orjson.dumps({"batch": [event()]})
    for key in KEYS_FILE["acme"]:
        status, _, doc = post(tuned + "/v1/batch", body, key)
        assert (status, doc) == (200, {"success": True})
    assert post(tuned + "/v1/batch", body, KEY)[0] == 401  # the env keys were replaced by the file's


def test_rate_limit_answers_429_with_retry_after(tuned):
    ten = orjson.dumps({"batch": [event() for _ in range(10)]})
    statuses, answer = [], None
    for _ in range(4):
        status, headers, doc = post(tuned + "/v1/batch", ten, "tuned-key-slow-0001")
        statuses.append(status)
        if status == 429:
            answer = headers, doc
    assert statuses[0] == 200 and 429 in statuses, statuses
    headers, doc = answer
    assert doc["code"] == "rate_limited"
    wait = int(headers["retry-after"])
    assert 1 <= wait <= 3 and headers["x-ratelimit-reset"] == headers["retry-after"]
    # other keys are not slowed down
    assert post(tuned + "/v1/batch", ten, "tuned-key-new-0001")[0] == 200
    time.sleep(wait)
    assert post(tuned + "/v1/batch", ten, "tuned-key-slow-0001")[0] == 200


def _raw_status(base: str, target: str, extra_header: str = "") -> int:
    """Status of one request written in a single send (the server may close before reading it all)."""
    url = urllib.parse.urlsplit(base)
    body = orjson.dumps({"batch": [event()]})
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {basic('tuned-key-new-0001')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra_header}\r\n"
    )
    for attempt in range(3):  # a reset can overtake the answer of a server that closed on unread bytes
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            try:
                sock.sendall(head.encode() + body)
            except OSError:  # closed on us mid-send: the answer is still there to read
                pass
            try:
                return int(sock.recv(64).split(b" ", 2)[1])
            except ConnectionResetError:
                if attempt == 2:
                    raise


def test_oversized_headers_and_urls_are_431(tuned):
    assert _raw_status(tuned, "/v1/batch", "X-Padding: " + "p" * 10_000 + "\r\n") == 431
    assert _raw_status(tuned, "/v1/batch?" + "q" * 10_000) in (414, 431)
    assert _raw_status(tuned, "/v1/batch", "X-Padding: " + "p" * 2_000 + "\r\n") == 200


# --- slow bodies: the whole body within EVENTPIPE_BODY_TIMEOUT_SECONDS, else 408 ---------------------


async def _slow_client(base: str, chunked: bool, pace: float | None) -> tuple[bytes, float]:
    """Headers, then a body that never completes: nothing more (``pace`` None) or one byte every ``pace`` s.

    Returns what the server answered and the seconds from sending the headers until it closed the connection."""
    url = urllib.parse.urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    started = time.monotonic()
    writer.write(_head(base, TUNED_KEY, "Transfer-Encoding: chunked" if chunked else "Content-Length: 1000"))

    async def trickle():
        while True:
            await asyncio.sleep(pace)
            writer.write(b"1\r\n \r\n" if chunked else b" ")

    sender = asyncio.create_task(trickle()) if pace else None
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            answer += chunk
    except ConnectionResetError:  # only a trickling client: a byte of it reached the socket as it closed
        assert pace
    finally:
        if sender:
            sender.cancel()
        writer.close()
    return answer, time.monotonic() - started


def _rejected(base: str, reason: str) -> float:
    _, _, raw = get(base + "/metrics")
    prefix = f'eventpipe_collector_rejected_requests_total{{reason="{reason}"}} '
    return sum(float(line[len(prefix) :]) for line in raw.decode().splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("pace", [None, 0.3], ids=["stalled", "trickle"])
def test_slow_bodies_are_cut_off_with_408(tuned, chunked, pace):
    held = 20
    before = _rejected(tuned, "body_timeout")

    async def hold_many():
        return await asyncio.gather(*(_slow_client(tuned, chunked, pace) for _ in range(held)))

    results = asyncio.run(hold_many())
    took = sorted(seconds for _, seconds in results)
    answered = [answer for answer, _ in results if answer]
    print(
        f"\n{held} held connections closed after {took[0]:.3f}..{took[-1]:.3f} s (body timeout {BODY_TIMEOUT_S} s),"
        f" {len(answered)} read the 408"
    )
    assert BODY_TIMEOUT_S - 0.01 <= took[0] and took[-1] < BODY_TIMEOUT_S + 0.5, took  # libuv timers: 1 ms steps
    if pace is None:  # nothing unread on the connection: every client reads its 408 before the close
        assert len(answered) == held
    for answer in answered:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower(), head
        assert orjson.loads(body)["code"] == "body_timeout"
    assert wait_until(lambda: _rejected(tuned, "body_timeout") - before == held)
    assert get(tuned + "/healthz")[0] == 200


def test_a_body_sent_slowly_but_in_time_is_accepted(tuned):
    body = orjson.dumps({"batch": [event()]})
    url = urllib.parse.urlsplit(tuned)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(_head(tuned, TUNED_KEY, f"Content-Length: {len(body)}"))
        for i in range(0, len(body), len(body) // 4 + 1):  # in pieces over about half the body timeout
            time.sleep(BODY_TIMEOUT_S / 8)
            sock.sendall(body[i : i + len(body) // 4 + 1])
        assert sock.recv(64).startswith(b"HTTP/1.1 200 ")


def test_a_refused_body_is_drained_only_until_the_body_timeout(stack, tuned):
    sock, started = _refused_mid_stream(tuned, TUNED_KEY, stack.settings.max_batch_bytes)
    with sock:
        assert _answer(sock)[0] == 413
        closed = False
        while not closed and time.monotonic() - started < 10 * BODY_TIMEOUT_S:  # 20 KB/s: far below the byte cap
            try:
                sock.sendall(_chunk(b" " * 1024))
                if select.select([sock], [], [], 0.05)[0]:
                    closed = sock.recv(1) == b""
            except OSError:  # a reset
                closed = True
        took = time.monotonic() - started
    print(f"\ndrain of a trickling body cut off after {took:.3f} s (body timeout {BODY_TIMEOUT_S} s)")
    assert closed and BODY_TIMEOUT_S - 0.01 <= took < BODY_TIMEOUT_S + 0.5
