"""Shared "bare ingest handler" logic for the server benchmarks.

Every candidate server in this directory calls `handle()` so that the only
thing that differs between them is the server/protocol layer being measured.
"""

import base64
import binascii

import orjson

# Small write-key -> source map, as the real collector would hold in memory.
WRITE_KEYS = {b"wk_bench_1": "web", b"wk_bench_2": "ios", b"wk_bench_3": "backend"}

OK = b'{"ok":true}'
BODIES = {
    200: OK,
    400: b'{"ok":false,"error":"bad batch"}',
    401: b'{"ok":false,"error":"unauthorized"}',
    404: b'{"ok":false,"error":"not found"}',
}


def authorized(header):
    """True if `header` is HTTP Basic auth whose username is a known write key."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        user = base64.b64decode(header[6:], validate=True).split(b":", 1)[0]
    except (binascii.Error, ValueError):
        return False
    return user in WRITE_KEYS


def valid_orjson(body):
    """True if `body` is a JSON object with a list `batch`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("batch"), list)


def handle(method, path, auth_header, body, valid=valid_orjson):
    """Return (status, response body) for one request."""
    if method != "POST" or path != "/v1/batch":
        return 404, BODIES[404]
    if not authorized(auth_header):
        return 401, BODIES[401]
    if not valid(body):
        return 400, BODIES[400]
    return 200, OK
