"""Durability on a 3-node KRaft cluster: losing a leader or the controller loses and doubles nothing.

Modelled on Kafka's own replication system tests (``replication_test.py``: hard
bounces of the leader, a clean bounce, the controller). Events stream through
the collector (acks=all, idempotent producer) into topics with replication
factor 3 and ``min.insync.replicas`` 2 while the node leading the busiest
partitions is SIGKILLed five times (each restarted at once, as a supervisor
would, then waited for until its partitions have new leaders and it is back in
every ISR), one leader is shut down cleanly (SIGTERM) and the active KRaft
controller is killed. At
the end every event answered 200 is stored exactly once, the rollups equal a
recomputation, and no request waited longer than the collector's ack timeout
plus a margin. With two of three nodes down, below the minimum ISR, the
collector refuses with 503 + Retry-After within its ack timeout, keeps what
it acked before, and takes writes again once the nodes are back.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import aiohttp
import orjson
import pytest

from eventpipe.broker import KafkaCluster, free_port_block, partitions
from eventpipe.verify import verify
from tests.conftest import make_settings, query, stack_on, wait_for
from tests.http import basic
from tests.test_exactly_once import EVENTS_PER_REQUEST, Loader

RATE = 150  # requests/s of 10 events: steady, well below what the 2 cores carry with three JVMs
LEADER_KILLS = 5
# How much longer than EVENTPIPE_ACK_TIMEOUT_MS a request may take: the collector answers every request
# when its bundle's ack timer fires; the rest is the bundle window and event-loop delay on a busy machine.
MARGIN_S = 0.5
TOPIC = "events.raw"

pytestmark = pytest.mark.timeout(420)


class TimedLoader(Loader):
    """tests.test_exactly_once's Loader as a fleet of SDK clients: each sends one request at a time (retrying
    it after a 503 until it gets its 200, as the SDKs do), all together at ``rate`` requests/s, until stopped.

    Every attempt is timed from send to answer. One request at a time per client keeps the measurement the
    collector's: a sender that piled up requests would time its own connection queue and event loop too.
    """

    def __init__(self, url: str, key: str, rate: float, seed: int, clients: int = 100):
        super().__init__(url, key, requests=10**9, rate=rate, seed=seed)
        self.clients = clients
        self.stopping = threading.Event()
        self.statuses: collections.Counter = collections.Counter()
        self.slowest = 0.0
        self.slow: list[tuple[float, float, int, bytes]] = []  # (wall clock, seconds, status, body) over 1 s
        self.lag_max = 0.0  # the sender's own event-loop delay: what a timing could owe to this process
        self.sent = 0

    async def _send(self, session: aiohttp.ClientSession, body: bytes) -> None:
        headers = {"Authorization": basic(self.key), "Content-Type": "application/json"}
        while True:
            started = time.monotonic()
            async with session.post(
                self.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as resp:
                answer = await resp.read()
            took = time.monotonic() - started
            self.statuses[resp.status] += 1
            self.slowest = max(self.slowest, took)
            if took > 1.0:
                self.slow.append((round(time.time(), 2), round(took, 2), resp.status, answer[:48]))
            if resp.status == 200:
                self.accepted_events += EVENTS_PER_REQUEST
                return
            assert resp.status == 503 and "retry-after" in {k.lower() for k in resp.headers}, resp.status
            self.retries += 1
            await asyncio.sleep(0.2 + self.rng.random() * 0.3)

    async def _client(self, session: aiohttp.ClientSession, started: float) -> None:
        while not self.stopping.is_set():
            n, self.sent = self.sent, self.sent + 1
            delay = started + n / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._send(session, self.body(n))

    async def _watch_lag(self) -> None:
        while not self.stopping.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.lag_max = max(self.lag_max, time.monotonic() - t - 0.05)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.clients)) as session:
            started = time.monotonic()
            await asyncio.gather(self._watch_lag(), *(self._client(session, started) for _ in range(self.clients)))


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory):
    """Three combined KRaft nodes (small heaps), the processor and the collector bootstrapped to all three."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    # six ports (3 nodes x client + controller) below the ephemeral range: see free_port_block
    settings = make_settings(
        tmp_path,
        kafka_bootstrap=f"127.0.0.1:{free_port_block(6)}",
        kafka_nodes=3,
        broker_heap="384m",
        processor_session_timeout=6.0,
    )
    started = time.monotonic()
    cluster = KafkaCluster(settings).start()
    with stack_on(cluster, tmp_path) as stack:
        print(f"cluster + processor + collector up in {time.monotonic() - started:.1f}s")
        yield stack, cluster


def described(cluster: KafkaCluster) -> list:
    return asyncio.run(partitions(cluster.bootstrap, [TOPIC]))


def wait_all_in_sync(cluster: KafkaCluster, timeout: float = 60.0) -> float:
    """Seconds until every partition has a leader and all three replicas in its ISR."""
    started = time.monotonic()
    ids = {n.node_id for n in cluster.nodes}
    assert wait_for(
        lambda: all(p.leader in ids and set(p.isr) == ids for p in described(cluster)), timeout=timeout, interval=0.2
    ), described(cluster)
    return time.monotonic() - started


def busiest_leader(cluster: KafkaCluster) -> tuple[int, list[int]]:
    """The node leading the most of the busiest partitions (by records in Kafka), and what it leads."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends():
        consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(TOPIC, p) for p in range(12)]
            return {tp.partition: n for tp, n in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    records = asyncio.run(ends())
    parts = described(cluster)
    busiest = sorted(parts, key=lambda p: records[p.partition], reverse=True)[:4]
    leader = collections.Counter(p.leader for p in busiest).most_common(1)[0][0]
    return leader, [p.partition for p in parts if p.leader == leader]


def wait_new_leaders(
    cluster: KafkaCluster, victim: int, led: list[int], started: float, timeout: float = 30.0
) -> float:
    """Seconds from ``started`` until every partition ``victim`` led has another live leader."""
    assert wait_for(
        lambda: all(p.leader not in (victim, -1) for p in described(cluster) if p.partition in led),
        timeout=timeout,
        interval=0.1,
    ), described(cluster)
    return time.monotonic() - started


def test_leader_and_controller_loss_under_load_lose_and_double_nothing(cluster_stack):
    stack, cluster = cluster_stack
    settings = stack.settings
    began = time.monotonic()
    wait_all_in_sync(cluster)
    loader = TimedLoader(stack.collector_url + "/v1/batch", "test-key-acme", RATE, seed=17)
    loader.thread.start()
    time.sleep(3)  # steady state before the first fault
    events = []

    def bounce(kind: str, fault) -> None:
        victim, led = busiest_leader(cluster) if kind != "controller" else (cluster.active_controller(), None)
        led = led if led is not None else [p.partition for p in described(cluster) if p.leader == victim]
        node = cluster.node(victim)
        t0 = time.monotonic()
        fault(node)
        offset = node.launch()  # restarted at once, as a supervisor (Kubernetes) restarts a crashed pod
        if kind == "controller":
            assert wait_for(lambda: cluster.active_controller() not in (victim, None), timeout=30, interval=0.1)
        to_controller = time.monotonic() - t0 if kind == "controller" else None
        to_leader = wait_new_leaders(cluster, victim, led, t0)
        node.wait_ready(120, offset)
        restart = time.monotonic() - t0
        in_sync = wait_all_in_sync(cluster)
        events.append(
            dict(
                kind=kind,
                node=victim,
                partitions_led=len(led),
                new_leader_s=round(to_leader, 2),
                new_controller_s=to_controller and round(to_controller, 2),
                restart_s=round(restart, 1),
                back_in_isr_s=round(in_sync, 1),
            )
        )

    for _ in range(LEADER_KILLS):
        bounce("leader SIGKILL", lambda n: n.kill())
    bounce("leader SIGTERM", lambda n: n.stop())
    bounce("controller", lambda n: n.kill())
    time.sleep(3)  # steady state after the last fault, then the load stops
    loader.stopping.set()
    loader.thread.join(timeout=120)
    assert not loader.thread.is_alive()
    load_s = time.monotonic() - began

    expected = loader.accepted_events
    done = wait_for(lambda: query(stack, "SELECT count() FROM events")[0][0] >= expected, timeout=120)
    time.sleep(2)  # let a straggling duplicate, if any, land before we count
    count, unique = query(stack, "SELECT count(), uniqExact(message_id) FROM events")[0]
    for e in events:
        print("  ", e)
    limit = settings.ack_timeout_ms / 1000 + MARGIN_S
    over = [x for x in loader.slow if x[1] > limit]
    print(
        f"requests {loader.sent}, attempts answered {dict(loader.statuses)}; slowest {loader.slowest:.2f}s "
        f"(limit {limit:g}s: ack timeout + margin; over it: {over[:3]}; the sender's own loop lag at most "
        f"{loader.lag_max:.2f}s); accepted {expected} events, stored {count} ({unique} unique); "
        f"load ran {load_s:.0f}s"
    )
    assert done and (count, unique) == (expected, expected)
    assert loader.accepted_events == loader.sent * EVENTS_PER_REQUEST  # every request got its 200 in the end
    checks = verify(lambda sql: query(stack, sql))
    assert all(c.ok for c in checks), checks
    assert loader.slowest <= limit, over
    assert set(loader.statuses) <= {200, 503}
    assert [e["kind"] for e in events].count("leader SIGKILL") == LEADER_KILLS


async def _post_all(url: str, bodies: list[bytes]) -> list[tuple[int, dict, float]]:
    headers = {"Authorization": basic("test-key-acme"), "Content-Type": "application/json"}

    async def one(session, body):
        started = time.monotonic()
        async with session.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            await resp.read()
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, time.monotonic() - started

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(one(session, b) for b in bodies))


def _bodies(prefix: str, n: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "batch": [
                    {
                        "type": "track",
                        "event": "View",
                        "anonymousId": f"device-{r % 40}",
                        "messageId": f"{prefix}-{r}-{i}",
                    }
                    for i in range(EVENTS_PER_REQUEST)
                ]
            }
        )
        for r in range(n)
    ]


def test_below_min_isr_the_collector_refuses_and_keeps_what_it_acked(cluster_stack):
    stack, cluster = cluster_stack
    url = stack.collector_url + "/v1/batch"
    ack_timeout = stack.settings.ack_timeout_ms / 1000
    wait_all_in_sync(cluster)
    before = asyncio.run(_post_all(url, _bodies("minisr-before", 40)))
    assert [s for s, _, _ in before] == [200] * 40

    victims = [n for n in cluster.nodes if n.node_id != 1]  # two of three: below min.insync.replicas=2
    for n in victims:
        n.kill()
    during = asyncio.run(_post_all(url, _bodies("minisr-during", 24)))
    statuses = collections.Counter(s for s, _, _ in during)
    slowest = max(t for _, _, t in during)
    assert statuses == {503: 24}, statuses
    assert all(int(h["retry-after"]) >= 1 for _, h, _ in during)
    assert slowest <= ack_timeout + MARGIN_S

    t0 = time.monotonic()
    for n, offset in [(n, n.launch()) for n in victims]:  # both at once, as after a zone outage
        n.wait_ready(120, offset)
    restarted = time.monotonic() - t0
    in_sync = wait_all_in_sync(cluster)
    # The collector's producer reconnects on its own; the first write after the outage may still be refused.
    first_ok = wait_for(
        lambda: asyncio.run(_post_all(url, _bodies("minisr-probe", 1)))[0][0] == 200, timeout=30, interval=0.5
    )
    recovered = time.monotonic() - t0
    assert first_ok
    after = asyncio.run(_post_all(url, _bodies("minisr-after", 40)))
    assert [s for s, _, _ in after] == [200] * 40

    acked = 80 * EVENTS_PER_REQUEST
    sql = (
        "SELECT countIf(message_id LIKE 'minisr-before-%' OR message_id LIKE 'minisr-after-%'), "
        "uniqExactIf(message_id, message_id LIKE 'minisr-before-%' OR message_id LIKE 'minisr-after-%'), "
        "countIf(message_id LIKE 'minisr-during-%'), uniqExactIf(message_id, message_id LIKE 'minisr-during-%') "
        "FROM events"
    )
    assert wait_for(lambda: query(stack, sql)[0][0] >= acked, timeout=60)
    time.sleep(2)
    kept, kept_unique, late, late_unique = query(stack, sql)[0]
    print(
        f"2 of 3 nodes down: {dict(statuses)} in at most {slowest:.2f}s (ack timeout {ack_timeout:g}s); "
        f"restarted in {restarted:.1f}s, back in every ISR {in_sync:.1f}s later, a write acked again "
        f"{recovered:.1f}s after the restart began; "
        f"acked {acked} events, stored {kept} ({kept_unique} unique); refused-then-landed {late}"
    )
    assert (kept, kept_unique) == (acked, acked)
    assert late == late_unique  # a refused bundle may still land after the outage, but only once


def test_node_ports_and_cluster_sizes(tmp_path):
    from eventpipe.broker import BrokerError, node_ports, replication_for

    one = make_settings(tmp_path, kafka_bootstrap="127.0.0.1:19092")
    assert node_ports(one, 3) == [19092, 19094, 19096]  # each node's controller on the port after
    listed = make_settings(tmp_path, kafka_bootstrap="127.0.0.1:1,127.0.0.1:5,127.0.0.1:9")
    assert node_ports(listed, 3) == [1, 5, 9]
    with pytest.raises(BrokerError, match="lists 3 addresses for 5 nodes"):
        node_ports(listed, 5)
    for bad in (2, 4):
        with pytest.raises(BrokerError, match="odd number of nodes"):
            KafkaCluster(one, nodes=bad)
    assert replication_for(1) == (1, 1) and replication_for(3) == (3, 2)
    cluster = KafkaCluster(one, data_dir=tmp_path / "c", nodes=3)
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert [n.voters for n in cluster.nodes] == ["1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"] * 3
