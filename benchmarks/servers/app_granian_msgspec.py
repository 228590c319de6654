"""Candidate: granian RSGI, like app_granian_rsgi, but the body is decoded and
validated into msgspec Structs instead of parsed with orjson.

Run: granian --interface rsgi --loop uvloop --workers 1 app_granian_msgspec:app
"""

import msgspec

import handler

HEADERS = [("content-type", "application/json")]


class Event(msgspec.Struct):
    type: str
    messageId: str
    timestamp: str
    event: str | None = None
    userId: str | None = None
    anonymousId: str | None = None
    properties: dict = {}
    context: dict = {}


class Batch(msgspec.Struct):
    batch: list[Event]
    sentAt: str | None = None
    context: dict = {}


DECODER = msgspec.json.Decoder(Batch)


def valid_msgspec(body):
    try:
        DECODER.decode(body)
    except msgspec.DecodeError:  # ValidationError is a subclass
        return False
    return True


async def app(scope, proto):
    if scope.proto != "http":
        return
    body = await proto()
    status, payload = handler.handle(scope.method, scope.path, scope.headers.get("authorization"), body, valid_msgspec)
    proto.response_bytes(status, HEADERS, payload)
