"""CI load smoke (<= 90 s): collector/bare-server throughput ratio on one core, measured in one run.

Starts a real Kafka broker (CPU 1), then alternates the bare granian RSGI "parse and 200"
server and the real collector on CPU 0 under wrk (CPU 1), ``--rounds`` saturation runs of
each, and compares the median ratios (throughput and CPU per request) with their minimums. Absolute numbers depend on the
machine and its neighbours, so they are recorded (results/smoke.json) but never judged; only
a large regression of the ratio fails. Runs with > 10 % foreign load on CPU 0 are marked
disturbed and left out of the median when at least one clean pair exists.

    python benchmarks/smoke.py            # exit 1 when collector/bare < --min-ratio
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import collector_bench  # noqa: E402
import harness  # noqa: E402

# Measured 2026-12-01 on the 2-core project machine (results/collector.json, benchmarks/README.md "Issue 13"):
# throughput ratio 0.62, CPU-per-request ratio 0.66 in a clean smoke run (bare ~48 us, collector ~75 us per
# request); 0.54 / 0.51-0.58 in runs that other work on the machine disturbed. The guards sit at about half of that: only a large regression (or
# a hang) fails CI. The CPU ratio is the steadier one on a shared machine (foreign load lowers throughput,
# hardly the CPU a request costs), so it is always judged; the throughput ratio only on pairs where neither
# run was disturbed. (Before issue 13: 0.28 / 0.29, guards 0.12 / 0.15.)
MIN_RATIO = 0.30
MIN_CPU_RATIO = 0.32


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eventpipe bench smoke", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--min-ratio", type=float, default=MIN_RATIO, help="collector/bare requests/s")
    ap.add_argument("--min-cpu-ratio", type=float, default=MIN_CPU_RATIO, help="bare/collector CPU seconds per request")
    args = ap.parse_args(argv)
    started = time.monotonic()
    reqs = load.build_requests(harness.HOST, 1024, 10, None, False, harness.WRITE_KEYS, 2000)
    broker = harness.start_broker("1")
    pairs = []
    try:
        for rnd in range(args.rounds):
            order = ["bare", "collector"] if rnd % 2 == 0 else ["collector", "bare"]
            got = {
                n: collector_bench.measure_saturation(n, reqs, args.duration, args.connections, broker) for n in order
            }
            for n in order:
                r = got[n]
                print(
                    f"smoke: {n:9s} {r['requests_per_sec']:8.0f} req/s  cpu {r['server_cpu']:.0%}  foreign "
                    f"{r['foreign_cpu_on_core']:.0%}  non-2xx {r['non_2xx']}"
                    + ("  DISTURBED" if r["disturbed"] else ""),
                    flush=True,
                )
            pairs.append(got)
    finally:
        harness.stop_broker(broker)
    clean = [p for p in pairs if not (p["bare"]["disturbed"] or p["collector"]["disturbed"])]
    failed = [p for p in pairs if p["collector"]["non_2xx"] or p["collector"]["socket_errors"]]
    ratios = [p["collector"]["requests_per_sec"] / p["bare"]["requests_per_sec"] for p in clean]
    cpu_ratios = [p["bare"]["cpu_us_per_request"] / p["collector"]["cpu_us_per_request"] for p in pairs]
    ratio = statistics.median(ratios) if ratios else None
    cpu_ratio = statistics.median(cpu_ratios)
    problems = []
    if failed:
        problems.append("the collector answered non-2xx or dropped connections")
    if cpu_ratio < args.min_cpu_ratio:
        problems.append(f"CPU ratio {cpu_ratio:.2f} < {args.min_cpu_ratio:.2f}")
    if ratio is not None and ratio < args.min_ratio:
        problems.append(f"throughput ratio {ratio:.2f} < {args.min_ratio:.2f}")
    ok = not problems
    harness.write_result(
        "smoke",
        {
            "command": "eventpipe bench smoke " + " ".join(sys.argv[1:] if argv is None else argv),
            "collector_vs_bare": round(ratio, 3) if ratio is not None else None,
            "collector_vs_bare_cpu_per_request": round(cpu_ratio, 3),
            "min_ratio": args.min_ratio,
            "min_cpu_ratio": args.min_cpu_ratio,
            "passed": ok,
            "problems": problems,
            "clean_pairs": len(clean),
            "pair_ratios": [round(r, 3) for r in ratios],
            "pair_cpu_ratios": [round(r, 3) for r in cpu_ratios],
            "runs": pairs,
            "wall_seconds": round(time.monotonic() - started, 1),
        },
    )
    shown = f"{ratio:.2f}" if ratio is not None else "n/a (every pair disturbed)"
    print(
        f"smoke: collector/bare throughput {shown} (min {args.min_ratio:.2f}), CPU per request "
        f"{cpu_ratio:.2f} (min {args.min_cpu_ratio:.2f}): {'ok' if ok else 'REGRESSION: ' + '; '.join(problems)} "
        f"in {time.monotonic() - started:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
