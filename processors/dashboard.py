"""The live dashboard: ``/dashboard`` (one HTML page, no build step) and ``/dashboard/data`` (JSON).

Served by the processor's faust web server, next to ``/query`` and ``/metrics``,
so that an operator has one page to steer by without a Prometheus at hand (a
laptop, a first deployment, an incident where Prometheus is the thing that broke).
``register(app, store_fn)`` adds both pages and a 1 s sampler to a faust app;
``store_fn`` returns the processor's `Store` (opened lazily, like ``/query``).

``/dashboard/data`` combines four sources:

* ClickHouse, through the read-only analyst client (so the query timeout and
  row limit hold): events accepted per second by ``received_at`` over the last
  minutes, the top events of that window, rejects by reason when the
  ``events_rejected`` table exists, and each project's quota use this period (``quota_usage``). (Events dated more than ``LATE_DAYS`` before
  they arrived are left out, which keeps these queries to recent partitions.)
* This process's own Prometheus metrics: consumer lag
  (``eventpipe_processor_lag_records``, summed over partitions), freshness
  (``eventpipe_freshness_seconds``, p50/p99 over the last minute), events
  written and dead-lettered, and its CPU and resident memory (prometheus_client's
  process collector).
* The processor's write health (processors/health.py), when ``register`` is given
  it: consecutive failed writes, how long they have failed, the age of the oldest
  unwritten record, and whether that is a stall (what ``/readyz`` answers). The
  page shows a red "stalled" line then, and an amber "retrying" one before.
* The collector's ``/metrics`` at ``collector_host:collector_port``, if it
  answers: p99 of ``eventpipe_collector_request_duration_seconds``, requests by
  status code and refusals by reason, whether it reaches the broker
  (``eventpipe_collector_kafka_reachable``), and its CPU and memory.

Quantiles over "the last minute" come from snapshots of the cumulative
histograms taken every second, interpolated within buckets as Prometheus'
``histogram_quantile`` does. Until a minute of snapshots exists, they cover what
there is; with no earlier snapshot at all, everything since the process started.
The ClickHouse part is computed at most once per second, whoever asks.

History: every ``STEP_SECONDS`` the sampler appends one point (collector p99,
freshness p99, the oldest unwritten record, lag, requests and refusals by class,
events accepted/written/dead-lettered, broker and collector reachability, write
state, CPU and memory of both processes) to ring buffers holding the last
``HISTORY_SECONDS``, so the page can draw the last hour, not only "now". Each
point's rates and quantiles are over its own step. The buffers live in this
process only: a restarted processor starts a new history, and each processor
replica has its own. The collector is scraped once a step for that (every second
while someone watches); ``?since=T`` returns only the points after ``T``, so a
page that polls gets the hour once and then a few points per poll.
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
WINDOW_SECONDS = 300  # ClickHouse numbers and top events: the last five minutes
BIN_SECONDS = 5  # one ClickHouse series point per five seconds
RATE_SECONDS = 60  # "per second" numbers and quantiles of the tiles: the last minute
HISTORY_SECONDS = 3600  # the charts: the last hour
STEP_SECONDS = 2.0  # one history point per two seconds: 1,800 points per series
VIEWER_IDLE_SECONDS = 30  # scrape the collector every second until this long after the last page poll
TOP_EVENTS = 8
LATE_DAYS = 2  # events dated this much before their receipt still count in the live numbers
# the collector's own endpoints: not traffic, and the dashboard's scrapes would count as requests
NOT_INGEST = frozenset({"/metrics", "/healthz", "/readyz"})
# projects with a quota, this period: limit, accepted, dropped and refused over it (ingest/quotas.py)
QUOTAS_SQL = (
    "SELECT project, max(quota), sum(accepted), sum(dropped), sum(refused) FROM quota_usage FINAL "
    "WHERE period + period_seconds > now() GROUP BY project ORDER BY project"
)
SERIES = (
    "collector_p99",
    "freshness_p99",
    "oldest_unwritten",
    "lag",
    "requests",
    "refused_4xx",
    "refused_5xx",
    "accepted_events",
    "written_events",
    "rejected_events",
    "broker",
    "collector_up",
    "writes",
    "cpu_processor",
    "cpu_collector",
    "rss_processor",
    "rss_collector",
)

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
    lower, below = buckets[i - 1] if i > 0 else (0.0, 0.0)
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


def _by_label(samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name and label in s.labels:
            out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
    return out


def _value(samples, name: str) -> float | None:
    values = [s.value for s in samples if s.name == name]
    return sum(values) if values else None


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


class History:
    """The last ``seconds`` of dashboard points, one per step: a ring buffer (a bounded deque) per series."""

    def __init__(self, seconds: float = HISTORY_SECONDS, step: float = STEP_SECONDS):
        self.step = step
        size = int(seconds / step)
        self.t: deque[float] = deque(maxlen=size)
        self.series: dict[str, deque] = {name: deque(maxlen=size) for name in SERIES}

    def add(self, t: float, point: dict) -> None:
        self.t.append(round(t, 3))
        for name, values in self.series.items():
            values.append(point.get(name))

    def since(self, t0: float | None) -> dict:
        """The points after ``t0`` (all with None), as columns."""
        start = 0 if t0 is None else bisect.bisect_right(self.t, t0)  # deques index in O(n): fine at this size
        return {
            "t": list(self.t)[start:],
            "series": {name: list(values)[start:] for name, values in self.series.items()},
        }


def _own_metrics() -> dict:
    samples = [s for family in REGISTRY.collect() for s in family.samples]
    return {
        "lag": _value(samples, "eventpipe_processor_lag_records"),
        "freshness": _histogram(samples, "eventpipe_freshness_seconds"),
        "written": _value(samples, "eventpipe_processor_events_written_total") or 0.0,
        "rejected": _value(samples, "eventpipe_processor_events_rejected_total") or 0.0,
        "cpu": _value(samples, "process_cpu_seconds_total"),
        "rss": _value(samples, "process_resident_memory_bytes"),
    }


def _collector_metrics(text: str) -> dict:
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    codes: dict[str, float] = {}
    for s in samples:
        if s.name == "eventpipe_collector_requests_total" and s.labels.get("path") not in NOT_INGEST:
            codes[s.labels["code"]] = codes.get(s.labels["code"], 0.0) + s.value
    reachable = _value(samples, "eventpipe_collector_kafka_reachable")
    return {
        "latency": _histogram(samples, "eventpipe_collector_request_duration_seconds"),
        "requests": sum(codes.values()),
        "codes": codes,
        "rejected": _by_label(samples, "eventpipe_collector_rejected_requests_total", "reason"),
        "events": _by_label(samples, "eventpipe_collector_events_total", "outcome"),
        "kafka_reachable": None if reachable is None else reachable >= 1,
        "cpu": _value(samples, "process_cpu_seconds_total"),
        "rss": _value(samples, "process_resident_memory_bytes"),
    }


def _rate(now: float, then: float, seconds: float) -> float:
    return max(0.0, now - then) / seconds if seconds > 0 else 0.0


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _counter_rate(now: dict | None, then: dict | None, key: str, seconds: float) -> float | None:
    if now is None or then is None or now.get(key) is None or then.get(key) is None:
        return None
    return _round(_rate(now[key], then[key], seconds), 4)


def _code_sum(snap: dict, first_digit: str) -> float:
    return sum(n for code, n in snap["codes"].items() if code.startswith(first_digit))


def history_point(
    seconds: float, own: dict, own_then: dict, collector: dict | None, collector_then: dict | None, writes: dict | None
) -> dict:
    """One history point from cumulative snapshots ``seconds`` apart (a collector snapshot is None when its
    scrape failed: its numbers are then unknown, not zero)."""
    freshness = bucket_delta(own["freshness"], own_then.get("freshness"))
    point = {
        "freshness_p99": _round(histogram_quantile(0.99, freshness)),
        "lag": own["lag"],
        "written_events": _counter_rate(own, own_then, "written", seconds),
        "rejected_events": _counter_rate(own, own_then, "rejected", seconds),
        "cpu_processor": _counter_rate(own, own_then, "cpu", seconds),
        "rss_processor": own["rss"],
        "collector_up": 0 if collector is None else 1,
    }
    if writes is not None:
        point["writes"] = 2 if writes["stalled"] else 1 if writes["consecutive_failures"] else 0
        point["oldest_unwritten"] = writes["oldest_unwritten_seconds"]
    if collector is None:
        return point
    point["broker"] = None if collector["kafka_reachable"] is None else int(collector["kafka_reachable"])
    point["rss_collector"] = collector["rss"]
    if collector_then is None:
        return point
    latency = bucket_delta(collector["latency"], collector_then["latency"])
    point.update(
        {
            "collector_p99": _round(histogram_quantile(0.99, latency), 5),
            "requests": _counter_rate(collector, collector_then, "requests", seconds),
            "refused_4xx": _round(_rate(_code_sum(collector, "4"), _code_sum(collector_then, "4"), seconds)),
            "refused_5xx": _round(_rate(_code_sum(collector, "5"), _code_sum(collector_then, "5"), seconds)),
            "accepted_events": _round(
                _rate(collector["events"].get("accepted", 0.0), collector_then["events"].get("accepted", 0.0), seconds)
            ),
            "cpu_collector": _counter_rate(collector, collector_then, "cpu", seconds),
        }
    )
    return point


class Dashboard:
    def __init__(self, store_fn: Callable, settings: Settings, health=None, clock=time.time):
        self.store_fn = store_fn
        self.settings = settings
        self.health = health  # a eventpipe.processors.health.WriteHealth, or None
        self.clock = clock
        host = settings.collector_host if settings.collector_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.collector_url = f"http://{host}:{settings.collector_port}/metrics"
        self.started_at = clock()
        self.own = Snapshots()
        # This process's metrics start at zero: a zero snapshot now covers writes that happen before
        # faust starts the sampler (it starts timers only once the worker is ready).
        zero = {"lag": None, "freshness": [], "written": 0.0, "rejected": 0.0, "cpu": None, "rss": None}
        self.own.add(self.started_at, zero)
        self.collector = Snapshots()
        self.collector_error: str | None = None
        self.last_view = 0.0
        self.last_scrape = 0.0
        self.history = History()
        # the snapshots the last history point was computed from: (time, own, collector or None)
        self._point_base: tuple[float, dict, dict | None] = (self.started_at, zero, None)
        self._store_cache: tuple[float, dict] | None = None
        self._store_lock = asyncio.Lock()

    # --- sampling --------------------------------------------------------

    async def sample(self) -> None:
        """Every second: this process's metrics; the collector's too while someone watches, else once a step;
        and a history point once a step."""
        now = self.clock()
        own = _own_metrics()
        self.own.add(now, own)
        point_due = now - self._point_base[0] >= self.history.step - 0.1
        if point_due or now - self.last_view < VIEWER_IDLE_SECONDS:
            await self.scrape_collector(now)
        if point_due:
            self.add_point(now, own)

    def add_point(self, now: float, own: dict) -> None:
        latest = self.collector.latest()
        collector = latest[1] if latest and self.collector_error is None and latest[0] > now - 1.5 else None
        t0, own_then, collector_then = self._point_base
        writes = None if self.health is None else self.health.state()
        self.history.add(now, history_point(now - t0, own, own_then, collector, collector_then, writes))
        self._point_base = (now, own, collector)

    async def scrape_collector(self, now: float) -> None:
        self.last_scrape = now
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session,
                session.get(self.collector_url) as resp,
            ):
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
        accepted = q(
            f"SELECT toUnixTimestamp(toStartOfInterval(received_at, INTERVAL {BIN_SECONDS} SECOND)) AS t, "
            f"count() FROM events WHERE {recent} GROUP BY t ORDER BY t"
        )
        last_minute = q(
            f"SELECT count() FROM events WHERE received_at >= now64(3) - INTERVAL {RATE_SECONDS} SECOND AND {late}"
        )[0][0]
        top = q(
            f"SELECT event, count() AS n FROM events WHERE {recent} GROUP BY event "
            f"ORDER BY n DESC, event LIMIT {TOP_EVENTS}"
        )
        out = {
            "accepted": {
                "series": [[int(t), int(n)] for t, n in accepted],
                "per_second": round(last_minute / RATE_SECONDS, 3),
            },
            "top_events": [[str(e), int(n)] for e, n in top],
            "rejected": None,
        }
        exists = q("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events_rejected'")[
            0
        ][0]
        if exists:
            window = f"received_at >= now64(3) - INTERVAL {WINDOW_SECONDS} SECOND"
            series = q(
                f"SELECT toUnixTimestamp(toStartOfInterval(received_at, INTERVAL {BIN_SECONDS} SECOND)) AS t, "
                f"count() FROM events_rejected WHERE {window} GROUP BY t ORDER BY t"
            )
            reasons = q(
                f"SELECT reason, count() AS n FROM events_rejected WHERE {window} "
                "GROUP BY reason ORDER BY n DESC, reason"
            )
            minute = q(
                f"SELECT count() FROM events_rejected WHERE received_at >= now64(3) - INTERVAL {RATE_SECONDS} SECOND"
            )[0][0]
            out["rejected"] = {
                "series": [[int(t), int(n)] for t, n in series],
                "by_reason": [[str(r), int(n)] for r, n in reasons],
                "per_second": round(minute / RATE_SECONDS, 3),
            }
        out["quotas"] = (
            [[str(p), int(limit), int(a), int(d), int(r)] for p, limit, a, d, r in q(QUOTAS_SQL)]
            if q("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'quota_usage'")[0][0]
            else []
        )
        return out

    async def store_data(self) -> dict:
        async with self._store_lock:  # many viewers: one computation per second
            now = time.monotonic()
            if self._store_cache is None or now - self._store_cache[0] >= 1.0:
                try:
                    data = await asyncio.to_thread(self._store_data)
                    data["error"] = None
                except Exception as exc:  # noqa: BLE001 - shown on the page; the other tiles still work
                    data = {"accepted": None, "top_events": [], "rejected": None, "quotas": [], "error": str(exc)[:300]}
                self._store_cache = (now, data)
            return self._store_cache[1]

    # --- the JSON --------------------------------------------------------

    def _freshness(self, t: float, snap: dict) -> dict:
        base = self.own.older(t, RATE_SECONDS)
        buckets = bucket_delta(snap["freshness"], base[1]["freshness"] if base else None)
        return {
            "p50": _round(histogram_quantile(0.5, buckets)),
            "p99": _round(histogram_quantile(0.99, buckets)),
            "p99_above_top_bucket": above_top_bucket(0.99, buckets),
            "observations": int(buckets[-1][1]) if buckets else 0,
            "window_seconds": round(t - base[0]) if base else None,
        }

    @staticmethod
    def _process(t: float, snap: dict, snapshots: Snapshots) -> dict:
        """CPU (cores, over the last ~10 s) and resident memory of a process."""
        base = snapshots.older(t, 10)
        cpu = None
        if base and snap.get("cpu") is not None and base[1].get("cpu") is not None:
            cpu = _round(_rate(snap["cpu"], base[1]["cpu"], t - base[0]), 3)
        return {"cpu_cores": cpu, "rss_bytes": None if snap.get("rss") is None else int(snap["rss"])}

    def _collector(self) -> dict:
        out = {
            "url": self.collector_url,
            "reachable": self.collector_error is None and bool(self.collector.items),
            "error": self.collector_error,
            "kafka_reachable": None,
        }
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
        rejected = {
            reason: (_rate(n, base[1]["rejected"].get(reason, 0.0), window) if base else None)
            for reason, n in snap["rejected"].items()
        }
        events = {
            outcome: (_round(_rate(n, base[1]["events"].get(outcome, 0.0), window), 3) if base else None)
            for outcome, n in sorted(snap["events"].items())
        }
        codes = [
            [code, _round(_rate(n, base[1]["codes"].get(code, 0.0), window), 3) if base else None, int(n)]
            for code, n in sorted(snap["codes"].items())
        ]
        refused = [c for c in codes if not c[0].startswith("2")]
        out.update(
            {
                "kafka_reachable": snap["kafka_reachable"],
                "p99_seconds": _round(histogram_quantile(0.99, latency), 5),
                "p99_above_top_bucket": above_top_bucket(0.99, latency),
                "latency_window_seconds": latency_window,
                "p50_seconds": _round(histogram_quantile(0.5, latency), 5),
                "requests_per_second": _round(_rate(snap["requests"], base[1]["requests"], window), 3)
                if base
                else None,
                "rejected_requests_per_second": _round(sum(rejected.values()), 3) if base else None,
                "rejected_requests_total": int(sum(snap["rejected"].values())),
                "rejected_by_reason": {
                    r: (_round(v, 3) if v is not None else None) for r, v in sorted(rejected.items())
                },
                "refusals_by_reason": sorted(
                    ([r, _round(v, 3), int(snap["rejected"][r])] for r, v in rejected.items()),
                    key=lambda row: (-(row[1] or 0), -row[2], row[0]),
                ),
                "requests_by_code": codes,
                "refused_requests_per_second": _round(sum(c[1] for c in refused), 3) if base else None,
                "refused_requests_total": sum(c[2] for c in refused),
                "events_per_second": events,
                "window_seconds": round(window) if window else None,
                "process": self._process(t, snap, self.collector),
            }
        )
        return out

    async def data(self, since: float | None = None) -> dict:
        now = self.clock()
        first_view = now - self.last_view >= VIEWER_IDLE_SECONDS
        self.last_view = now
        if first_view or not self.collector.items:
            await self.scrape_collector(now)  # otherwise the sampler scrapes every second while someone watches
        own = _own_metrics()  # now, not the last sample: a batch written since then counts
        store = await self.store_data()
        return {
            "generated_at": round(now, 3),
            "window_seconds": WINDOW_SECONDS,
            "bin_seconds": BIN_SECONDS,
            "rate_seconds": RATE_SECONDS,
            **{k: store[k] for k in ("accepted", "top_events", "rejected", "quotas")},
            "store_error": store["error"],
            "lag_records": None if own["lag"] is None else int(own["lag"]),
            "writes": None if self.health is None else self.health.state(),
            "freshness": self._freshness(now, own),
            "collector": self._collector(),
            "processor": self._process(now, own, self.own),
            "history": {
                "started_at": round(self.started_at, 3),
                "seconds": HISTORY_SECONDS,
                "step_seconds": self.history.step,
                **self.history.since(since),
            },
        }


def _since(request) -> float | None:
    try:
        return float(request.query["since"])
    except (KeyError, ValueError):
        return None


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
            return self.json(await dashboard.data(_since(request)), headers={"Cache-Control": "no-store"})

    @app.timer(interval=1.0)
    async def dashboard_sampler() -> None:
        await dashboard.sample()

    return dashboard
