"""The in-run ceiling: a bare "read body, check key, parse, 200" RSGI handler on the collector's stack.

Same server (granian RSGI, uvloop, one worker), same write keys (EVENTPIPE_WRITE_KEYS), same
gunzip and orjson parse as the collector, but no validation per event, no bundling and
no Kafka. The collector's throughput is reported as a ratio to this, measured in the same
run on the same core (``eventpipe bench collector``).

Run: granian --interface rsgi --loop uvloop --workers 1 bare:app   (cwd benchmarks/apps)
"""

import base64
import binascii
import os
import zlib

import orjson

KEYS = {pair.split("=", 1)[0] for pair in os.environ.get("EVENTPIPE_WRITE_KEYS", "demo-write-key=demo").split(",")}
JSON = [("content-type", "application/json")]


def _status(scope, body: bytes) -> int:
    if scope.method != "POST" or scope.path != "/v1/batch":
        return 404
    auth = scope.headers.get("authorization") or ""
    try:
        key = base64.b64decode(auth[6:], validate=True).split(b":", 1)[0].decode()
    except (binascii.Error, ValueError):
        return 401
    if key not in KEYS:
        return 401
    if scope.headers.get("content-encoding") == "gzip":
        body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400
    return 200 if isinstance(doc, dict) and isinstance(doc.get("batch"), list) else 400


async def app(scope, proto):
    if scope.proto != "http":
        return
    status = _status(scope, await proto())
    proto.response_bytes(status, JSON, b'{"success":true}' if status == 200 else b'{"success":false}')
