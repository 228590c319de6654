"""The live dashboard (processors/dashboard.py): its numbers, and the page as a real browser renders it.

The live tests run one private stack (its own broker, so that the last test can
stop it) with steady background traffic and, once each, the refusals a
collector gives: 400, 401, 408, 413 and 429 (503 comes with the broker down).
The browser is Debian's ``chromium`` (``apt-get install -y chromium``),
headless: ``--dump-dom`` gives the DOM after the page's script has fetched
``/dashboard/data`` and rendered it, and ``--screenshot`` a PNG that the test
inspects for the dark header, the chart lines, the bars and the alert banners,
in three states: healthy, store failing (the failpoint file) and broker down.
The PNGs stay in the test's tmp dir; with ``EVENTPIPE_DASHBOARD_SCREENSHOTS=DIR``
they are copied there too (how docs/dashboard-*.png were made). Only the
browser tests skip, and only when chromium is not installed.

The same stack's log shows that a fresh processor start reads as a few lines
without an error (processors/logs.py), and that a store failure still warns.
"""

from __future__ import annotations

import asyncio
import fnmatch
import html.parser
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import tomllib
import types
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pytest

from eventpipe.processors.dashboard import (
    SERIES,
    History,
    Snapshots,
    _collector_metrics,
    above_top_bucket,
    bucket_delta,
    histogram_quantile,
    history_point,
)
from eventpipe.processors.logs import FirstJoin, ReadyLine, Repeats, assigned_line, partition_ranges
from tests.conftest import private_stack, query, wait_for
from tests.http import basic, get, post

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)
INF = math.inf
STALL = 3.0  # processor_stall_seconds of the private stack
LIMITED_KEY = "test-key-limited"  # 10 events/s: a 100-event batch puts it in debt


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


COLLECTOR_TEXT = """# TYPE eventpipe_collector_request_duration_seconds histogram
eventpipe_collector_request_duration_seconds_bucket{le="0.005"} 3.0
eventpipe_collector_request_duration_seconds_bucket{le="0.01"} 4.0
eventpipe_collector_request_duration_seconds_bucket{le="+Inf"} 4.0
eventpipe_collector_request_duration_seconds_count 4.0
eventpipe_collector_request_duration_seconds_sum 0.01
# TYPE eventpipe_collector_requests_total counter
eventpipe_collector_requests_total{code="200",path="/v1/batch"} 4.0
eventpipe_collector_requests_total{code="401",path="/v1/batch"} 2.0
eventpipe_collector_requests_total{code="503",path="/v1/track"} 1.0
eventpipe_collector_requests_total{code="200",path="/metrics"} 50.0
eventpipe_collector_requests_total{code="503",path="/readyz"} 3.0
# TYPE eventpipe_collector_rejected_requests_total counter
eventpipe_collector_rejected_requests_total{reason="invalid_write_key"} 2.0
eventpipe_collector_rejected_requests_total{reason="kafka_unavailable"} 1.0
# TYPE eventpipe_collector_events_total counter
eventpipe_collector_events_total{outcome="accepted"} 40.0
# TYPE eventpipe_collector_kafka_reachable gauge
eventpipe_collector_kafka_reachable 0.0
# TYPE process_cpu_seconds counter
process_cpu_seconds_total 12.5
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.5e+07
"""


def test_collector_metrics_are_read_from_the_exposition_format():
    m = _collector_metrics(COLLECTOR_TEXT)
    assert m["latency"] == [(0.005, 3.0), (0.01, 4.0), (INF, 4.0)]
    # the collector's own endpoints (the dashboard's scrapes among them) are not traffic
    assert (m["requests"], m["codes"]) == (7.0, {"200": 4.0, "401": 2.0, "503": 1.0})
    assert m["rejected"] == {"invalid_write_key": 2.0, "kafka_unavailable": 1.0}
    assert m["events"] == {"accepted": 40.0}
    assert (m["kafka_reachable"], m["cpu"], m["rss"]) == (False, 12.5, 45e6)
    older = _collector_metrics("")  # a collector without these metrics: unknown, not zero
    assert (older["kafka_reachable"], older["cpu"], older["codes"]) == (None, None, {})


def test_a_history_point_is_over_its_own_step():
    then = {
        "lag": 5.0,
        "freshness": [(0.5, 0.0), (1.0, 0.0), (INF, 0.0)],
        "written": 100.0,
        "rejected": 1.0,
        "cpu": 10.0,
        "rss": 5e8,
    }
    now = {
        "lag": 7.0,
        "freshness": [(0.5, 90.0), (1.0, 100.0), (INF, 100.0)],
        "written": 300.0,
        "rejected": 5.0,
        "cpu": 11.0,
        "rss": 6e8,
    }
    collector_then = _collector_metrics(COLLECTOR_TEXT)
    later = COLLECTOR_TEXT.replace('code="401",path="/v1/batch"} 2.0', 'code="401",path="/v1/batch"} 6.0').replace(
        "process_cpu_seconds_total 12.5", "process_cpu_seconds_total 12.9"
    )
    collector = _collector_metrics(later)
    writes = {"stalled": False, "consecutive_failures": 2, "oldest_unwritten_seconds": 4.5}
    point = history_point(2.0, now, then, collector, collector_then, writes)
    assert point["freshness_p99"] == pytest.approx(0.95) and point["lag"] == 7.0
    assert (point["written_events"], point["rejected_events"], point["cpu_processor"]) == (100.0, 2.0, 0.5)
    assert (point["refused_4xx"], point["refused_5xx"], point["requests"]) == (2.0, 0.0, 2.0)
    assert point["cpu_collector"] == pytest.approx(0.2) and point["accepted_events"] == 0.0
    assert (point["broker"], point["collector_up"], point["writes"], point["oldest_unwritten"]) == (0, 1, 1, 4.5)
    assert point["collector_p99"] is None  # no accepted request in the step
    # the collector did not answer: its numbers are unknown, not zero
    blind = history_point(2.0, now, then, None, collector_then, None)
    assert blind["collector_up"] == 0 and "refused_4xx" not in blind and "broker" not in blind
    assert "writes" not in blind  # no WriteHealth given
    # answering again: reachability at once, rates from the next step on
    back = history_point(2.0, now, then, collector, None, None)
    assert back["broker"] == 0 and "refused_4xx" not in back


def test_the_history_is_a_bounded_ring_and_answers_since():
    history = History(seconds=10, step=2)
    for i in range(8):
        history.add(1000.0 + 2 * i, {"lag": i})
    assert len(history.t) == 5 and history.t[0] == 1006.0  # the last 10 s only
    assert set(history.series) == set(SERIES)
    tail = history.since(1010.0)
    assert tail["t"] == [1012.0, 1014.0] and tail["series"]["lag"] == [6, 7]
    assert history.since(None)["series"]["lag"] == [3, 4, 5, 6, 7]
    assert history.since(2000.0)["t"] == [] and history.since(2000.0)["series"]["broker"] == []


def test_data_without_a_store_or_a_collector_says_so(tmp_path):
    """A broken store or an unreachable collector empties their tiles and names the problem; the rest stays."""
    from eventpipe.processors.dashboard import Dashboard
    from tests.conftest import free_port, make_settings

    def no_store():
        raise RuntimeError("store is not open yet")

    dashboard = Dashboard(no_store, make_settings(tmp_path, collector_port=free_port()))
    d = asyncio.run(dashboard.data())
    assert d["store_error"] == "store is not open yet" and d["accepted"] is None and d["top_events"] == []
    assert d["collector"]["reachable"] is False and d["collector"]["error"]
    assert d["collector"]["kafka_reachable"] is None and "p99_seconds" not in d["collector"]
    assert d["freshness"]["observations"] >= 0 and "lag_records" in d
    assert d["processor"]["rss_bytes"] > 0 and d["history"]["t"] == []


# --- logging (processors/logs.py) -----------------------------------------------


def _record(name: str, level: int, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_expected_coordinator_errors_are_held_back_only_until_the_first_join():
    class Retriable(Exception):
        retriable = True

    now = [0.0]
    first_join = FirstJoin(grace_seconds=30, clock=lambda: now[0])
    coordinator = "aiokafka.consumer.group_coordinator"
    expected = _record(coordinator, logging.ERROR, "Group Coordinator Request failed: %s", Retriable("15"))
    dead = _record(coordinator, logging.WARNING, "Marking the coordinator dead (node %s)for group %s.", 1, "g")
    fatal = _record(coordinator, logging.ERROR, "Group Coordinator Request failed: %s", ValueError("not retriable"))
    other = _record(coordinator, logging.ERROR, "Heartbeat failed: %r", "x")
    assert not first_join.filter(expected) and not first_join.filter(dead)
    assert first_join.filter(fatal) and first_join.filter(other)  # never expected
    assert first_join.held_back == 2
    from aiokafka import TopicPartition

    line = assigned_line({TopicPartition("events.raw", p) for p in (0, 1, 2, 5)}, first_join)
    assert line == (
        "assigned events.raw partitions 0-2, 5 (first join: 2 expected coordinator errors held back "
        "while the broker created __consumer_offsets)"
    )
    first_join.joined = True
    assert first_join.filter(expected) and first_join.filter(dead)  # a later coordinator move is logged
    assert assigned_line(set(), first_join) == "assigned no partitions"
    late = FirstJoin(grace_seconds=30, clock=lambda: now[0])
    now[0] = 31.0
    assert late.filter(expected)  # a broker that stays away past the grace: logged


def test_a_broker_away_is_logged_but_its_retry_storm_is_counted_not_repeated():
    now = [0.0]
    repeats = Repeats(every=10, clock=lambda: now[0])

    def connect() -> logging.LogRecord:
        return _record("aiokafka", logging.ERROR, "Unable connect to node with id %s: %s", 1, "refused")

    assert repeats.filter(connect())  # the first one: logged
    for _ in range(50):
        now[0] += 0.1
        assert not repeats.filter(connect())
    assert repeats.filter(_record("aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch messages from %s", 1))
    assert repeats.filter(_record("eventpipe.processor", logging.WARNING, "micro-batch write failed (%r)", "x"))
    assert repeats.filter(_record("eventpipe.processor", logging.WARNING, "micro-batch write failed (%r)", "x"))
    now[0] = 10.0
    summary = connect()
    assert repeats.filter(summary)
    assert summary.getMessage() == "Unable connect to node with id 1: refused [and 50 more like this in the last 10 s]"
    now[0] = 21.0
    quiet = connect()
    assert repeats.filter(quiet) and quiet.getMessage() == "Unable connect to node with id 1: refused"


def test_faust_logs_its_ready_line_and_warnings_only():
    ready = ReadyLine()
    assert ready.filter(_record("faust.worker", logging.INFO, "[^Worker]: Ready"))
    assert not ready.filter(_record("faust.worker", logging.INFO, "[^Worker]: Starting..."))
    assert ready.filter(_record("faust.worker", logging.ERROR, "[^Worker]: Error: x"))
    assert partition_ranges({11, 0, 1, 2, 3, 7, 9, 10}) == "0-3, 7, 9-11"


def test_the_page_ships_with_the_package():
    """A non-editable install (the Docker image) must carry processors/dashboard/index.html."""
    assert (ROOT / "processors" / "dashboard" / "index.html").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"].get("package-data", {}).get("eventpipe.processors", [])
    assert any(fnmatch.fnmatch("dashboard/index.html", p) for p in patterns), (
        'pyproject.toml needs "eventpipe.processors" = ["dashboard/*.html"] under [tool.setuptools.package-data]'
    )


def test_the_page_makes_no_external_request():
    """Offline: no CDN, no web font, no remote image; everything is in the one file."""
    page = (ROOT / "processors" / "dashboard" / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", page, re.I)


# --- against a running pipeline ---------------------------------------------------


class Traffic:
    """Steady requests from a few threads while the tests look: accepted batches, and some 400s and 401s."""

    def __init__(self, collector_url: str, threads: int = 3):
        self.url = collector_url + "/v1/batch"
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        i = 0
        while not self.stopping.is_set():
            i += 1
            batch = [
                {
                    "type": "track",
                    "event": ("Product Viewed", "Product Added", "Order Completed")[j % 3],
                    "anonymousId": f"device-{n}-{j}",
                    "messageId": uuid.uuid4().hex,
                }
                for j in range(20)
            ]
            try:
                post(self.url, orjson.dumps({"batch": batch}), "test-key-acme")
                if n == 0 and i % 8 == 0:
                    post(self.url, orjson.dumps({"batch": batch}), "no-such-key")  # 401
                    post(self.url, b'{"batch": [', "test-key-acme")  # 400
            except OSError:  # the collector is stopping with the stack
                pass
            self.stopping.wait(0.15)

    def __enter__(self) -> "Traffic":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=40)


def _body_timeout(collector_url: str) -> int:
    """A request whose body never arrives: the collector answers 408 after body_timeout_seconds."""
    host, port = collector_url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: {basic('test-key-acme')}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            ).encode()
        )
        return int(sock.recv(4096).split(b" ", 2)[1])


def _processor_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("processor |")]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A private stack (processor_stall_seconds=3, body timeout 1 s, a rate-limited key), traffic flowing."""
    tmp = tmp_path_factory.mktemp("dashboard")
    keys = tmp / "keys.json"
    keys.write_text(json.dumps({"limited": {"keys": [LIMITED_KEY], "rate_limit_events_per_s": 10}}))
    with private_stack(tmp, processor_stall_seconds=STALL, body_timeout_seconds=1.0, write_keys_file=keys) as stack:
        log = tmp / "stack.log"
        ready = lambda: any(line.endswith("[^Worker]: Ready") for line in _processor_lines(log))  # noqa: E731
        assert wait_for(ready, timeout=60), log.read_text()[-3000:]
        lines = _processor_lines(log)
        startup = lines[: next(i for i, line in enumerate(lines) if line.endswith("[^Worker]: Ready")) + 1]
        with Traffic(stack.collector_url):
            yield types.SimpleNamespace(
                stack=stack, log=log, startup=startup, web=f"http://127.0.0.1:{stack.settings.processor_web_port}"
            )


def test_a_fresh_processor_start_logs_a_few_lines_and_no_error(pipeline):
    """A new broker answers the first group join with GroupCoordinatorNotAvailable: expected, so not logged."""
    print("\n".join(pipeline.startup))
    assert not [line for line in pipeline.startup if " ERROR " in line or "Traceback" in line], pipeline.startup
    assert len(pipeline.startup) <= 5, pipeline.startup
    assert any("assigned events.raw partitions 0-11" in line for line in pipeline.startup), pipeline.startup
    assert not any("Starting..." in line for line in pipeline.startup)


@pytest.fixture(scope="module")
def traffic(pipeline):
    """Known traffic in the last minutes: accepted events, rejects (if that table exists), each kind of refusal."""
    stack, base = pipeline.stack, pipeline.web
    run = uuid.uuid4().hex[:10]
    name = f"Dashboard {run}"
    url = stack.collector_url + "/v1/batch"
    events = [
        {"type": "track", "event": name, "userId": f"{run}-{i % 50}", "messageId": f"{run}-{i}"} for i in range(1000)
    ]
    status, _, body = post(url, orjson.dumps({"batch": events}), "test-key-acme")
    assert status == 200, body
    has_rejects = (
        query(
            stack, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events_rejected'"
        )[0][0]
        == 1
    )
    if has_rejects:
        old = (datetime.now(timezone.utc) - timedelta(days=400)).isoformat()[:23] + "Z"
        status, _, body = post(
            url,
            orjson.dumps(
                {
                    "batch": [
                        {
                            "type": "track",
                            "event": "Old",
                            "userId": "u",
                            "messageId": f"{run}-old-{i}",
                            "timestamp": old,
                        }
                        for i in range(3)
                    ]
                }
            ),
            "test-key-acme",
        )
        assert status == 200, body
    limited = orjson.dumps({"batch": [{"type": "track", "event": "x", "userId": "u"} for _ in range(100)]})
    assert [post(url, limited, LIMITED_KEY)[0] for _ in range(3)] == [200, 429, 429]
    assert post(url, b" " * (stack.settings.max_batch_bytes + 1), "test-key-acme")[0] == 413
    assert _body_timeout(stack.collector_url) == 408
    assert wait_for(lambda: query(stack, f"SELECT count() FROM events WHERE event = '{name}'")[0][0] == 1000)
    if has_rejects:
        assert wait_for(
            lambda: query(stack, f"SELECT count() FROM events_rejected WHERE message_id LIKE '{run}-old-%'")[0][0] == 3
        )
    traffic = dict(base=base, name=name, has_rejects=has_rejects)

    # rows are queryable before the processor commits their offsets and records their freshness; and the
    # charts need some history with the collector's numbers in it
    def ready():
        d = _data(traffic)
        points = [p for p in d["history"]["series"]["collector_p99"] if p is not None]
        return d["lag_records"] is not None and d["freshness"]["observations"] > 0 and len(points) >= 8

    assert wait_for(ready, timeout=60), _data(traffic)["history"]
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
    assert collector["reachable"] and collector["kafka_reachable"] is True, collector
    assert collector["p99_seconds"] > 0 and collector["rejected_requests_total"] >= 1
    codes = {code: total for code, _, total in collector["requests_by_code"]}
    assert {"200", "400", "401", "408", "413", "429"} <= set(codes) and codes["429"] >= 2, codes
    reasons = {reason for reason, _, _ in collector["refusals_by_reason"]}
    assert {"invalid_write_key", "rate_limited", "body_timeout"} <= reasons, reasons
    for process in (d["processor"], collector["process"]):
        assert process["rss_bytes"] > 10e6 and process["cpu_cores"] is not None and process["cpu_cores"] >= 0
    if traffic["has_rejects"]:
        assert dict(d["rejected"]["by_reason"]).get("too_old", 0) >= 3 and d["rejected"]["per_second"] > 0
    else:
        assert d["rejected"] is None
    history = d["history"]
    assert history["step_seconds"] == 2.0 and history["seconds"] == 3600
    s = history["series"]
    assert len(history["t"]) == len(s["lag"]) >= 8 and all(len(v) == len(history["t"]) for v in s.values())
    assert all(b - a >= 1.5 for a, b in zip(history["t"], history["t"][1:]))  # one point a step
    assert s["broker"][-1] == 1 and s["collector_up"][-1] == 1 and s["writes"][-1] == 0
    assert max(v or 0 for v in s["accepted_events"]) > 0 and max(v or 0 for v in s["written_events"]) > 0
    assert max(v or 0 for v in s["refused_4xx"]) > 0 and max(v or 0 for v in s["cpu_processor"]) > 0
    assert any(v is not None for v in s["freshness_p99"]) and s["rss_collector"][-1] > 0
    # a page that has the history asks only for what came after
    with urllib.request.urlopen(traffic["base"] + f"/dashboard/data?since={history['t'][-2]}", timeout=30) as resp:
        tail = json.load(resp)["history"]
    assert tail["t"][0] == history["t"][-1] and len(tail["t"]) <= 3


def _chromium(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:6]}"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        timeout=90,
    )


class _Texts(html.parser.HTMLParser):
    """Text inside each element with an id (nested text included), and the ids of hidden elements."""

    def __init__(self):
        super().__init__()
        self.stack: list[str | None] = []
        self.texts: dict[str, str] = {}
        self.hidden: set[str] = set()

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            return
        attrs = dict(attrs)
        element_id = attrs.get("id")
        self.stack.append(element_id)
        if element_id:
            self.texts.setdefault(element_id, "")
            if "hidden" in attrs:
                self.hidden.add(element_id)

    def handle_endtag(self, tag):
        if self.stack and tag not in ("br", "img", "meta", "link", "input", "hr"):
            self.stack.pop()

    def handle_data(self, data):
        for element_id in filter(None, self.stack):
            self.texts[element_id] += data


WIDTH, HEIGHT = 1440, 1010


def _look(traffic, tmp_path: Path, state: str) -> tuple[dict, set, np.ndarray]:
    """The page in ``state`` as chromium renders it: texts by id, hidden ids, and the screenshot's pixels."""
    from PIL import Image

    out = _chromium(traffic["base"] + "/dashboard", tmp_path, "--dump-dom")
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    parser = _Texts()
    parser.feed(out.stdout.decode())
    png = tmp_path / f"dashboard-{state}.png"
    out = _chromium(traffic["base"] + "/dashboard", tmp_path, f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}")
    assert out.returncode == 0 and png.is_file(), out.stderr.decode(errors="replace")[-2000:]
    if os.environ.get("EVENTPIPE_DASHBOARD_SCREENSHOTS"):
        shutil.copy(png, Path(os.environ["EVENTPIPE_DASHBOARD_SCREENSHOTS"]) / png.name)
    image = Image.open(png).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    return parser.texts, parser.hidden, np.asarray(image, dtype=np.int16)


def _count(pixels: np.ndarray, color, tolerance: int = 40, rows=slice(60, None)) -> int:
    return int((np.abs(pixels[rows] - np.array(color)).max(axis=2) <= tolerance).sum())


BLUE, GREEN, RED, ALERT = (37, 99, 235), (22, 163, 74), (220, 38, 38), (254, 226, 226)


def _common(texts: dict, pixels: np.ndarray) -> None:
    header = pixels[8, ::4]
    assert (np.abs(header - np.array((15, 23, 42))).max(axis=1) <= 12).mean() > 0.9, "the dark header bar"
    assert texts["updated"].startswith("live"), texts["updated"]
    assert _count(pixels, (255, 255, 255), 0) > 400_000, "tiles and panels drawn"
    for element_id in ("lag", "collector-rejected", "processes"):
        assert re.search(r"\d", texts.get(element_id, "")), (element_id, texts.get(element_id))
    assert "since the processor started" in texts["scope"], texts["scope"]


@needs_chromium
def test_the_dashboard_in_a_browser_healthy_then_store_failing_then_broker_down(pipeline, traffic, tmp_path):
    stack, web = pipeline.stack, pipeline.web

    # 1. healthy: traffic flowing, every chart with a line, the refusals by status and reason
    texts, hidden, pixels = _look(traffic, tmp_path, "healthy")
    _common(texts, pixels)
    for element_id in ("accepted-rate", "freshness-p99", "collector-p99"):
        assert re.search(r"\d", texts.get(element_id, "")), (element_id, texts.get(element_id))
    assert float(texts["accepted-rate"].replace(",", "")) > 0
    assert {"writes", "broker-alert", "collector-alert"} <= hidden
    assert texts["broker"] == "reachable"
    for code in ("200 accepted", "400", "401", "408", "413", "429"):
        assert code in texts["by-code"], (code, texts["by-code"])
    assert "rate_limited" in texts["by-reason"] and "body_timeout" in texts["by-reason"]
    assert texts["top-events"].strip() and "no events" not in texts["top-events"]
    if traffic["name"] in dict(_data(traffic)["top_events"]):
        assert traffic["name"] in texts["top-events"]
    if traffic["has_rejects"]:
        assert "too_old" in texts["rejects"] and re.search(r"\d", texts["rejected-rate"])
    assert re.search(r"p99 of accepted requests \d", texts["legend-latency"]), texts["legend-latency"]
    assert "reachable" in texts["sources"] and "unreachable" not in texts["sources"]
    counts = {
        "blue lines": _count(pixels, BLUE, 30),
        "green bars and state": _count(pixels, GREEN, 30),
        "alert": _count(pixels, ALERT, 4),
    }
    assert counts["blue lines"] > 600 and counts["green bars and state"] > 8000, counts
    assert counts["alert"] < 2000, counts  # no banner

    # 2. the store fails: a red "stalled" banner, the writes lane red, and the processor's log says why
    failpoint = stack.settings.store_failpoint
    failpoint.touch()
    try:
        stalled = lambda: (lambda h: h["series"]["writes"][-1] == 2)(_data(traffic)["history"])  # noqa: E731
        assert wait_for(stalled, timeout=60), _data(traffic)["writes"]
        texts, hidden, pixels = _look(traffic, tmp_path, "store-failing")
        _common(texts, pixels)
        assert "writes" not in hidden
        assert texts["writes"].startswith("stalled: writes to ClickHouse have failed for"), texts["writes"]
        assert "store writes are failing" in texts["writes"] and "/readyz answers 503" in texts["writes"]
        assert "oldest unwritten" in texts["freshness-sub"], texts["freshness-sub"]
        counts = {"alert": _count(pixels, ALERT, 4), "red": _count(pixels, RED, 30)}
        assert counts["alert"] > 20_000 and counts["red"] > 300, counts
        warnings = [line for line in _processor_lines(pipeline.log) if " WARNING " in line]
        assert any("micro-batch write failed" in line and "retrying" in line for line in warnings), warnings[-5:]
    finally:
        failpoint.unlink()
    assert wait_for(lambda: get(web + "/readyz")[0] == 200, timeout=60)

    # 3. the broker goes away: the collector answers 503, the page says so in red
    before = _processor_lines(pipeline.log)
    stack.broker.stop()

    def broker_down() -> bool:
        d = _data(traffic)
        codes = {code: rate for code, rate, _ in d["collector"].get("requests_by_code", [])}
        return (
            d["collector"]["kafka_reachable"] is False
            and (codes.get("503") or 0) > 0
            and 0 in d["history"]["series"]["broker"][-2:]
        )

    assert wait_for(broker_down, timeout=60), _data(traffic)["collector"]
    texts, hidden, pixels = _look(traffic, tmp_path, "broker-down")
    _common(texts, pixels)
    assert "broker-alert" not in hidden
    assert texts["broker-alert"].startswith("broker unreachable: the collector cannot reach Kafka since"), texts[
        "broker-alert"
    ]
    assert texts["broker"] == "unreachable" and "503 unavailable" in texts["by-code"]
    counts = {"alert": _count(pixels, ALERT, 4), "red": _count(pixels, RED, 30)}
    assert counts["alert"] > 20_000 and counts["red"] > 500, counts
    # the processor says so too, without burying the rest: aiokafka's retries are counted, not repeated
    lines = _processor_lines(pipeline.log)[len(before) :]
    errors = [line for line in lines if " ERROR aiokafka" in line]
    assert errors, lines[-20:]
    assert len(lines) < 60, (len(lines), lines[-20:])

    # 4. the broker is back: the collector reaches it again and the alert goes
    stack.broker.start()

    def broker_back() -> bool:
        d = _data(traffic)
        return d["collector"]["kafka_reachable"] is True and d["history"]["series"]["broker"][-1] == 1

    assert wait_for(broker_back, timeout=60), _data(traffic)["collector"]
