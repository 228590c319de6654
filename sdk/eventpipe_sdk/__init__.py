"""eventpipe's Python SDK: send Segment-shaped events to the collector (or any Segment-compatible endpoint).

    from eventpipe_sdk import Client
    with Client("demo-write-key", host="http://127.0.0.1:8080") as client:
        client.track("Signed Up", user_id="u1", properties={"plan": "pro"})

The guide is docs/sdk.md. Modules, one job each:
``config`` (every option), ``message`` (one event's JSON), ``calls`` (the six
Segment calls), ``batch`` (queue and request bodies), ``retry`` (what to
retry, how long to wait), ``stats`` (counters), ``http`` + ``client`` (the
threaded client), ``aio`` (the asyncio client, imported on first use).
"""

from __future__ import annotations

from eventpipe_sdk.client import Client
from eventpipe_sdk.config import Config
from eventpipe_sdk.message import LIBRARY_NAME, LIBRARY_VERSION
from eventpipe_sdk.retry import DeliveryError
from eventpipe_sdk.stats import Stats

__version__ = LIBRARY_VERSION
__all__ = ["AsyncClient", "Client", "Config", "DeliveryError", "LIBRARY_NAME", "Stats", "__version__"]


def __getattr__(name: str):
    # aiohttp is only needed by the asyncio client: threaded users don't pay for importing it.
    if name == "AsyncClient":
        from eventpipe_sdk.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'eventpipe_sdk' has no attribute {name!r}")
