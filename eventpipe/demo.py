"""Realistic synthetic Segment traffic for a running collector (``eventpipe demo``).

A few hundred devices on iOS, Android and the web browse, add to cart and buy;
some identify. Each request is a /v1/batch of the device's next events, sent
with the write key as HTTP Basic username, as Segment's SDKs do.
"""

from __future__ import annotations

import asyncio
import base64
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import aiohttp
import orjson

from eventpipe.progress import Progress

PRODUCTS = [
    ("sku-1001", "Trail Shoes", 89.0),
    ("sku-2002", "Rain Jacket", 129.5),
    ("sku-3003", "Water Bottle", 12.0),
    ("sku-4004", "Headlamp", 34.9),
    ("sku-5005", "Wool Socks", 9.5),
]
PLATFORMS = [
    (
        "ios",
        {
            "os": {"name": "iOS", "version": "18.2"},
            "device": {"manufacturer": "Apple", "model": "iPhone15,2"},
            "library": {"name": "analytics-swift", "version": "1.7.1"},
        },
    ),
    (
        "android",
        {
            "os": {"name": "Android", "version": "15"},
            "device": {"manufacturer": "Google", "model": "Pixel 8"},
            "library": {"name": "analytics-kotlin", "version": "1.18.0"},
        },
    ),
    (
        "web",
        {
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "page": {"path": "/shop", "url": "https://shop.example/shop"},
        },
    ),
]
APP_VERSIONS = ["3.4.0", "3.4.1", "3.5.0"]


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Device:
    anonymous_id: str
    platform: str
    context: dict
    user_id: str | None = None

    @classmethod
    def new(cls, rng: random.Random) -> "Device":
        name, ctx = rng.choice(PLATFORMS)
        ctx = dict(
            ctx, app={"name": "Shop", "version": rng.choice(APP_VERSIONS)}, locale="en-US", timezone="Europe/Berlin"
        )
        return cls(str(uuid.UUID(int=rng.getrandbits(128))), name, ctx)


def _event(rng: random.Random, device: Device, now: datetime) -> dict:
    base = {
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "anonymousId": device.anonymous_id,
        "timestamp": _iso(now - timedelta(milliseconds=rng.randint(0, 5000))),
        "context": device.context,
    }
    if device.user_id:
        base["userId"] = device.user_id
    roll = rng.random()
    sku, name, price = rng.choice(PRODUCTS)
    if roll < 0.05 and not device.user_id:
        device.user_id = f"user-{rng.randint(1, 10**6)}"
        return dict(base, type="identify", userId=device.user_id, traits={"plan": rng.choice(["free", "pro"])})
    if roll < 0.25:
        kind = "screen" if device.platform != "web" else "page"
        return dict(base, type=kind, name=rng.choice(["Home", "Catalog", "Cart"]))
    if roll < 0.75:
        return dict(
            base, type="track", event="Product Viewed", properties={"product_id": sku, "name": name, "price": price}
        )
    if roll < 0.93:
        return dict(
            base,
            type="track",
            event="Product Added",
            properties={"product_id": sku, "price": price, "quantity": rng.randint(1, 3)},
        )
    return dict(
        base,
        type="track",
        event="Order Completed",
        properties={"order_id": uuid.UUID(int=rng.getrandbits(128)).hex[:12], "revenue": price, "currency": "EUR"},
    )


def make_batch(rng: random.Random, device: Device, events: int) -> bytes:
    now = datetime.now(timezone.utc)
    return orjson.dumps({"batch": [_event(rng, device, now) for _ in range(events)], "sentAt": _iso(now)})


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@dataclass
class DemoResult:
    requests: int = 0
    events: int = 0
    failed: int = 0
    seconds: float = 0.0


async def run_demo(
    url: str,
    write_key: str,
    requests: int,
    events_per_request: int = 10,
    devices: int = 300,
    concurrency: int = 16,
    seed: int | None = None,
    out=sys.stderr,
) -> DemoResult:
    rng = random.Random(seed)
    fleet = [Device.new(rng) for _ in range(devices)]
    result = DemoResult()
    headers = {
        "Authorization": basic_auth(write_key),
        "Content-Type": "application/json",
        "User-Agent": "eventpipe-demo/0.1",
    }
    remaining = requests
    started = time.monotonic()
    progress = Progress(out)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            body = make_batch(rng, rng.choice(fleet), events_per_request)  # built at send time: sentAt is now
            async with session.post(f"{url}/v1/batch", data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    result.requests += 1
                    result.events += events_per_request
                else:
                    result.failed += 1
            done = result.requests + result.failed
            if done % 100 == 0 or done == requests:
                progress.update(
                    f"  demo: {done}/{requests} requests, {result.events} events accepted, {result.failed} failed"
                )

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    progress.done()
    result.seconds = time.monotonic() - started
    return result
