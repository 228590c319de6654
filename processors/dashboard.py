"""The live dashboard: ``/dashboard`` (one HTML page, no build step) and ``/dashboard/data`` (JSON).

Served by the processor's faust web server, next to ``/query`` and ``/metrics``.
``register(app, store_fn)`` adds both pages and a 1 s sampler to a faust app;
``store_fn`` returns the processor's `Store` (opened lazily, like ``/query``).

``/dashboard/data`` combines four sources:

* ClickHouse, through the read-only analyst client (so the query timeout and
  row limit hold): events accepted per second by ``received_at`` over the last
  minutes, the top events of that window, and rejects by reason when the
  ``events_rejected`` table exists. (Events dated more than ``LATE_DAYS`` before
  they arrived are left out, which keeps these queries to recent partitions.)
* This process's own Prometheus metrics: consumer lag
  (``eventpipe_processor_lag_records``, summed over partitions) and freshness
  (``eventpipe_freshness_seconds``, p50/p99 over the last minute).
* The processor's write health (processors/health.py), when ``register`` is given
  it: consecutive failed writes, how long they have failed, the age of the oldest
  unwritten record, and whether that is a stall (what ``/readyz`` answers). The
  page shows a red "stalled" line then, and an amber "retrying" one before.
* The collector's ``/metrics`` at ``collector_host:collector_port``, if it
  answers: p99 of ``eventpipe_collector_request_duration_seconds`` and rejected
  requests per second by reason, over the last minute.

Quantiles over "the last minute" come from snapshots of the cumulative
histograms taken every second (the collector is only scraped while someone
watches), interpolated within buckets as Prometheus' ``histogram_quantile``
does. Until a minute of snapshots exists, they cover what there is; with no
earlier snapshot at all, everything since the process started. The ClickHouse
part is computed at most once per second, whoever asks.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections import deque
from pathlib import Path
from typing import Callable

import aiohttp
import faust.web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from eventpipe.settings import Settings

log = logging.getLogger("eventpipe.dashboard")

PAGE = Path(__file__).with_name("dashboard") / "index.html"
WINDOW_SECONDS = 300  # the charts and top events: the last five minutes
BIN_SECONDS = 5  # one chart point per five seconds
RATE_SECONDS = 60  # "per second" numbers and quantiles: the last minute
VIEWER_IDLE_SECONDS = 30  # stop scraping the collector this long after the last page poll
TOP_EVENTS = 8
LATE_DAYS = 2  # events dated this much before their receipt still count in the live numbers

Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), sorted, ending with +Inf


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile over cumulative ``buckets``; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    bounds = [count for _, count in buckets]
    i = bisect.bisect_left(bounds, rank)
    i = min(i, len(buckets) - 1)
    upper, count = buckets[i]
    if math.isinf(upper):  # above the last finite bound: that bound is the best answer there is
        return buckets[i - 1][0] if i > 0 else None
    lower, below = (buckets[i - 1] if i > 0 else (0.0, 0.0))
    if count == below:
        return upper
    return lower + (upper - lower) * (rank - below) / (count - below)


def above_top_bucket(q: float, buckets: Buckets) -> bool:
    """True when the q-quantile lies in the +Inf bucket (histogram_quantile then answers the last bound)."""
    return len(buckets) > 1 and buckets[-1][1] > 0 and buckets[-2][1] < q * buckets[-1][1]


def bucket_delta(now: Buckets, then: Buckets | None) -> Buckets:
    if not then or [b for b, _ in then] != [b for b, _ in now]:
        return now
    return [(b, max(0.0, c - c0)) for (b, c), (_, c0) in zip(now, then)]


def _histogram(samples, name: str) -> Buckets:
    """Cumulative buckets of histogram ``name`` summed over its label sets."""
    sums: dict[float, float] = {}
    for s in samples:
        if s.name == name + "_bucket":
            le = float(s.labels["le"])
            sums[le] = sums.get(le, 0.0) + s.value
    return sorted(sums.items())


def _sum(samples, name: str, **match: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items()))


def _by_label(samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name and label in s.labels:
            out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
    return out


class Snapshots:
    """Timestamped snapshots of cumulative metrics; ``older(age)`` finds the one to diff against."""

    def __init__(self, keep_seconds: float = RATE_SECONDS + 10):
        self.items: deque[tuple[float, dict]] = deque()
        self.keep = keep_seconds

    def add(self, t: float, snap: dict) -> None:
        self.items.append((t, snap))
        while self.items and self.items[0][0] < t - self.keep:
            self.items.popleft()

    def latest(self) -> tuple[float, dict] | None:
        return self.items[-1] if self.items else None

    def older(self, t: float, age: float) -> tuple[float, dict] | None:
        """The oldest snapshot at most ``age`` seconds before ``t`` and at least 1 s before it."""
        for ts, snap in self.items:
            if t - age <= ts <= t - 1:
                return ts, snap
        return None


def _own_metrics() -> dict:
    samples = [s for family in REGISTRY.collect() for s in family.samples]
    lag = [s.value for s in samples if s.name == "eventpipe_processor_lag_records"]
    return {"lag": sum(lag) if lag else None,
            "freshness": _histogram(samples, "eventpipe_freshness_seconds")}


def _collector_metrics(text: str) -> dict:
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return {
        "latency": _histogram(samples, "eventpipe_collector_request_duration_seconds"),
        "requests": _sum(samples, "eventpipe_collector_requests_total"),
        "rejected": _by_label(samples, "eventpipe_collector_rejected_requests_total", "reason"),
        "events": _by_label(samples, "eventpipe_collector_events_total", "outcome"),
    }


def _rate(now: float, then: float, seconds: float) -> float:
    return max(0.0, now - then) / seconds if seconds > 0 else 0.0


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


class Dashboard:
    def __init__(self, store_fn: Callable, settings: Settings, health=None):
        self.store_fn = store_fn
        self.settings = settings
        self.health = health  # a processors.health.WriteHealth, or None
        host = settings.collector_host if settings.collector_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.collector_url = f"http://{host}:{settings.collector_port}/metrics"
        self.own = Snapshots()
        # This process's metrics start at zero: a zero snapshot now covers writes that happen before
        # faust starts the sampler (it starts timers only once the worker is ready).
        self.own.add(time.time(), {"lag": None, "freshness": []})
        self.collector = Snapshots()
        self.collector_error: str | None = None
        self.last_view = 0.0
        self._store_cache: tuple[float, dict] | None = None
        self._store_lock = asyncio.Lock()

    # --- sampling --------------------------------------------------------

    async def sample(self) -> None:
        """Every second: this process's metrics; the collector's too while someone watches."""
        now = time.time()
        self.own.add(now, _own_metrics())
        if now - self.last_view < VIEWER_IDLE_SECONDS:
            await self.scrape_collector(now)

    async def scrape_collector(self, now: float) -> None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session, \
                    session.get(self.collector_url) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                text = await resp.text()
            self.collector.add(now, _collector_metrics(text))
            self.collector_error = None
        except Exception as exc:  # noqa: BLE001 - an unreachable collector is a state to show, not an error
            self.collector_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    # --- ClickHouse ------------------------------------------------------

    def _store_data(self) -> dict:
        store = self.store_fn()
        q = lambda sql: store.query(sql, readonly=True).rows  # noqa: E731
        # events is partitioned by the day of `timestamp`, not of `received_at`: the bound on timestamp
        # keeps these per-second queries to the last days' partitions on a large table. Events dated
        # more than LATE_DAYS before they arrived (a small share: devices long offline) are not counted.
        late = f"timestamp >= now() - INTERVAL {LATE_DAYS} DAY"
        recent = f"received_at >= now64(3) - INTERVAL {WINDOW_SECONDS} SECOND AND {late}"
        accepted = q(f"SELECT toUnixTimestamp(toStartOfInterval(received_at, INTERVAL {BIN_SECONDS} SECOND)) AS t, "
                     f"count() FROM events WHERE {recent} GROUP BY t ORDER BY t")
        last_minute = q(f"SELECT count() FROM events WHERE received_at >= now64(3) - INTERVAL {RATE_SECONDS} SECOND "
                        f"AND {late}")[0][0]
        top = q(f"SELECT event, count() AS n FROM events WHERE {recent} GROUP BY event "
                f"ORDER BY n DESC, event LIMIT {TOP_EVENTS}")
        out = {
            "accepted": {"series": [[int(t), int(n)] for t, n in accepted],
                         "per_second": round(last_minute / RATE_SECONDS, 3)},
            "top_events": [[str(e), int(n)] for e, n in top],
            "rejected": None,
        }
        exists = q("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                   "AND name = 'events_rejected'")[0][0]
        if exists:
            window = f"received_at >= now64(3) - INTERVAL {WINDOW_SECONDS} SECOND"
            series = q(f"SELECT toUnixTimestamp(toStartOfInterval(received_at, INTERVAL {BIN_SECONDS} SECOND)) AS t, "
                       f"count() FROM events_rejected WHERE {window} GROUP BY t ORDER BY t")
            reasons = q(f"SELECT reason, count() AS n FROM events_rejected WHERE {window} "
                        "GROUP BY reason ORDER BY n DESC, reason")
            minute = q(f"SELECT count() FROM events_rejected "
                       f"WHERE received_at >= now64(3) - INTERVAL {RATE_SECONDS} SECOND")[0][0]
            out["rejected"] = {"series": [[int(t), int(n)] for t, n in series],
                               "by_reason": [[str(r), int(n)] for r, n in reasons],
                               "per_second": round(minute / RATE_SECONDS, 3)}
        return out

    async def store_data(self) -> dict:
        async with self._store_lock:  # many viewers: one computation per second
            now = time.monotonic()
            if self._store_cache is None or now - self._store_cache[0] >= 1.0:
                try:
                    data = await asyncio.to_thread(self._store_data)
                    data["error"] = None
                except Exception as exc:  # noqa: BLE001 - shown on the page; the other tiles still work
                    data = {"accepted": None, "top_events": [], "rejected": None, "error": str(exc)[:300]}
                self._store_cache = (now, data)
            return self._store_cache[1]

    # --- the JSON --------------------------------------------------------

    def _freshness(self, t: float, snap: dict) -> dict:
        base = self.own.older(t, RATE_SECONDS)
        buckets = bucket_delta(snap["freshness"], base[1]["freshness"] if base else None)
        return {"p50": _round(histogram_quantile(0.5, buckets)), "p99": _round(histogram_quantile(0.99, buckets)),
                "p99_above_top_bucket": above_top_bucket(0.99, buckets),
                "observations": int(buckets[-1][1]) if buckets else 0,
                "window_seconds": round(t - base[0]) if base else None}

    def _collector(self) -> dict:
        out = {"url": self.collector_url, "reachable": self.collector_error is None and bool(self.collector.items),
               "error": self.collector_error}
        latest = self.collector.latest()
        if latest is None or self.collector_error is not None:
            return out  # no numbers rather than stale ones
        t, snap = latest
        base = self.collector.older(t, RATE_SECONDS)
        window = (t - base[0]) if base else None
        latency = bucket_delta(snap["latency"], base[1]["latency"] if base else None)
        latency_window = round(window) if window else None
        if latency and latency[-1][1] == 0 and t - self.collector.items[0][0] < RATE_SECONDS:
            # watched for less than a minute and no request since: what the collector saw since it started
            latency, latency_window = snap["latency"], None
        rejected = {reason: (_rate(n, base[1]["rejected"].get(reason, 0.0), window) if base else None)
                    for reason, n in snap["rejected"].items()}
        events = {outcome: (_round(_rate(n, base[1]["events"].get(outcome, 0.0), window), 3) if base else None)
                  for outcome, n in sorted(snap["events"].items())}
        out.update({
            "p99_seconds": _round(histogram_quantile(0.99, latency), 5),
            "p99_above_top_bucket": above_top_bucket(0.99, latency),
            "latency_window_seconds": latency_window,
            "p50_seconds": _round(histogram_quantile(0.5, latency), 5),
            "requests_per_second": _round(_rate(snap["requests"], base[1]["requests"], window), 3) if base else None,
            "rejected_requests_per_second": _round(sum(rejected.values()), 3) if base else None,
            "rejected_requests_total": int(sum(snap["rejected"].values())),
            "rejected_by_reason": {r: (_round(v, 3) if v is not None else None) for r, v in sorted(rejected.items())},
            "events_per_second": events,
            "window_seconds": round(window) if window else None,
        })
        return out

    async def data(self) -> dict:
        now = time.time()
        first_view = now - self.last_view >= VIEWER_IDLE_SECONDS
        self.last_view = now
        if first_view or not self.collector.items:
            await self.scrape_collector(now)  # the sampler only scrapes while someone watches
        own = _own_metrics()  # now, not the last sample: a batch written since then counts
        store = await self.store_data()
        return {
            "generated_at": round(now, 3),
            "window_seconds": WINDOW_SECONDS,
            "bin_seconds": BIN_SECONDS,
            "rate_seconds": RATE_SECONDS,
            **{k: store[k] for k in ("accepted", "top_events", "rejected")},
            "store_error": store["error"],
            "lag_records": None if own["lag"] is None else int(own["lag"]),
            "writes": None if self.health is None else self.health.state(),
            "freshness": self._freshness(now, own),
            "collector": self._collector(),
        }


def register(app, store_fn: Callable, settings: Settings | None = None, health=None) -> Dashboard:
    """Add ``/dashboard``, ``/dashboard/data`` and the 1 s sampler to the faust ``app``."""
    dashboard = Dashboard(store_fn, settings or Settings.from_env(), health)
    html = PAGE.read_text(encoding="utf-8")

    @app.page("/dashboard")
    class DashboardPage(faust.web.View):
        """The live page (polls /dashboard/data every 1.5 s)."""

        async def get(self, request):
            return self.html(html, headers={"Cache-Control": "no-cache"})

    @app.page("/dashboard/data")
    class DashboardData(faust.web.View):
        async def get(self, request):
            return self.json(await dashboard.data(), headers={"Cache-Control": "no-store"})

    @app.timer(interval=1.0)
    async def dashboard_sampler() -> None:
        await dashboard.sample()

    return dashboard
