"""CORS: letting browser SDKs (analytics.js and friends) post to the collector from any page.

A browser only shows a cross-origin response to the page if the response says
the page's origin may read it; without that, fetch() fails and SDKs retry
events that were in fact stored. A preflight (OPTIONS) is sent first when a
request carries headers beyond the "simple" ones (Authorization,
Content-Encoding, Content-Type: application/json). Write keys are public in
browsers anyway, so the default allows every origin (``*``); an operator can
list origins instead, or switch CORS off with an empty list.
"""

from __future__ import annotations

Headers = list[tuple[str, str]]

ALLOW_METHODS = "POST, OPTIONS"
# "*" covers any other header a browser SDK adds; Authorization must be named (the wildcard excludes it).
ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, *"
EXPOSE_HEADERS = "Retry-After, X-RateLimit-Reset"
MAX_AGE_S = "86400"


class Cors:
    def __init__(self, origins: str):
        listed = [o.strip().rstrip("/") for o in origins.split(",") if o.strip()]
        self.any = "*" in listed
        self.origins = frozenset(listed)
        self._any_headers: Headers = [
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", EXPOSE_HEADERS),
        ]
        self._preflight: Headers = [
            ("access-control-allow-methods", ALLOW_METHODS),
            ("access-control-allow-headers", ALLOW_HEADERS),
            ("access-control-max-age", MAX_AGE_S),
        ]

    def headers(self, origin: str | None) -> Headers:
        """Headers for a response to a request from ``origin`` (none when it is not a browser's or not allowed)."""
        if origin is None:
            return []
        if self.any:
            return self._any_headers
        if origin in self.origins:
            return [
                ("access-control-allow-origin", origin),
                ("vary", "Origin"),
                ("access-control-expose-headers", EXPOSE_HEADERS),
            ]
        return []

    def preflight(self, origin: str | None) -> Headers:
        allowed = self.headers(origin)
        return allowed + self._preflight if allowed else []
