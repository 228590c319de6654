"""Per-project quotas: events per day or per hour, shared by every collector process, kept across restarts.

A shared pipeline bills (or protects itself) per project. ``EVENTPIPE_QUOTAS`` gives a limit per project
(``acme=1000000/day,beta=5000/hour:drop``); over it a request is refused with 429 and ``Retry-After`` until
the period ends (``reject``, the default of ``EVENTPIPE_QUOTA_MODE``), or answered 200 and its events
dropped (``drop``). A request is admitted whole or not at all, so a project never gets more than its limit.
Every refused or dropped event is counted: metrics, and the usage records below, which the processor
stores in ClickHouse (``quota_usage``, processors/quota_usage.py) for queries and the dashboard.

Shared state without a new server: the Kafka topic ``events.quota`` (compacted, schemas/topics.py). Each
collector process has a random replica id and publishes, every ``EVENTPIPE_QUOTA_SYNC_SECONDS`` and when it
stops, one record per (project, period) it counted: key ``project|period|replica``, value its running counts.
Each process reads the whole topic (one partition, no consumer group) and counts a project's usage as its own
live count plus the latest record of every other replica id, including the ids of processes that are gone
(a restarted collector is a new replica; its predecessor's last record still counts). So usage survives a
restart exactly when the old process stopped cleanly (it publishes at stop), and up to one sync interval
of its count is lost after a SIGKILL. Across replicas a process sees the others' counts up to one sync
interval (plus the topic's latency) late: the overshoot is bounded by what the other replicas admit in that
time. Until the topic has been read to its end once, the collector is not ready (``/readyz`` 503) and
requests of projects with a quota get 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter

from eventpipe.ingest.errors import Rejected, Unavailable
from eventpipe.schemas.topics import QUOTA_TOPIC

log = logging.getLogger("eventpipe.collector")

PERIODS = {"day": 86400, "hour": 3600}
MODES = ("reject", "drop")
OVER_QUOTA = Counter(
    "eventpipe_collector_quota_events_total",
    "Events of projects over their quota: refused (429) or dropped (200, not stored)",
    ["project", "outcome"],
)


@dataclasses.dataclass(frozen=True)
class Quota:
    limit: int
    period: int  # seconds
    mode: str


def parse_quotas(text: str, default_mode: str = "reject") -> dict[str, Quota]:
    """``project=N/day`` or ``project=N/hour``, optionally ``:reject`` or ``:drop``, comma-separated."""
    if default_mode not in MODES:
        raise ValueError(f"EVENTPIPE_QUOTA_MODE must be reject or drop, not {default_mode!r}")
    quotas = {}
    for n, raw in enumerate(filter(None, (p.strip() for p in text.split(","))), 1):
        project, sep, spec = raw.partition("=")
        spec, _, mode = spec.partition(":")
        count, _, period = spec.partition("/")
        mode = mode.strip() or default_mode
        if (
            not sep
            or not project.strip()
            or not count.strip().isdigit()
            or period.strip() not in PERIODS
            or mode not in MODES
        ):
            raise ValueError(
                f"EVENTPIPE_QUOTAS: entry {n}: expected project=N/day or project=N/hour, optionally :reject or :drop"
            )
        quotas[project.strip()] = Quota(int(count), PERIODS[period.strip()], mode)
    return quotas


class Quotas:
    """Admission per project against its quota; the counts it shares live in ``events.quota``."""

    def __init__(
        self,
        quotas: dict[str, Quota],
        bootstrap: str = "",
        sync_seconds: float = 1.0,
        topic: str = QUOTA_TOPIC,
        clock=time.time,
    ):
        self.quotas = quotas
        self.bootstrap = bootstrap
        self.sync_seconds = sync_seconds
        self.topic = topic
        self.clock = clock
        self.replica = uuid.uuid4().hex[:12]
        # (project, period start) -> [accepted, dropped, refused] of this process
        self.own: dict[tuple[str, int], list[int]] = {}
        # (project, period start) -> replica -> accepted, from the topic (other replicas, gone or alive)
        self.others: dict[tuple[str, int], dict[str, int]] = {}
        self.loaded = not quotas  # nothing to wait for without quotas
        self._dirty: set[tuple[str, int]] = set()
        self._tasks: list[asyncio.Task] = []
        self._producer: AIOKafkaProducer | None = None

    @classmethod
    def from_settings(cls, settings) -> "Quotas":
        return cls(
            parse_quotas(settings.quotas, settings.quota_mode), settings.kafka_bootstrap, settings.quota_sync_seconds
        )

    # --- admission (on the request path: dict look-ups only) -------------------------------------------
    def admit(self, project: str, events: int) -> bool:
        """True: go ahead (the events are counted). False: drop them (answer 200, store nothing).
        Raises `Rejected` (429) over a ``reject`` quota, `Unavailable` before the shared counts are read."""
        quota = self.quotas.get(project)
        if quota is None:
            return True
        if not self.loaded:
            raise Unavailable("quota state is still being read; retry shortly", code="quota_loading")
        now = self.clock()
        start = int(now // quota.period * quota.period)
        key = (project, start)
        own = self.own.get(key)
        if own is None:
            own = self.own[key] = [0, 0, 0]
        self._dirty.add(key)
        used = own[0] + sum(self.others.get(key, {}).values())
        if used + events <= quota.limit:
            own[0] += events
            return True
        if quota.mode == "drop":
            own[1] += events
            OVER_QUOTA.labels(project, "dropped").inc(events)
            return False
        own[2] += events
        OVER_QUOTA.labels(project, "refused").inc(events)
        wait = str(max(1, math.ceil(start + quota.period - now)))
        raise Rejected(
            429,
            "over_quota",
            f"project over its quota of {quota.limit} events per "
            f"{'day' if quota.period == 86400 else 'hour'}; retry in {wait}s",
            [("retry-after", wait), ("x-ratelimit-reset", wait)],
        )

    def refund(self, project: str, events: int) -> None:
        """Admitted events that Kafka did not take (503): not used."""
        quota = self.quotas.get(project)
        if quota is not None:
            own = self.own.get((project, int(self.clock() // quota.period * quota.period)))
            if own is not None:
                own[0] = max(0, own[0] - events)

    # --- sharing ---------------------------------------------------------------------------------------
    def record(self, key: tuple[str, int]) -> tuple[bytes, bytes]:
        project, start = key
        accepted, dropped, refused = self.own[key]
        quota = self.quotas[project]
        value = {
            "project": project,
            "period": start,
            "period_seconds": quota.period,
            "quota": quota.limit,
            "replica": self.replica,
            "accepted": accepted,
            "dropped": dropped,
            "refused": refused,
            "at": int(self.clock() * 1000),
        }
        return f"{project}|{start}|{self.replica}".encode(), orjson.dumps(value)

    def apply(self, value: bytes | None) -> None:
        """One record of the topic (any replica's, this one's own included: then ignored)."""
        if not value:
            return
        try:
            doc = orjson.loads(value)
            key, replica, accepted = (
                (str(doc["project"]), int(doc["period"])),
                str(doc["replica"]),
                int(doc["accepted"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not ours to judge; a bad record must not stop admission
        if replica != self.replica:
            seen = self.others.setdefault(key, {})
            seen[replica] = max(seen.get(replica, 0), accepted)  # counts only grow: a re-read never lowers them

    async def publish(self) -> None:
        if self._producer is None or not self._dirty:
            return
        keys, self._dirty = self._dirty, set()
        try:
            await asyncio.gather(
                *[self._producer.send_and_wait(self.topic, value, key=key) for key, value in map(self.record, keys)]
            )
        except BaseException:  # also cancelled (at stop): the next round, or the last one, sends them again
            self._dirty |= keys
            raise
        now = self.clock()  # past periods are done: keep the dicts small
        for key in [k for k in self.own if k[1] + self.quotas[k[0]].period < now - 3600]:
            self.own.pop(key, None)
            self.others.pop(key, None)

    async def start(self) -> None:
        if not self.quotas:
            return
        self._tasks = [
            asyncio.get_running_loop().create_task(self._read()),
            asyncio.get_running_loop().create_task(self._sync()),
        ]

    async def stop(self) -> None:
        """Publish every count of this process once more: the next process starts from them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.own:
            return
        self._dirty |= set(self.own)
        try:
            if self._producer is None:
                self._producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, acks="all", client_id="eventpipe-collector-quotas"
                )
                await asyncio.wait_for(self._producer.start(), 5.0)
            await asyncio.wait_for(self.publish(), 5.0)
            log.info("published the last quota counts of %d project periods", len(self.own))
        except Exception as exc:  # noqa: BLE001 - logged: up to one interval of counts is lost
            log.warning("could not publish the last quota counts (%r)", exc)
        finally:
            await self._producer.stop()

    async def _sync(self) -> None:
        while True:
            try:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=self.bootstrap, acks="all", client_id="eventpipe-collector-quotas"
                    )
                    await producer.start()
                    self._producer = producer
                await self.publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker is away: counts stay local until it is back
                log.warning("quota counts not published (%r); retrying", exc)
            await asyncio.sleep(self.sync_seconds)

    async def _read(self) -> None:
        """Read the topic from its start to its end (then ``loaded``), and follow it."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                group_id=None,
                client_id="eventpipe-collector-quotas",
            )
            try:
                await consumer.start()
                tp = TopicPartition(self.topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = (await consumer.end_offsets([tp]))[tp]
                while True:
                    if not self.loaded and await consumer.position(tp) >= end:
                        self.loaded = True
                        log.info("quota usage read from %s: %d project periods", self.topic, len(self.others))
                    batches = await consumer.getmany(tp, timeout_ms=int(self.sync_seconds * 500))
                    for message in batches.get(tp, []):
                        self.apply(message.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; admission keeps the counts it has
                log.warning("reading %s failed (%r); retrying", self.topic, exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
