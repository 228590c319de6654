"""``eventpipe bench <scenario>``: the performance benchmarks of issue 5, one command each.

The benchmark code lives in the repository's ``benchmarks/`` directory (not in the installed
packages, nor in the image): this module puts it on the path and dispatches.

    eventpipe bench load --rate 8000 --url http://127.0.0.1:8080   open-loop load against a running collector
    eventpipe bench collector      (a)+(d) collector vs bare server on one core, latency at 80 %
    eventpipe bench processor      (b) processor draining a pre-filled topic into chDB, one core
    eventpipe bench e2e            (c) the whole pipeline at fixed rates, freshness percentiles
    eventpipe bench cluster        the collector against 1 Kafka node vs 3 (replication factor 3), same run
    eventpipe bench stack          the whole local stack unpinned under wrk -t1 -c64: requests/s, CPU split
    eventpipe bench smoke          CI guard: collector/bare ratio, <= 90 s
    eventpipe bench micro          pytest-benchmark microbenchmarks (benchmarks/test_micro.py)

Results (JSON + PNG) go to benchmarks/results/; ``eventpipe plan`` reads the capacities from there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _import_benchmarks():
    if not BENCHMARKS.is_dir():
        raise SystemExit(f"eventpipe bench: {BENCHMARKS} not found: run it from a checkout of the repository")
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))


def _common(p: argparse.ArgumentParser, duration: float) -> None:
    p.add_argument("--duration", type=float, default=duration, help="seconds per measured run")
    p.add_argument("--events", type=int, default=10, help="events per request")
    p.add_argument("--gzip", action="store_true", help="gzip request bodies")
    p.add_argument("--devices", type=int, default=10_000, help="distinct devices (anonymousIds)")
    p.add_argument("--pool", type=int, default=4096, help="distinct pre-built requests, cycled")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipe bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    sub.add_parser("load", add_help=False, help="open-loop load generator (see --help)")

    c = sub.add_parser("collector", help="(a)+(d): collector vs bare granian RSGI on CPU 0, real Kafka")
    _common(c, 10)
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument(
        "--servers",
        nargs="+",
        default=["bare", "collector"],
        choices=[
            "bare",
            "collector",
            "collector-lz4",
            "collector-zstd",
            "collector-none",
            "collector-nullsink",
            "collector-timersink",
            "collector-baseline",
        ],
        help="bare and collector always; collector-lz4/-zstd/-none: that record compression; "
        "collector-nullsink: everything but the Kafka write; collector-baseline: the collector of "
        "the --baseline checkout",
    )
    c.add_argument("--baseline", help="a checkout (directory) whose collector runs as collector-baseline")
    c.add_argument("--retries", type=int, default=3, help="max re-runs of disturbed runs")
    c.add_argument("--connections", type=int, default=256, help="wrk connections for saturation")
    c.add_argument("--latency-duration", type=float, default=20, help="open-loop run at 80 %% (0: skip)")
    c.add_argument("--open-connections", type=int, default=512)
    c.add_argument(
        "--latency-rate",
        type=float,
        help="open-loop rate instead of 80 %% of the measured one (the generator shares CPU 1 with the "
        "broker: above ~5,000 req/s it is the generator and the broker that queue)",
    )
    c.add_argument("--name", default="collector", help="result file name (results/NAME.json, NAME.png)")
    c.add_argument(
        "--profile",
        action="store_true",
        help="py-spy flame graphs of each server's first run to results/profile-{bare,collector}.svg "
        "(profiled runs are slower: leave them out of published numbers)",
    )
    c.add_argument(
        "--native",
        action="store_true",
        help="with --profile: native frames too (GC, GIL hand-offs, syscalls; pauses the server per sample)",
    )

    p = sub.add_parser("processor", help="(b): processor draining a pre-filled topic into chDB on CPU 0")
    _common(p, 0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--total-events", type=int, default=1_000_000)
    p.add_argument(
        "--requests-per-bundle",
        type=int,
        default=6,
        help="requests per Kafka record (collector at 15k req/s, 5 ms window, 12 partitions: ~6)",
    )
    p.add_argument("--batch-records", type=int, default=1000, help="EVENTPIPE_PROCESSOR_BATCH_RECORDS")
    p.add_argument("--compression", choices=["lz4", "zstd", "gzip"], help="compress the pre-filled records")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--profile", action="store_true", help="py-spy flame graph to results/profile-processor.svg")
    p.add_argument("--name", default="processor", help="result file name (results/NAME.json, NAME.png)")

    e = sub.add_parser("e2e", help="(c): broker + collector + processor at fixed rates, freshness")
    _common(e, 30)
    e.add_argument("--rates", type=float, nargs="+", default=[500, 2000, 10000])
    e.add_argument("--warmup", type=float, default=5, help="seconds of each run left out of freshness")
    e.add_argument("--settle", type=float, default=60, help="max wait for the processor to catch up")
    e.add_argument("--open-connections", type=int, default=512)
    e.add_argument("--name", default="e2e", help="result file name (results/NAME.json, NAME.png)")

    k = sub.add_parser("cluster", help="collector throughput and latency with 1 Kafka node vs 3 (RF 3)")
    _common(k, 10)
    k.add_argument("--repeats", type=int, default=2, help="rounds of (1 node, 3 nodes)")
    k.add_argument("--connections", type=int, default=256, help="wrk connections for saturation")
    k.add_argument(
        "--rate",
        type=float,
        default=400,
        help="offered req/s of the open-loop latency run (below both layouts' saturation)",
    )
    k.add_argument("--latency-duration", type=float, default=15)
    k.add_argument("--open-connections", type=int, default=256)
    k.add_argument("--heap", default="512m", help="max heap of each Kafka JVM")
    k.add_argument(
        "--layouts",
        action="store_true",
        help="instead: 3 combined nodes vs 3 brokers + 1 controller (results/cluster-layout.json)",
    )
    st = sub.add_parser("stack", help="the whole local stack unpinned on 2 cores under wrk: req/s, CPU split")
    _common(st, 15)
    st.add_argument("--connections", type=int, default=64, help="wrk connections (closed loop, 1 thread)")
    st.add_argument("--repeats", type=int, default=1)
    st.add_argument("--baseline", help="a checkout whose collector also runs, alternating, in the same stack")
    st.add_argument("--name", default="stack", help="result file name (results/NAME.json)")

    sub.add_parser("smoke", add_help=False, help="CI guard (see --help)")
    sub.add_parser("micro", add_help=False, help="pytest-benchmark microbenchmarks (extra arguments go to pytest)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _import_benchmarks()
    if argv[:1] == ["load"]:
        import load

        return load.main(argv[1:])
    if argv[:1] == ["smoke"]:
        import smoke

        return smoke.main(argv[1:])
    if argv[:1] == ["micro"]:  # the rest goes to pytest
        return subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                str(BENCHMARKS / "test_micro.py"),
                "--benchmark-only",
                "-p",
                "no:cacheprovider",
                *argv[1:],
            ],
            cwd=BENCHMARKS.parent,
        )
    args = build_parser().parse_args(argv)
    args.command_line = "eventpipe bench " + " ".join(argv)
    import scenarios

    if args.scenario == "cluster":
        import cluster

        cluster.scenario_cluster(args)
        return 0
    scenarios.SCENARIOS[args.scenario](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
