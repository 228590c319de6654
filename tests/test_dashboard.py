"""The live dashboard (processors/dashboard.py): its numbers, and the page as a real browser renders it.

The browser is Debian's ``chromium`` (``apt-get install -y chromium``), headless:
``--dump-dom`` gives the DOM after the page's script has fetched
``/dashboard/data`` and rendered it, and ``--screenshot`` a PNG that the test
inspects for the dark header, the chart's accepted line and the bars of top
events and rejects. Only the browser tests skip, and only when chromium is not
installed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import html.parser
import json
import math
import re
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pytest

from processors.dashboard import (Snapshots, _collector_metrics, above_top_bucket, bucket_delta,
                                  histogram_quantile)
from tests.conftest import query, wait_for
from tests.http import post

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
INF = math.inf


# --- the arithmetic ---------------------------------------------------------

def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.01, 50.0), (0.05, 90.0), (0.1, 100.0), (INF, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.03)  # halfway through (0.01, 0.05]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.095)
    assert histogram_quantile(0.99, [(0.01, 0.0), (INF, 0.0)]) is None  # no observations
    over = [(0.05, 1.0), (0.3, 2.0), (INF, 100.0)]
    assert histogram_quantile(0.99, over) == 0.3 and above_top_bucket(0.99, over)
    assert not above_top_bucket(0.99, buckets)


def test_windows_are_differences_of_cumulative_snapshots():
    then = [(0.01, 10.0), (INF, 12.0)]
    now = [(0.01, 10.0), (INF, 22.0)]
    assert bucket_delta(now, then) == [(0.01, 0.0), (INF, 10.0)]
    assert bucket_delta(now, None) == now
    snaps = Snapshots(keep_seconds=70)
    for t in range(100, 200, 10):
        snaps.add(float(t), {"t": t})
    assert snaps.older(190.0, 60)[0] == 130.0 and snaps.latest()[0] == 190.0
    assert snaps.items[0][0] == 120.0  # older ones dropped
    assert snaps.older(190.5, 0.5) is None


def test_collector_metrics_are_read_from_the_exposition_format():
    text = """# TYPE eventpipe_collector_request_duration_seconds histogram
eventpipe_collector_request_duration_seconds_bucket{le="0.005"} 3.0
eventpipe_collector_request_duration_seconds_bucket{le="0.01"} 4.0
eventpipe_collector_request_duration_seconds_bucket{le="+Inf"} 4.0
eventpipe_collector_request_duration_seconds_count 4.0
eventpipe_collector_request_duration_seconds_sum 0.01
# TYPE eventpipe_collector_requests_total counter
eventpipe_collector_requests_total{code="200",path="/v1/batch"} 4.0
eventpipe_collector_requests_total{code="401",path="/v1/batch"} 2.0
# TYPE eventpipe_collector_rejected_requests_total counter
eventpipe_collector_rejected_requests_total{reason="invalid_write_key"} 2.0
# TYPE eventpipe_collector_events_total counter
eventpipe_collector_events_total{outcome="accepted"} 40.0
"""
    m = _collector_metrics(text)
    assert m["latency"] == [(0.005, 3.0), (0.01, 4.0), (INF, 4.0)]
    assert (m["requests"], m["rejected"], m["events"]) == (6.0, {"invalid_write_key": 2.0}, {"accepted": 40.0})


def test_data_without_a_store_or_a_collector_says_so(tmp_path):
    """A broken store or an unreachable collector empties their tiles and names the problem; the rest stays."""
    from processors.dashboard import Dashboard
    from tests.conftest import free_port, make_settings

    def no_store():
        raise RuntimeError("store is not open yet")

    dashboard = Dashboard(no_store, make_settings(tmp_path, collector_port=free_port()))
    d = asyncio.run(dashboard.data())
    assert d["store_error"] == "store is not open yet" and d["accepted"] is None and d["top_events"] == []
    assert d["collector"]["reachable"] is False and d["collector"]["error"]
    assert "p99_seconds" not in d["collector"]
    assert d["freshness"]["observations"] >= 0 and "lag_records" in d


def test_the_page_ships_with_the_package():
    """A non-editable install (the Docker image) must carry processors/dashboard/index.html."""
    assert (ROOT / "processors" / "dashboard" / "index.html").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"].get("package-data", {}).get("processors", [])
    assert any(fnmatch.fnmatch("dashboard/index.html", p) for p in patterns), (
        'pyproject.toml needs processors = ["dashboard/*.html"] under [tool.setuptools.package-data]')


# --- against the running pipeline ---------------------------------------------

@pytest.fixture(scope="module")
def traffic(stack):
    """Known traffic in the last minutes: accepted events, rejects (if that table exists), a refused request."""
    base = stack.query_url.rsplit("/", 1)[0]
    try:
        urllib.request.urlopen(base + "/dashboard", timeout=10).read()
    except urllib.error.HTTPError as exc:
        pytest.fail(f"GET /dashboard answered {exc.code}: processors/app.py must call "
                    "processors.dashboard.register(app, store)")
    run = uuid.uuid4().hex[:10]
    name = f"Dashboard {run}"
    url = stack.collector_url + "/v1/batch"
    events = [{"type": "track", "event": name, "userId": f"{run}-{i % 50}", "messageId": f"{run}-{i}"}
              for i in range(1000)]
    status, _, body = post(url, orjson.dumps({"batch": events}), "test-key-acme")
    assert status == 200, body
    has_rejects = query(stack, "SELECT count() FROM system.tables WHERE database = currentDatabase() "
                               "AND name = 'events_rejected'")[0][0] == 1
    if has_rejects:
        old = (datetime.now(timezone.utc) - timedelta(days=400)).isoformat()[:23] + "Z"
        status, _, body = post(url, orjson.dumps({"batch": [
            {"type": "track", "event": "Old", "userId": "u", "messageId": f"{run}-old-{i}", "timestamp": old}
            for i in range(3)]}), "test-key-acme")
        assert status == 200, body
    status, _, _ = post(url, orjson.dumps({"batch": [{"type": "track", "event": "x", "userId": "u"}]}), "no-such-key")
    assert status == 401
    assert wait_for(lambda: query(stack, f"SELECT count() FROM events WHERE event = '{name}'")[0][0] == 1000)
    if has_rejects:
        assert wait_for(lambda: query(stack, f"SELECT count() FROM events_rejected "
                                             f"WHERE message_id LIKE '{run}-old-%'")[0][0] == 3)
    traffic = dict(base=base, name=name, has_rejects=has_rejects)
    # rows are queryable before the processor commits their offsets and records their freshness
    ready = lambda: (lambda d: d["lag_records"] is not None and d["freshness"]["observations"] > 0)(_data(traffic))  # noqa: E731
    assert wait_for(ready, timeout=30), _data(traffic)
    return traffic


def _data(traffic) -> dict:
    with urllib.request.urlopen(traffic["base"] + "/dashboard/data", timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        return json.load(resp)


def test_data_endpoint_reports_traffic_lag_freshness_and_the_collector(traffic):
    d = _data(traffic)
    assert d["store_error"] is None
    assert d["accepted"]["per_second"] >= 1000 / 60 - 0.01  # our 1000 events were received in the last minute
    assert sum(n for _, n in d["accepted"]["series"]) >= 1000
    top = dict(d["top_events"])
    assert top.get(traffic["name"]) == 1000 or (len(top) == 8 and min(top.values()) >= 1000)
    assert isinstance(d["lag_records"], int) and d["lag_records"] >= 0
    assert d["freshness"]["p99"] is not None and d["freshness"]["observations"] >= 1
    collector = d["collector"]
    assert collector["reachable"], collector
    assert collector["p99_seconds"] > 0 and collector["rejected_requests_total"] >= 1
    if traffic["has_rejects"]:
        assert dict(d["rejected"]["by_reason"]).get("too_old", 0) >= 3 and d["rejected"]["per_second"] > 0
    else:
        assert d["rejected"] is None


def _chromium(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:6]}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, url],
        capture_output=True, timeout=90)


class _Texts(html.parser.HTMLParser):
    """Text inside each element with an id (nested text included)."""

    def __init__(self):
        super().__init__()
        self.stack: list[str | None] = []
        self.texts: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            return
        element_id = dict(attrs).get("id")
        self.stack.append(element_id)
        if element_id:
            self.texts.setdefault(element_id, "")

    def handle_endtag(self, tag):
        if self.stack and tag not in ("br", "img", "meta", "link", "input", "hr"):
            self.stack.pop()

    def handle_data(self, data):
        for element_id in filter(None, self.stack):
            self.texts[element_id] += data


@needs_chromium
def test_a_real_browser_renders_live_numbers(traffic, tmp_path):
    out = _chromium(traffic["base"] + "/dashboard", tmp_path, "--dump-dom")
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    parser = _Texts()
    parser.feed(out.stdout.decode())
    texts = parser.texts
    for element_id in ("accepted-rate", "lag", "freshness-p99", "collector-p99", "collector-rejected"):
        assert re.search(r"\d", texts.get(element_id, "")), (element_id, texts.get(element_id))
    assert float(texts["accepted-rate"].replace(",", "")) > 0
    assert texts["updated"].startswith("live")
    assert texts["top-events"].strip() and "no events" not in texts["top-events"]
    if traffic["name"] in dict(_data(traffic)["top_events"]):
        assert traffic["name"] in texts["top-events"]
    if traffic["has_rejects"]:
        assert "too_old" in texts["rejects"] and re.search(r"\d", texts["rejected-rate"])
    assert "reachable" in texts["sources"] and "unreachable" not in texts["sources"]


@needs_chromium
def test_the_screenshot_shows_header_chart_and_bars(traffic, tmp_path):
    from PIL import Image

    png = tmp_path / "dashboard.png"
    out = _chromium(traffic["base"] + "/dashboard", tmp_path, f"--screenshot={png}", "--window-size=1280,900")
    assert out.returncode == 0 and png.is_file(), out.stderr.decode(errors="replace")[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 900)
    pixels = np.asarray(image, dtype=np.int16)

    def count(color, tolerance=40, rows=slice(60, None)):
        return int((np.abs(pixels[rows] - np.array(color)).max(axis=2) <= tolerance).sum())

    header = pixels[8, ::4]
    assert (np.abs(header - np.array((15, 23, 42))).max(axis=1) <= 12).mean() > 0.9, "the dark header bar"
    counts = {"accepted line": count((37, 99, 235)), "top-event bars": count((22, 163, 74)),
              "reject bars": count((220, 38, 38)), "white panels": count((255, 255, 255), 0)}
    assert counts["accepted line"] > 200, counts  # the chart's line, not just its legend
    assert counts["top-event bars"] > 2000, counts  # at least one long bar
    assert counts["white panels"] > 400_000, counts  # tiles and panels drawn
    if traffic["has_rejects"]:
        assert counts["reject bars"] > 1000, counts
