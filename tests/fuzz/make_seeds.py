"""Writes the realistic seeds and the hand-made regressions of tests/fuzz/corpus.

Crash inputs the fuzzer found sit beside them as it wrote them (``crash-<sha1>``).

The bodies follow what the Segment clients send: analytics-python (isoformat times with +00:00, writeKey in
the body), analytics-node (classic and @segment/analytics-node: ``_metadata``, ``.000Z`` times),
analytics-go (RFC 3339 nanosecond times, batch-level messageId and context), analytics.js (page context),
analytics-ios (app/device/os/network/screen context). All are dated around fuzz_explode.RECEIVED.

    PYTHONPATH=. python tests/fuzz/make_seeds.py
"""

from __future__ import annotations

from pathlib import Path

import orjson

from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle

CORPUS = Path(__file__).with_name("corpus")
WARN, ENFORCE, RAW, TWICE = 0, 4, 1, 32

PY_LIB = {"library": {"name": "analytics-python", "version": "2.3.2"}}
python_batch = {
    "batch": [
        {
            "integrations": {},
            "anonymousId": None,
            "properties": {"plan": "Enterprise", "seats": 12},
            "timestamp": "2025-12-31T23:59:58.123456+00:00",
            "context": PY_LIB,
            "userId": "019mr8mf4r",
            "type": "track",
            "event": "Signed Up",
            "messageId": "1b2f0c5e-6a3d-4a8e-9f00-6f1b8e2d3c4a",
        },
        {
            "integrations": {},
            "anonymousId": None,
            "timestamp": "2025-12-31T23:59:59.000001+00:00",
            "context": PY_LIB,
            "userId": "019mr8mf4r",
            "type": "identify",
            "traits": {"email": "peter@example.com", "name": "Peter Gibbons", "age": 34},
            "messageId": "2c3d1e6f-7b4e-4b9f-8a11-7a2c9f3e4d5b",
        },
    ],
    "sentAt": "2026-01-01T00:00:00.012345+00:00",
    "writeKey": "test-key-acme",
}

node_batch = {
    "batch": [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-42",
            "properties": {"order_id": "o-1", "revenue": 25.5, "currency": "EUR"},
            "context": {"library": {"name": "@segment/analytics-node", "version": "2.1.0"}},
            "_metadata": {"jsRuntime": "node"},
            "integrations": {},
            "timestamp": "2025-12-31T23:59:59.000Z",
            "messageId": "node-next-1767225599000-4b0f6a2e-0c4d-4f7e-9a3b-2d1c0e9f8a7b",
        },
        {
            "type": "page",
            "name": "Pricing",
            "anonymousId": "a-7",
            "properties": {"path": "/pricing"},
            "context": {"library": {"name": "analytics-node", "version": "6.2.0"}},
            "_metadata": {"nodeVersion": "18.19.0"},
            "timestamp": "2025-12-31T23:59:59.500Z",
            "messageId": "node-5f1d3c0a9b8e7d6c5b4a3f2e1d0c9b8a-1a2b3c4d",
        },
        {
            "type": "group",
            "groupId": "g-1",
            "userId": "u-42",
            "traits": {"name": "Initech", "employees": 300},
            "timestamp": "2025-12-31T23:59:59.600Z",
            "messageId": "node-g-1",
        },
        {
            "type": "alias",
            "previousId": "a-7",
            "userId": "u-42",
            "timestamp": "2025-12-31T23:59:59.700Z",
            "messageId": "node-a-1",
        },
    ],
    "timestamp": "2026-01-01T00:00:00.000Z",
    "sentAt": "2026-01-01T00:00:00.000Z",
}

go_batch = {
    "messageId": "7c0e7f0d-3b8a-4c1e-9d2f-5a6b7c8d9e0f",
    "sentAt": "2026-01-01T00:00:00.123456789Z",
    "batch": [
        {
            "type": "identify",
            "messageId": "go-1",
            "userId": "u-9",
            "traits": {"plan": "free"},
            "timestamp": "2025-12-31T23:59:59.987654321+01:00",
            "context": {"library": {"name": "analytics-go", "version": "3.3.0"}},
        },
        {
            "type": "track",
            "messageId": "go-2",
            "userId": "u-9",
            "event": "Product Viewed",
            "properties": {"product_id": "p-3", "price": 9.99},
            "timestamp": "2025-12-31T23:59:59.1Z",
            "integrations": {"All": True, "Mixpanel": False},
            "context": {"library": {"name": "analytics-go", "version": "3.3.0"}},
        },
    ],
    "context": {"library": {"name": "analytics-go", "version": "3.3.0"}},
}

web_batch = {
    "batch": [
        {
            "type": "page",
            "anonymousId": "0b4f3e6c-2d1a-4e8f-9c7b-5a3d2e1f0c9b",
            "messageId": "ajs-next-1",
            "properties": {"path": "/", "url": "https://shop.example/", "referrer": "", "title": "Shop", "search": ""},
            "context": {
                "page": {"path": "/", "url": "https://shop.example/", "referrer": "", "title": "Shop"},
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
                "locale": "de-DE",
                "timezone": "Europe/Berlin",
                "library": {"name": "analytics.js", "version": "next-1.70.0"},
                "campaign": {"name": "winter", "source": "newsletter", "medium": "email"},
            },
            "timestamp": "2025-12-31T23:59:59.321Z",
            "integrations": {},
        },
    ],
    "sentAt": "2026-01-01T00:00:00.000Z",
    "writeKey": "test-key-acme",
}

ios_batch = {
    "batch": [
        {
            "type": "screen",
            "name": "Home",
            "anonymousId": "C0FFEE00-0000-4000-8000-000000000001",
            "messageId": "ios-1",
            "timestamp": "2025-12-31T23:59:57.000Z",
            "context": {
                "app": {"name": "Shop", "version": "4.2.0", "build": "420", "namespace": "com.example.shop"},
                "device": {
                    "manufacturer": "Apple",
                    "model": "iPhone15,2",
                    "type": "ios",
                    "id": "D3V1C3",
                    "advertisingId": "00000000-0000-0000-0000-000000000000",
                },
                "os": {"name": "iOS", "version": "17.2"},
                "locale": "en-US",
                "timezone": "America/New_York",
                "network": {"wifi": True, "carrier": "T-Mobile", "cellular": False},
                "screen": {"width": 390, "height": 844, "density": 3},
                "library": {"name": "analytics-ios", "version": "4.1.8"},
                "ip": "198.51.100.23",
                "traits": {"anonymousId": "C0FFEE00-0000-4000-8000-000000000001"},
            },
        },
    ],
    "sentAt": "2026-01-01T00:00:00.000Z",
}

invalid_order = {
    "batch": [
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": "x",
            "messageId": "o-bad",
            "properties": {"revenue": -5, "currency": "euro"},
        }
    ]
}

SEEDS = {
    "seed-python-batch": (WARN, python_batch),
    "seed-node-batch": (WARN, node_batch),
    "seed-go-batch": (TWICE, go_batch),
    "seed-analytics-js-page": (WARN, web_batch),
    "seed-ios-screen": (WARN, ios_batch),
    "seed-order-completed-enforced": (ENFORCE, invalid_order),
}


BASE = {"type": "track", "event": "e", "anonymousId": "a", "messageId": "m1"}
SENT = "2026-01-01T00:00:00.000Z"
# one per bug found in processors/rows.py as of issue 11 (each raised, or broke an invariant)
REGRESSIONS = {
    "regress-type-list": (WARN, {"batch": [{**BASE, "type": []}], "sentAt": SENT}),
    "regress-type-int": (WARN, {"batch": [{**BASE, "type": 5}], "sentAt": SENT}),
    "regress-type-null": (WARN, {"batch": [{**BASE, "type": None}], "sentAt": SENT}),
    "regress-context-library-string": (WARN, {"batch": [{**BASE, "context": {"library": "analytics.js"}}]}),
    "regress-timestamp-year-9999": (WARN, {"batch": [{**BASE, "timestamp": "9999-12-31T23:59:59Z"}]}),
    "regress-timestamp-two-days-ahead": (
        WARN,
        {"batch": [{**BASE, "timestamp": "2026-01-03T00:00:00Z"}], "sentAt": SENT},
    ),
    "regress-skew-past-2299": (
        WARN,
        {"batch": [{**BASE, "timestamp": "2026-01-01T00:00:00Z"}], "sentAt": "1700-01-01T00:00:00Z"},
    ),
    "regress-sentAt-year-1": (WARN, {"batch": [BASE], "sentAt": "0001-01-01T00:00:00Z"}),
    "regress-hundred-future-days": (
        WARN,
        {
            "batch": [
                {**BASE, "messageId": f"m{i}", "timestamp": f"2026-{2 + i // 28:02d}-{1 + i % 28:02d}T00:00:00Z"}
                for i in range(101)
            ],
            "sentAt": SENT,
        },
    ),
}


def raw_regressions() -> dict[str, bytes]:
    """Records the collector never writes but a corrupt or forged one holds: they may not stall a partition."""
    body = orjson.dumps({"batch": [BASE], "sentAt": SENT})
    deep = (
        b'{"batch":[{"type":"track","event":"e","anonymousId":"a","properties":{"x":'
        + b"[" * 300
        + b"]" * 300
        + b"}}]}"
    )
    return {
        "regress-raw-received-u64": encode_bundle([AcceptedRequest("acme", 2**64 - 1, "ip", "ua", body)]),
        "regress-raw-received-year-2400": encode_bundle([AcceptedRequest("acme", 13_569_465_600_000, "", "", body)]),
        "regress-raw-event-300-deep": encode_bundle([AcceptedRequest("acme", 1_767_225_600_000, "", "", deep)]),
        # received at the edge of DateTime64's range: the skew correction carries the event past it
        "regress-raw-skew-below-1900": encode_bundle(
            [
                AcceptedRequest(
                    "acme",
                    -2_208_988_800_000 + 6 * 3_600_000,
                    "",
                    "",
                    skewed("1900-01-01T00:00:00Z", "1900-01-01T12:00:00Z"),
                )
            ]
        ),
        "regress-raw-skew-beyond-2299": encode_bundle(
            [
                AcceptedRequest(
                    "acme",
                    10_413_791_999_999 - 4 * 3_600_000 + 1,
                    "",
                    "",
                    skewed("2299-12-31T20:00:00Z", "2299-12-31T10:00:00Z"),
                )
            ]
        ),
    }


def skewed(timestamp: str, sent_at: str) -> bytes:
    return orjson.dumps({"batch": [{**BASE, "timestamp": timestamp}], "sentAt": sent_at})


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, (control, doc) in SEEDS.items():
        (CORPUS / name).write_bytes(bytes([control]) + orjson.dumps(doc))
    two = [
        AcceptedRequest("acme", 1_767_225_600_000, "203.0.113.7", "ua", orjson.dumps(python_batch)),
        AcceptedRequest("beta", 1_767_225_600_500, "::1", "", orjson.dumps(node_batch)),
    ]
    (CORPUS / "seed-raw-bundle").write_bytes(bytes([RAW]) + encode_bundle(two))
    for name, (control, doc) in REGRESSIONS.items():
        (CORPUS / name).write_bytes(bytes([control]) + orjson.dumps(doc))
    # the collector checks each event's depth, not the envelope's: its context is merged into every event
    (CORPUS / "regress-envelope-context-300-deep").write_bytes(
        bytes([WARN]) + b'{"batch":[' + orjson.dumps(BASE) + b'],"context":{"x":' + b"[" * 300 + b"]" * 300 + b"}}"
    )
    for name, record in raw_regressions().items():
        (CORPUS / name).write_bytes(bytes([RAW]) + record)


if __name__ == "__main__":
    main()
