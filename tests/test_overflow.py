"""Hot-key overflow: a device over its rate spreads over partitions, flagged and counted; retries still dedup."""

from __future__ import annotations

import orjson

from eventpipe.ingest.partitioning import partition_for
from eventpipe.ingest.overflow import HotKeys
from eventpipe.schemas.topics import topic_specs
from tests.conftest import private_stack, query, wait_for
from tests.http import get, post

PARTITIONS = topic_specs()[0].partitions


def _body(device: str, tag: str, n: int = 10) -> bytes:
    return orjson.dumps(
        {
            "batch": [
                {"type": "track", "event": "Hot", "anonymousId": device, "messageId": f"{tag}-{i}"} for i in range(n)
            ]
        }
    )


def test_a_key_over_its_rate_is_spread_by_its_first_message_id():
    now = [0.0]
    hot = HotKeys(100, capacity=3, sticky_seconds=60, clock=lambda: now[0])
    routes = [hot.route("acme", b"dev", 10, _body("dev", f"r{i}")) for i in range(25)]
    assert routes[:10] == [(b"dev", False)] * 10  # 100 events: its rate
    assert all(spread for _, spread in routes[10:])
    assert len({partition_for(k, PARTITIONS) for k, _ in routes[10:]}) >= 6  # over many partitions
    # a retry of a hot request (same body) goes where the first attempt went: dedup by messageId holds,
    # also once the key is back within its rate (it stays hot for the sticky time)
    assert hot.route("acme", b"dev", 10, _body("dev", "r12")) == routes[12]
    now[0] += 30
    assert hot.route("acme", b"dev", 10, _body("dev", "r12")) == routes[12]
    now[0] += 31  # a minute after its last request over the rate: back home
    assert hot.route("acme", b"dev", 10, _body("dev", "s0")) == (b"dev", False)
    assert hot.route("beta", b"dev", 10, b"{}") == (b"dev", False)  # keys are per project
    for i in range(10):
        hot.route("acme", f"d{i}".encode(), 1, b"{}")
    assert len(hot.buckets) == 3  # bounded
    assert HotKeys(0).route("acme", b"dev", 10**6, b"{}") == (b"dev", False)  # off


def test_a_hot_device_spreads_over_partitions_against_the_real_stack(tmp_path):
    with private_stack(tmp_path, hot_key_events_per_s=50) as stack:
        url = stack.collector_url + "/v1/batch"
        bodies = [_body("runaway", f"hot-{i}") for i in range(30)]
        assert [post(url, b, key="test-key-acme")[0] for b in bodies] == [200] * 30
        assert post(url, _body("calm", "calm"), key="test-key-acme")[0] == 200
        assert post(url, bodies[20], key="test-key-acme")[0] == 200  # a client retry of a spread request
        assert wait_for(lambda: query(stack, "SELECT count() FROM events WHERE event = 'Hot'")[0][0] == 310, timeout=30)
        home = partition_for(b"runaway", PARTITIONS)
        rows = query(
            stack,
            "SELECT kafka_partition, has(flags, 'hot_key_overflow') AS spread, count() FROM events "
            "WHERE anonymous_id = 'runaway' GROUP BY kafka_partition, spread",
        )
        on_home = sum(n for p, spread, n in rows if p == home and not spread)
        flagged = sum(n for _, spread, n in rows if spread)
        assert on_home >= 50 and on_home + flagged == 300  # its rate (plus the refill while posting) at home,
        # until it went over it: from then on it is spread (sticky), whatever the time the retry came
        assert len({p for p, spread, _ in rows if spread}) >= 4  # the rest spread
        assert all(p == home for p, spread, _ in rows if not spread)
        assert query(stack, "SELECT count(), uniqExact(message_id) FROM events WHERE anonymous_id = 'runaway'") == [
            [300, 300]
        ]  # the retry was dropped: it went to the same partition as its first attempt
        assert query(stack, "SELECT flags FROM events WHERE anonymous_id = 'calm' LIMIT 1") == [[[]]]
        _, _, metrics = get(stack.collector_url + "/metrics")
        spread_requests = float(metrics.split(b"\neventpipe_collector_hot_key_requests_total ")[1].split()[0])
        assert spread_requests == flagged / 10 + 1  # the retry was spread too
