"""Candidate: granian RSGI interface with the bare ingest handler (orjson).

Run: granian --interface rsgi --loop uvloop --workers 1 app_granian_rsgi:app
"""

import handler

HEADERS = [("content-type", "application/json")]


async def app(scope, proto):
    if scope.proto != "http":
        return
    body = await proto()
    status, payload = handler.handle(scope.method, scope.path, scope.headers.get("authorization"), body)
    proto.response_bytes(status, HEADERS, payload)
