"""The collector's HTTP server: granian with the limits that must be enforced before the handler runs.

A request line or headers can only be bounded while they are parsed, which
granian (hyper) does before any Python code sees the request: past
``max_header_bytes`` it answers 431 itself, and a client that takes longer
than 30 s (granian's ``header_read_timeout``) to send them is disconnected.
granian has no such timeout for bodies, so bodies are bounded in size and in
time in the handler (eventpipe.ingest.body). ``eventpipe collector`` and
``python -m eventpipe.ingest.server`` both serve through :func:`serve`.
"""

from __future__ import annotations

from granian import Granian
from granian.http import HTTP1Settings, HTTP2Settings

from eventpipe.settings import Settings

MIN_BUFFER = 8192  # hyper's smallest allowed read buffer


def granian_server(settings: Settings, target: str = "eventpipe.ingest.app:app") -> Granian:
    """``target``: the collector application to serve (``module:name``; benchmarks serve one with another sink)."""
    header_bytes = max(MIN_BUFFER, settings.max_header_bytes)
    return Granian(
        target,
        address=settings.collector_host,
        port=settings.collector_port,
        interface="rsgi",
        workers=settings.collector_workers,
        loop="uvloop",
        log_access=False,
        http1_settings=HTTP1Settings(max_buffer_size=header_bytes),
        http2_settings=HTTP2Settings(max_headers_size=header_bytes),
    )


def serve(settings: Settings | None = None, target: str = "eventpipe.ingest.app:app") -> None:
    granian_server(settings or Settings.from_env(), target).serve()


if __name__ == "__main__":
    serve()
