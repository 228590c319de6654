"""The collector's two ways of saying no, each with a body a client can act on.

`Rejected` is the client's fault (4xx: fix the request, do not retry it as
is); `Unavailable` is ours or Kafka's (503: retry the same request later).
Both answer ``{"success": false, "code": …, "message": …}``: Segment's
``success`` field plus a machine-readable code and a sentence naming the
problem. The codes are listed in docs/segment-compatibility.md.
"""

from __future__ import annotations

import orjson

RETRY_AFTER_S = "1"


class Rejected(Exception):
    """A request the collector refuses, with the HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []

    def body(self) -> bytes:
        return error_body(self.code, self.message)


class Unavailable(Exception):
    """Kafka cannot take the request now (down, slow or too much waiting for it): 503 + Retry-After."""

    code = "kafka_unavailable"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"success": False, "code": code, "message": message})
