"""``eventpipe.processors.rows.explode`` of another commit against the working tree's, interleaved in one process.

Machines here are shared and noisy; two runs minutes apart are not comparable, rounds interleaved in one
process are. Both explode the same realistic records (``test_micro._records``: 10-event requests, 6 per
record); the best round of each is reported, in µs of process time per event, and the ratio.

    python benchmarks/explode_ab.py 716994b            # that commit's rows.py vs the working tree's
    python benchmarks/explode_ab.py 716994b --rounds 21 --events 10000
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_micro import _records  # noqa: E402


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit whose processors/rows.py is the baseline")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    old_source = subprocess.run(
        ["git", "show", f"{args.rev}:processors/rows.py"], cwd=HERE.parent, check=True, capture_output=True, text=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(old_source)
    modules = {
        args.rev: _load("rows_baseline", Path(f.name)),
        "working tree": _load("rows_now", HERE.parent / "processors" / "rows.py"),
    }
    records = _records(args.events)
    best = {name: float("inf") for name in modules}
    for _ in range(args.rounds):
        for name, module in modules.items():
            started = time.process_time()
            module.explode(records, module.Rules())
            best[name] = min(best[name], time.process_time() - started)
    for name, seconds in best.items():
        print(f"{name:>14}: {seconds / args.events * 1e6:6.2f} µs/event")
    base, now = best.values()
    print(f"{'ratio':>14}: {now / base:.2f} (working tree / {args.rev})")


if __name__ == "__main__":
    main()
