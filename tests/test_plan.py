"""`eventpipe plan`: its sizing arithmetic, its model of the autoscalers, and the day it simulates.

The plan's numbers go into deploy/k8s/overlays/production, so its maths is checked by hand
here, the HPA model against the controller's documented rules, and the 24 h simulation for
the properties the deployment must have: replicas within bounds, no flapping, lag back to
normal after the peak.
"""

from __future__ import annotations

import json
import os
import math

import pytest

from eventpipe.plan import assumptions, autoscalers, capacities, cli, simulation, sizing, traffic
from eventpipe.schemas.topics import topic_specs

FALLBACK = capacities.Capacities(**{k: v for k, v in assumptions.FALLBACKS.items()}, sources={})
ISSUE = sizing.Inputs(peak_rps=15000, events_per_day=5e9)  # issue 6's example
SLOW = capacities.Capacities(
    collector_rps_per_core=5000,
    processor_eps_per_core=40000,
    clickhouse_bytes_per_event=60,
    kafka_bytes_per_event=400,
    sources={},
)


# --- sizing -------------------------------------------------------------------------------


def test_sizing_with_fallback_numbers_by_hand():
    s = sizing.size(ISSUE, FALLBACK)
    col, proc, kafka, ch = s["collector"], s["processor"], s["kafka"], s["clickhouse"]
    assert col["hpa_target_rps_per_pod"] == 9000  # 60 % of 15,000
    assert col["replicas_at_peak"] == math.ceil(15000 / 9000) == 2
    assert col["min_replicas"] == 3  # one per zone
    assert col["max_replicas"] == math.ceil(2 * 15000 / 9000) == 4
    assert proc["replicas_at_peak"] == math.ceil(150_000 / 105_000) == 2
    assert kafka["partitions"] == topic_specs()[0].partitions == proc["max_replicas"] == 12
    # normal lag: 4 collectors x 12 partitions x 200 bundles/s x (0.5 s batch + 0.5 s commit)
    assert proc["normal_lag_records_max"] == 4 * 12 * 200 * 1.0
    assert proc["lag_threshold_records"] == 9600 / proc["min_replicas"] == 4800
    raw_tb = 5e9 * 400 * (7 + 0.001 * 30) * 3 / 0.7 / 1e12
    assert kafka["disk_total_tb"] == pytest.approx(raw_tb, abs=0.01)
    assert kafka["brokers_for_disk"] == math.ceil(raw_tb / 8) == 8
    assert kafka["brokers"] == 9 and (12 * 3) % 9 == 0  # 36 partition replicas spread evenly
    assert ch["data_per_day_gb"] == 300.0
    assert ch["disk_per_replica_set_tb"] == pytest.approx(5e9 * 60 * 30 * 1.05 / 0.7 / 1e12, abs=0.01)
    assert ch["shards"] == 2 and ch["replicas"] == 2


def test_partitions_grow_when_processors_would_outnumber_half_of_them():
    s = sizing.size(sizing.Inputs(peak_rps=15000), SLOW)
    needed = math.ceil(2 * 150_000 / (40000 * 0.7))  # processors for a 2x peak
    assert s["kafka"]["partitions_needed"] == 2 * needed == 22
    assert s["kafka"]["partitions"] == 24 and s["processor"]["max_replicas"] == 24


def test_balanced_brokers_and_events_per_record():
    assert sizing._balanced_brokers(8, 36) == 9
    assert sizing._balanced_brokers(3, 36) == 3
    assert sizing._balanced_brokers(5, 11) == 5  # nothing in 5..10 divides 11: keep the need
    # 3 collectors x 12 partitions x 200 windows/s = 7200 bundles/s; 15,000 req/s -> ~2.1 per bundle
    assert sizing.events_per_record(15000, 10, 3, 12, 5) == pytest.approx(10 * 15000 / 7200)
    assert sizing.events_per_record(100, 10, 3, 12, 5) == 10  # at least one request per record


def test_capacities_come_from_benchmark_results_else_fallbacks(tmp_path):
    cap = capacities.load_capacities(tmp_path / "absent")
    assert all(source.startswith("FALLBACK") for source in cap.sources.values())
    assert cap.collector_rps_per_core == 15000 and cap.kafka_bytes_per_event == 400
    (tmp_path / "servers.json").write_text(
        json.dumps({"candidates": {"granian-rsgi": {"median": {"requests_per_sec": 33000}}}})
    )
    (tmp_path / "collector.json").write_text(
        json.dumps({"scenario": "collector", "requests_per_sec": 24000, "cores": 2})
    )
    (tmp_path / "sizes.json").write_text(
        json.dumps({"store": {"clickhouse_bytes_per_event": 42.5}, "processor_events_per_sec_per_core": 90000})
    )
    cap = capacities.load_capacities(tmp_path)
    assert cap.collector_rps_per_core == 12000 and "collector.json" in cap.sources["collector_rps_per_core"]
    assert cap.processor_eps_per_core == 90000 and cap.clickhouse_bytes_per_event == 42.5
    assert cap.sources["kafka_bytes_per_event"].startswith("FALLBACK")
    assert cap.bare_server_rps_per_core == 33000  # reported, never used as capacity


def test_a_scenarios_own_result_wins_over_newer_variants(tmp_path):
    """After a clone every file is equally new: the plan must not size from whichever variant was written last."""
    (tmp_path / "collector.json").write_text(json.dumps({"scenario": "collector", "requests_per_sec": 12000}))
    (tmp_path / "collector-c64-window5.json").write_text(
        json.dumps({"scenario": "collector", "requests_per_sec": 5000})
    )
    os.utime(tmp_path / "collector.json", (1_000_000, 1_000_000))  # the variant is newer
    cap = capacities.load_capacities(tmp_path)
    assert cap.collector_rps_per_core == 12000 and cap.sources["collector_rps_per_core"].endswith("/collector.json")
    (tmp_path / "collector.json").unlink()  # without it, the variant is what was measured
    assert capacities.load_capacities(tmp_path).collector_rps_per_core == 5000


def test_daily_curve_peaks_at_the_peak_with_the_daily_volume():
    curve = traffic.daily_curve(15000, 5e9 / (150_000 * 86400))
    assert len(curve) == 86400 // assumptions.TICK_S
    assert max(curve) == pytest.approx(15000, rel=0.001) and min(curve) > 0.05 * 15000
    assert sum(curve) * assumptions.TICK_S * 10 == pytest.approx(5e9, rel=0.05)
    with pytest.raises(ValueError):
        traffic.daily_curve(15000, 1.5)  # more events per day than the peak can carry


# --- the HPA model ------------------------------------------------------------------------


def test_hpa_tolerance_and_proportional_step():
    hpa = autoscalers.HPA(1, 20)
    assert hpa.pods_metric(4, 4, usage_total=4 * 0.65, target_per_pod=0.6) == 4  # 8 % over: tolerated
    assert hpa.pods_metric(4, 4, usage_total=4 * 0.9, target_per_pod=0.6) == 6  # ceil(1.5 x 4)
    assert hpa.pods_metric(4, 4, usage_total=4 * 0.3, target_per_pod=0.6) == 2
    # pods still starting count as idle when scaling up: no second step for the same load
    assert hpa.pods_metric(6, 4, usage_total=4 * 0.9, target_per_pod=0.6) == 6


def test_hpa_external_metric_and_the_keda_lag_cap_trap():
    hpa = autoscalers.HPA(1, 12)
    assert hpa.external_metric(2, 30000, 4800) == math.ceil(30000 / 4800)
    # KEDA with allowIdleConsumers false caps the lag at partitions x threshold; from 11 of 12
    # replicas that is a ratio of 12/11 = 1.09, inside the tolerance: the 12th never comes.
    assert hpa.external_metric(11, 12 * 4800, 4800) == 11


def test_hpa_stabilisation_windows_and_rate_limits():
    hpa = autoscalers.HPA(2, 50)
    assert hpa.decide(0, 2, 20) == 6  # scale up: max(100 %, +4 pods) per 15 s period
    assert hpa.decide(15, 6, 20) == 12
    hpa = autoscalers.HPA(2, 50)
    hpa.decide(0, 10, 10)
    for t in range(15, 300, 15):
        assert hpa.decide(t, 10, 3) == 10  # a 10 recommendation is inside the 300 s window
    assert hpa.decide(300, 10, 3) == 3  # it has left the window
    hpa = autoscalers.HPA(2, 50, up_window_s=60)
    hpa.decide(0, 4, 4)
    assert hpa.decide(15, 4, 12) == 4  # a spike shorter than the up window is ignored
    for t in (30, 45, 60):
        hpa.decide(t, 4, 12)
    assert hpa.decide(75, 4, 12) == 8


# --- the simulated day --------------------------------------------------------------------


def run(cap, factor, **overrides):
    inputs = sizing.Inputs(peak_rps=15000, events_per_day=5e9)
    planned = sizing.size(inputs, cap)
    return planned, simulation.simulate(inputs, cap, planned, peak_factor=factor, **overrides)


@pytest.mark.parametrize("cap", [FALLBACK, SLOW], ids=["fallback", "slow"])
@pytest.mark.parametrize("factor", [1.0, 2.0], ids=["peak", "surge"])
def test_simulated_day_stays_in_bounds_without_flapping_or_runaway(cap, factor):
    sizing, sim = run(cap, factor)
    s, series = sim["summary"], sim["series"]
    partitions = sizing["kafka"]["partitions"]
    assert max(series["processors"]) <= partitions
    assert min(series["processors"]) >= sizing["processor"]["min_replicas"]
    assert sizing["collector"]["min_replicas"] <= min(series["collectors"])
    assert max(series["collectors"]) <= sizing["collector"]["max_replicas"]
    assert s["rejected_requests"] == 0 and s["max_collector_utilisation"] < 0.8
    for role in ("collectors", "processors"):
        assert s[role]["max_changes_per_hour"] <= 4, (role, s[role])
        assert s[role]["reversals_within_10min"] <= 2, (role, s[role])
    # no lag runaway: the backlog drains, lag ends at its normal level, freshness stays bounded
    assert s["backlog_events_end"] == 0 and s["backlog_events_last_hour_max"] < 15 * series["eps"][-1]
    normal = sizing["processor"]["normal_lag_records_max"]
    assert s["lag_records_after_peak_min"] <= normal
    assert series["lag_records"][-1] <= normal
    assert s["max_freshness_s"] < 15 and s["minutes_freshness_over_2s"] < 15


def test_fallback_day_needs_no_scaling_at_all():
    _, sim = run(FALLBACK, 1.0)
    s = sim["summary"]
    assert s["collectors"]["scale_changes"] == 0 and s["processors"]["scale_changes"] == 0
    assert s["max_freshness_s"] <= 1.0 + 1e-9  # commit age only


def test_zero_scale_up_window_makes_processors_flap(monkeypatch):
    """Why the ScaledObject waits 60 s before scaling up: rebalance spikes feed back."""
    _, steady = run(SLOW, 2.0)
    monkeypatch.setattr(simulation, "PROCESSOR_SCALE_UP_WINDOW_S", 0)  # as simulate reads it
    _, eager = run(SLOW, 2.0)
    assert eager["summary"]["processors"]["scale_changes"] > steady["summary"]["processors"]["scale_changes"]
    assert (
        eager["summary"]["processors"]["reversals_within_10min"]
        >= steady["summary"]["processors"]["reversals_within_10min"]
    )


def test_flapping_counters():
    assert simulation.reversals([1, 2, 2, 1]) == 1  # up then down 30 s later
    assert simulation.reversals([1, 2] + [2] * 60 + [1]) == 0  # 15 minutes apart: not flapping
    assert simulation.max_changes_per_hour([1, 2, 3, 4, 5] + [5] * 300 + [6]) == 4


# --- the command --------------------------------------------------------------------------


def test_main_prints_the_table_and_writes_json_and_plot(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    out = tmp_path / "plan"
    assert (
        cli.main(["--peak-rps", "15000", "--events-per-day", "5e9", "--results", str(results), "--out", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "FALLBACK" in text and "collector" in text and "KEDA" in text and "surge day" in text
    doc = json.loads((out / "plan.json").read_text())
    assert doc["sizing"]["kafka"]["partitions"] == 12
    assert len(doc["simulations"]) == 2
    assert (out / "plan.png").stat().st_size > 10_000
    assert cli.main(["--peak-rps", "15000", "--results", str(results), "--out", str(tmp_path / "np"), "--no-plot"]) == 0
    assert not (tmp_path / "np" / "plan.png").exists()
    assert cli.main(["--peak-rps", "0"]) == 2


def test_broker_write_capacity_comes_from_the_cluster_benchmark(tmp_path):
    import dataclasses

    assert capacities.load_capacities(tmp_path).sources["kafka_broker_write_mb_s_per_core"].startswith("FALLBACK")
    (tmp_path / "cluster.json").write_text(json.dumps({"scenario": "cluster", "kafka_broker_write_mb_s_per_core": 10}))
    cap = capacities.load_capacities(tmp_path)
    assert cap.kafka_broker_write_mb_s_per_core == 10
    assert "cluster.json" in cap.sources["kafka_broker_write_mb_s_per_core"]
    s = sizing.size(ISSUE, dataclasses.replace(FALLBACK, kafka_broker_write_mb_s_per_core=10))
    # 150,000 events/s x 400 bytes x RF 3 = 180 MB/s over brokers of 10 MB/s per core x 2 cores
    assert s["kafka"]["broker_write_mb_s"] == 10 * assumptions.BROKER_CPU == 20
    assert s["kafka"]["brokers_for_write"] == math.ceil(180 / 20) == 9
