"""A tiny HTTP client for tests: status, headers and JSON body of one request."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import orjson


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(url: str, body: bytes, key: str | None = None, **headers: str) -> tuple[int, dict, dict]:
    hdrs = {"Content-Type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    if key is not None:
        hdrs["Authorization"] = basic(key)
    return _send(urllib.request.Request(url, data=body, headers=hdrs, method="POST"))


def get(url: str) -> tuple[int, dict, bytes]:
    status, headers, raw = _send(urllib.request.Request(url), parse=False)
    return status, headers, raw


def _send(request, parse: bool = True):
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    if not parse:
        return status, headers, raw
    return status, {k.lower(): v for k, v in headers.items()}, (orjson.loads(raw) if raw else {})
