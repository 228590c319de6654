"""One POST of a batch body, for the threaded client (standard library only).

``http.client`` rather than ``urllib`` because it keeps the connection open
between batches (one TCP/TLS handshake instead of one per request). The
request headers are built here for both clients.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from eventpipe_sdk.config import Config
from eventpipe_sdk.message import LIBRARY_NAME

# Errors that mean "no answer from the server": retried like a 5xx.
CONNECTION_ERRORS = (OSError, http.client.HTTPException)
# What a kept-alive connection that the server closed while idle raises (RemoteDisconnected is one).
_CLOSED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def request_headers(config: Config, version: str) -> dict[str, str]:
    auth = base64.b64encode(f"{config.write_key}:".encode()).decode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Basic {auth}",
        "User-Agent": f"{LIBRARY_NAME}/{version}",
    }
    if config.gzip:
        headers["Content-Encoding"] = "gzip"
    return headers


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    retry_after: str | None
    body: bytes


class Connection:
    """A kept-alive connection to the collector; reconnects when the server closed it."""

    def __init__(self, config: Config, headers: dict[str, str]):
        parts = urlsplit(config.batch_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._timeout = config.timeout
        self._headers = headers
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> Response:
        """Send ``body``; raises one of CONNECTION_ERRORS when no answer came."""
        reused = self._conn is not None
        try:
            return self._post(body)
        except CONNECTION_ERRORS as exc:
            self.close()
            if not (reused and isinstance(exc, _CLOSED)):
                raise
        # The server had closed the kept-alive connection while it was idle: once more on a fresh one.
        try:
            return self._post(body)
        except CONNECTION_ERRORS:
            self.close()
            raise

    def _post(self, body: bytes) -> Response:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self._conn.request("POST", self._path, body=body, headers=self._headers)
        resp = self._conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self.close()
        return Response(resp.status, resp.getheader("Retry-After"), data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
