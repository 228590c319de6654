"""Official analytics clients in other languages, unchanged, against the real running collector.

Each client program in tests/clients/ (Segment's Node and Go clients, RudderStack's Node SDK) is
installed from the pinned files there by tests/clients/install.sh (npm ci / go build, reused while
those files are unchanged), sends every call type it supports for one fresh user — with properties,
traits, context, explicit timestamps (a minute in the past) and messageIds, one call with neither, and
one event sent twice with its messageId — flushes and exits. The test then reads ClickHouse: exactly
one row per call, and each stored field as the client sent it, including the library the client names
itself by, the context columns and the three times (client, sent, corrected). A missing node/npm or go
fails these tests; it does not skip them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import query, wait_for

ROOT = Path(__file__).resolve().parents[1]
CLIENTS_DIR = ROOT / "tests" / "clients"
KEY = "test-key-acme"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

pytestmark = pytest.mark.timeout(600)  # a first run installs the clients (a cold go build: ~1 min)


@dataclasses.dataclass(frozen=True)
class Client:
    name: str
    toolchain: str  # what tests/clients/install.sh installs for it
    script: str | None  # the node script, or None for the Go binary
    library: tuple[str, str]  # context.library as the client sets it: (name, version)
    user_agent: str
    context: dict  # what the program sends as context (Go: once per batch, on the envelope)
    generated_id: re.Pattern  # the messageId the client makes for a call without one
    identify_traits: dict
    page_properties_extra: dict  # what the client adds to a page call's properties


CLIENTS = [
    Client(
        "segment-node",
        "node",
        "segment.mjs",
        ("@segment/analytics-node", "3.1.0"),
        "analytics-node-next/latest",
        {
            "app": {"name": "node-shop", "version": "5.0.2", "build": "502"},
            "os": {"name": "macOS", "version": "15.1"},
            "device": {"manufacturer": "Apple", "model": "MacBookPro18,3"},
            "locale": "pt-BR",
            "timezone": "America/Sao_Paulo",
            "ip": "198.51.100.23",
        },
        re.compile(r"^node-next-\d{13}-[0-9a-f-]{36}$"),
        {"email": "node@example.com", "name": "Node Js", "logins": 3},
        {"category": "Docs"},
    ),
    # RudderStack names its library "analytics-node" (the name of Segment's old Node client)
    Client(
        "rudderstack-node",
        "node",
        "rudderstack.mjs",
        ("analytics-node", "3.0.13"),
        "analytics-node/3.0.13",
        {
            "app": {"name": "rudder-shop", "version": "7.3.0", "build": "730"},
            "os": {"name": "Windows", "version": "11"},
            "device": {"manufacturer": "Dell", "model": "XPS 13"},
            "locale": "ja-JP",
            "timezone": "Asia/Tokyo",
            "ip": "192.0.2.201",
        },
        UUID,
        {"email": "rudder@example.com", "name": "Rudder Stack", "logins": 3},
        {},
    ),
    # gopkg.in/segmentio/analytics-go.v3 v3.1.0 still declares Version = "3.0.0"
    Client(
        "segment-go",
        "go",
        None,
        ("analytics-go", "3.0.0"),
        "analytics-go (version: 3.0.0)",
        {
            "app": {"name": "go-shop", "version": "2.4.1", "build": "241"},
            "os": {"name": "Linux", "version": "6.8"},
            "device": {"manufacturer": "Lenovo", "model": "ThinkPad X1"},
            "locale": "hi-IN",
            "timezone": "Asia/Kolkata",
            "ip": "203.0.113.77",
            "source": "eventpipe-tests",
        },
        UUID,
        {"email": "go@example.com", "name": "Go Pher", "logins": 3},
        {},
    ),
]

COLUMNS = (
    "type, event, name, message_id, anonymous_id, user_id, properties, traits, context, library_name, "
    "library_version, app_name, app_version, app_build, os_name, os_version, device_manufacturer, "
    "device_model, locale, timezone, page_path, page_url, page_referrer, toFloat64(revenue) AS revenue, ip, "
    "user_agent, platform, flags, toUnixTimestamp64Milli(timestamp) AS ts, "
    "toUnixTimestamp64Milli(client_timestamp) AS client_ts, toUnixTimestamp64Milli(sent_at) AS sent_ts, "
    "toUnixTimestamp64Milli(received_at) AS received_ts, group_id, previous_id"
)
NAMES = [column.split(" AS ")[-1] for column in COLUMNS.split(", ")]


def install(toolchain: str) -> str:
    """Runs tests/clients/install.sh; its last stdout line (the Go binary's path) is returned."""
    proc = subprocess.run([str(CLIENTS_DIR / "install.sh"), toolchain], capture_output=True, text=True, timeout=570)
    if proc.returncode != 0:
        pytest.fail(
            f"installing the {toolchain} clients failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}{proc.stdout[-2000:]}",
            pytrace=False,
        )
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


@pytest.fixture(scope="module")
def installed():
    found: dict[str, str] = {}

    def get(toolchain: str) -> str:
        if toolchain not in found:
            found[toolchain] = install(toolchain)
        return found[toolchain]

    return get


def stored(stack, user: str, n: int) -> dict[str, dict]:
    """The rows of ``user`` once ``n`` are there, keyed by message_id (asserting there is one per id)."""
    sql = f"SELECT {COLUMNS} FROM events WHERE project = 'acme' AND user_id = '{user}' ORDER BY message_id"
    rows = wait_for(lambda: (found := query(stack, sql)) and len(found) >= n and found, timeout=30)
    assert rows and len(rows) == n, f"{user}: expected {n} rows, found {rows}"
    by_id = {row[3]: dict(zip(NAMES, row)) for row in rows}
    assert len(by_id) == n, f"a messageId is stored twice: {[r[3] for r in rows]}"
    return by_id


@pytest.mark.parametrize("client", CLIENTS, ids=[c.name for c in CLIENTS])
def test_official_client_lands_every_call_once_with_its_fields(stack, installed, client):
    installed_path = installed(client.toolchain)
    argv = ["node", str(CLIENTS_DIR / "node" / client.script)] if client.script else [installed_path]
    run = f"{client.name}-{uuid.uuid4().hex[:10]}"
    started = int(time.time() * 1000)
    at = started - 60_000  # the explicit times: events recorded a minute before they are sent
    proc = subprocess.run(
        argv + [stack.collector_url, KEY, run, str(at)], capture_output=True, text=True, timeout=60, cwd=CLIENTS_DIR
    )
    ended = int(time.time() * 1000)
    assert proc.returncode == 0, f"{client.name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # 8 calls, one of them a repeat of another's messageId; the client saw every one delivered
    assert (report["sent"], report["failed"], report["errors"]) == (8, 0, [])
    assert report["library_version"] == client.library[1]

    user, anon = f"{run}-user", f"{run}-anon"
    rows = stored(stack, user, 7)
    rejected = query(stack, f"SELECT reason, message FROM events_rejected WHERE message_id LIKE '{run}-%'")
    assert rejected == []
    generated = [mid for mid in rows if not mid.startswith(run)]
    assert len(generated) == 1 and client.generated_id.match(generated[0]), generated
    rows[f"{run}-viewed"] = rows.pop(generated[0])

    ctx = client.context
    web_page = {"url": "https://shop.example/pricing", "path": "/pricing", "referrer": "https://search.example/"}
    expected = {  # message_id suffix: (type, event, name, properties, traits)
        "identify": ("identify", "$identify", "", {}, client.identify_traits),
        "track": (
            "track",
            "Order Completed",
            "",
            {"revenue": 12.5, "currency": "EUR", "items": [{"sku": "a-1", "qty": 2}]},
            {},
        ),
        "viewed": ("track", "Order Viewed", "", {"n": 1}, {}),
        "page": ("page", "$page", "Pricing", {**web_page, **client.page_properties_extra}, {}),
        "screen": ("screen", "$screen", "Settings", {"tab": "privacy"}, {}),
        "group": ("group", "$group", "", {}, {"name": "Initech", "employees": 420}),
        "alias": ("alias", "$alias", "", {}, {}),
    }
    if client.name == "segment-go":  # its Page has no referrer property: the program puts it in the page's context
        del expected["page"][3]["referrer"]

    for suffix, (kind, event, name, properties, traits) in expected.items():
        row = rows[f"{run}-{suffix}"]
        where = f"{client.name} {suffix}"
        assert (row["type"], row["event"], row["name"]) == (kind, event, name), where
        assert (row["user_id"], row["anonymous_id"]) == (user, anon if suffix == "identify" else ""), where
        assert json.loads(row["properties"]) == properties, where
        assert json.loads(row["traits"]) == traits, where
        assert "message_id_generated" not in row["flags"] and "field_coerced" not in row["flags"], where
        assert row["revenue"] == (12.5 if suffix == "track" else 0), where
        assert (row["group_id"], row["previous_id"]) == (
            {"group": f"{run}-group"}.get(suffix, ""),
            {"alias": anon}.get(suffix, ""),
        ), where

        # context: the library as the client names itself, and the typed columns of what the program sent
        # (for analytics-go all of it comes from the batch envelope, merged into each event)
        assert (row["library_name"], row["library_version"]) == client.library, where
        assert (row["app_name"], row["app_version"], row["app_build"]) == tuple(ctx["app"].values()), where
        assert (row["os_name"], row["os_version"]) == tuple(ctx["os"].values()), where
        assert (row["device_manufacturer"], row["device_model"]) == tuple(ctx["device"].values()), where
        locale = "en-IN" if (client.name, suffix) == ("segment-go", "page") else ctx["locale"]  # the event's own wins
        assert (row["locale"], row["timezone"]) == (locale, ctx["timezone"]), where
        assert row["ip"] == ctx["ip"].rsplit(".", 1)[0] + ".0", where  # the client's context.ip, truncated to /24
        assert row["user_agent"] == client.user_agent, where
        assert row["platform"] == ("web" if kind == "page" else ctx["os"]["name"].lower()), where
        if kind == "page":
            assert (row["page_path"], row["page_url"], row["page_referrer"]) == tuple(
                web_page[k] for k in ("path", "url", "referrer")
            )
        own = {"library": {"name": client.library[0], "version": client.library[1]}}
        if (client.name, suffix) == ("segment-go", "page"):  # the event's own context, merged over the batch's
            own.update(locale="en-IN", page={"referrer": "https://search.example/"})
        if (client.name, suffix) == ("rudderstack-node", "identify"):  # RudderStack copies traits into context
            own["traits"] = client.identify_traits
        assert json.loads(row["context"]) == {**ctx, **own}, where

        # times: the client's own, when it sent the batch, when the collector got it, and the corrected one
        assert started - 1000 <= row["sent_ts"] <= row["received_ts"] + 1000 and row["received_ts"] <= ended + 1000, (
            where
        )
        if suffix == "viewed":  # no explicit timestamp: the client's clock at the call
            # (RudderStack sends it only as `originalTimestamp`, which the processor reads when `timestamp` is absent)
            assert started - 1000 <= row["client_ts"] <= row["sent_ts"], where
        else:
            assert row["client_ts"] == at + (1000 if kind in ("page", "screen", "group", "alias") else 0), where
        assert row["ts"] == row["client_ts"] + row["received_ts"] - row["sent_ts"], where  # skew-corrected
