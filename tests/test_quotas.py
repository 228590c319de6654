"""Per-project quotas: exact at the limit, refused or dropped as configured, every drop counted, state shared."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from eventpipe.ingest.errors import Rejected, Unavailable
from eventpipe.ingest.quotas import Quota, Quotas, parse_quotas
from eventpipe.stack import Child, eventpipe_command, wait_http
from tests.conftest import free_port, private_stack, query, wait_for
from tests.http import get, post


def test_parse_quotas():
    assert parse_quotas("acme=100/day, beta=30/hour:drop", "reject") == {
        "acme": Quota(100, 86400, "reject"),
        "beta": Quota(30, 3600, "drop"),
    }
    assert parse_quotas("", "drop") == {}
    for bad in ("acme=100", "acme=x/day", "acme=5/week", "=5/day", "acme=5/day:maybe"):
        with pytest.raises(ValueError, match="EVENTPIPE_QUOTAS"):
            parse_quotas(bad)


def test_admission_is_exact_per_period_and_counts_other_replicas():
    now = [86400 * 100 + 50]
    q = Quotas({"acme": Quota(25, 86400, "reject"), "beta": Quota(10, 3600, "drop")}, clock=lambda: now[0])
    q.loaded = True  # as after reading events.quota to its end
    assert q.admit("other", 10**9)  # no quota
    assert [q.admit("acme", 10) for _ in range(2)] == [True, True]
    with pytest.raises(Rejected) as refused:
        q.admit("acme", 6)  # 20 + 6 > 25: the whole request
    assert refused.value.status == 429 and dict(refused.value.headers)["retry-after"] == str(86400 - 50)
    assert q.admit("acme", 5)  # exactly 25
    # another replica's published count (a live one, or a collector that was restarted) counts too
    q.apply(orjson.dumps({"project": "beta", "period": 86400 * 100, "replica": "r-old", "accepted": 7}))
    q.apply(orjson.dumps({"project": "beta", "period": 86400 * 100, "replica": "r-old", "accepted": 4}))  # re-read
    assert q.admit("beta", 3) and not q.admit("beta", 1)  # 7 + 3 = 10: the next one is dropped
    key, value = q.record(("beta", 86400 * 100))
    assert key.endswith(f"|{q.replica}".encode())
    assert orjson.loads(value) | {"at": 0} == {
        "project": "beta",
        "period": 86400 * 100,
        "period_seconds": 3600,
        "quota": 10,
        "replica": q.replica,
        "accepted": 3,
        "dropped": 1,
        "refused": 0,
        "at": 0,
    }
    now[0] += 3600  # beta's next hour starts empty
    assert q.admit("beta", 10)
    q.refund("beta", 10)
    assert q.own[("beta", 86400 * 100 + 3600)][0] == 0
    unloaded = Quotas({"acme": Quota(1, 3600, "reject")})
    with pytest.raises(Unavailable):
        unloaded.admit("acme", 1)


def _batch(n: int, tag: str) -> bytes:
    return orjson.dumps(
        {
            "batch": [
                {"type": "track", "event": "Quota Test", "userId": f"{tag}-u", "messageId": f"{tag}-{i}"}
                for i in range(n)
            ]
        }
    )


def test_quotas_against_the_real_stack(tmp_path):
    """acme: 100 a day, refused past it; beta: 30 an hour, dropped past it. Exact, across a restart and a
    second collector, and every refused or dropped event counted in metrics and in ClickHouse."""
    with private_stack(tmp_path, quotas="acme=100/day,beta=30/hour:drop", quota_sync_seconds=0.5) as stack:
        url = stack.collector_url + "/v1/batch"
        codes = [post(url, _batch(10, f"a{i}"), key="test-key-acme")[0] for i in range(10)]
        assert codes == [200] * 10
        status, headers, body = post(url, _batch(1, "a-over"), key="test-key-acme")
        assert (status, body["code"]) == (429, "over_quota") and 0 < int(headers["retry-after"]) <= 86400
        assert [post(url, _batch(7, f"b{i}"), key="test-key-beta")[0] for i in range(6)] == [200] * 6  # 4 x 7 fit
        _, _, metrics = get(stack.collector_url + "/metrics")
        assert b'eventpipe_collector_quota_events_total{outcome="dropped",project="beta"} 14.0' in metrics
        assert b'eventpipe_collector_quota_events_total{outcome="refused",project="acme"} 1.0' in metrics

        # a restarted collector starts from the counts its predecessor published when it stopped
        stack.collector.stop()
        stack.start_collector()
        status, _, _ = post(url, _batch(1, "a-after-restart"), key="test-key-acme")
        assert status == 429
        assert post(url, _batch(2, "b-after-restart"), key="test-key-beta")[0] == 200  # 28 + 2 = 30
        assert post(url, _batch(1, "b-dropped"), key="test-key-beta")[0] == 200  # dropped

        # a second collector process (another replica) sees the same usage, once the first has published it
        # (every quota_sync_seconds: until then a replica does not know the others' latest admissions)
        usage = (
            "SELECT project, max(quota), sum(accepted), sum(dropped), sum(refused) FROM quota_usage FINAL "
            "GROUP BY project ORDER BY project"
        )
        published = [["acme", 100, 100, 0, 2], ["beta", 30, 30, 15, 0]]
        assert wait_for(lambda: query(stack, usage) == published, timeout=30), query(stack, usage)
        port = free_port()
        env = {**stack._env(), **dataclasses.replace(stack.settings, collector_port=port).env()}
        second = Child("collector2", eventpipe_command("collector"), env, None)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", second, 60)
            assert wait_for(
                lambda: post(f"http://127.0.0.1:{port}/v1/batch", _batch(1, "a-second"), key="test-key-acme")[0] == 429,
                timeout=10,
            )
            assert post(f"http://127.0.0.1:{port}/v1/batch", _batch(1, "b-second"), key="test-key-beta")[0] == 200
        finally:
            second.stop()

        # exactly the limits were stored; ClickHouse counts what was refused and dropped
        stored = "SELECT project, count() FROM events WHERE event = 'Quota Test' GROUP BY project ORDER BY project"
        assert wait_for(lambda: query(stack, stored) == [["acme", 100], ["beta", 30]], timeout=30), query(stack, stored)
        expected = [["acme", 100, 100, 0, 3], ["beta", 30, 30, 16, 0]]
        assert wait_for(lambda: query(stack, usage) == expected, timeout=30), query(stack, usage)
        # ... and the dashboard has the line
        _, _, raw = get(f"http://127.0.0.1:{stack.settings.processor_web_port}/dashboard/data")
        assert orjson.loads(raw)["quotas"] == expected
