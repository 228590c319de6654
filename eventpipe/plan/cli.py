"""`eventpipe plan`'s command line: read the options, size, simulate both days, print, write plan.json/png."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import eventpipe.plan
from eventpipe.plan.assumptions import TICK_S
from eventpipe.plan.capacities import load_capacities
from eventpipe.plan.report import plot, report
from eventpipe.plan.simulation import simulate
from eventpipe.plan.sizing import Inputs, size
from eventpipe.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipe plan", description=eventpipe.plan.__doc__.split("\n\n")[0])
    parser.add_argument("--peak-rps", type=float, default=15000, help="peak collector requests/s (default 15000)")
    parser.add_argument("--events-per-request", type=float, default=10)
    parser.add_argument("--events-per-day", type=float, help="daily volume (default: peak x 86400 x 0.4)")
    parser.add_argument("--retention-days", type=float, default=30, help="ClickHouse raw events retention")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="benchmark JSON dir")
    parser.add_argument("--out", type=Path, default=Path("deploy/k8s/plan"), help="where plan.png/plan.json go")
    parser.add_argument("--surge", type=float, default=2.0, help="max replicas cover this multiple of the peak")
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--max-disk-per-node-tb", type=float, default=8.0)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = Inputs(
        peak_rps=args.peak_rps,
        events_per_request=args.events_per_request,
        events_per_day=args.events_per_day,
        retention_days=args.retention_days,
        surge=args.surge,
        zones=args.zones,
        max_disk_per_node_tb=args.max_disk_per_node_tb,
    )
    if inputs.peak_rps <= 0 or inputs.events_per_request <= 0:
        print("eventpipe plan: --peak-rps and --events-per-request must be positive", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    cap = load_capacities(args.results)
    sizing = size(inputs, cap, settings)
    runs = {"planned day (peak 1x)": 1.0, f"surge day (peak {inputs.surge:g}x)": inputs.surge}
    try:
        sims = {
            title: simulate(inputs, cap, sizing, settings, seed=args.seed, peak_factor=factor)
            for title, factor in runs.items()
        }
    except ValueError as exc:
        print(f"eventpipe plan: {exc}", file=sys.stderr)
        return 2
    print(report(inputs, cap, sizing, {title: sim["summary"] for title, sim in sims.items()}))
    args.out.mkdir(parents=True, exist_ok=True)
    every = 300 // TICK_S  # 5-minute points keep the JSON small
    doc = {
        "inputs": dataclasses.asdict(inputs),
        "capacities": dataclasses.asdict(cap),
        "sizing": sizing,
        "simulations": {
            title: {
                "peak_factor": runs[title],
                "summary": sim["summary"],
                "step_s": 300,
                "series": {k: [round(x, 3) for x in v[::every]] for k, v in sim["series"].items()},
            }
            for title, sim in sims.items()
        },
    }
    (args.out / "plan.json").write_text(json.dumps(doc, indent=1) + "\n")
    written = [args.out / "plan.json"]
    if not args.no_plot:
        try:
            plot({title: sim["series"] for title, sim in sims.items()}, sizing, args.out / "plan.png")
            written.append(args.out / "plan.png")
        except ImportError:
            print("eventpipe plan: matplotlib is not installed; no plot (pip install matplotlib)", file=sys.stderr)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
