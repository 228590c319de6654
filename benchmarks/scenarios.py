"""Benchmark scenarios (``eventpipe bench collector|processor|e2e|stack``), each writing JSON + PNG to results/.

Each lives in its own module (collector_bench.py, processor_bench.py, e2e_bench.py) on the shared
harness (harness.py); this index is what ``eventpipe bench`` dispatches on.

(a)+(d) ``collector``: the real collector and the bare "parse and 200" server (apps/bare.py,
    same granian RSGI stack) alternate on CPU 0; wrk (saturation) or the open-loop
    generator (latency at 80 %) and a real Kafka broker share CPU 1. Reports requests/s per
    core of each, their ratio from the same run, and the collector's latency at 80 % of its
    own saturation rate, measured open loop.
(b) ``processor``: a topic pre-filled with bundles like the collector's; the real faust
    processor, pinned to CPU 0 (all its threads, chDB's included), drains it into chDB with
    the rollup views. Reports events/s per core, Kafka and ClickHouse bytes per event.
(c) ``e2e``: broker, collector, processor and load on the 2 cores (not pinned: there are not
    enough of them), open loop at fixed rates; freshness = ``inserted_at - received_at`` of
    every row received in the measured window (received_at is stamped by the collector,
    inserted_at by ClickHouse when the insert that made the row queryable ran).

Disturbance: the machine is shared. For each measured interval the JSON records the CPU
share the pinned server got and the foreign CPU share on its core (CPU 0 busy time not
spent by the server, from /proc/stat); a run with foreign load > 10 % of CPU 0 is marked
``disturbed`` and left out of the medians (kept in the JSON).
"""

from __future__ import annotations

from collector_bench import scenario_collector
from e2e_bench import scenario_e2e, scenario_stack
from processor_bench import scenario_processor

SCENARIOS = {
    "collector": scenario_collector,
    "processor": scenario_processor,
    "e2e": scenario_e2e,
    "stack": scenario_stack,
}
