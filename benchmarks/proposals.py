"""Measured proposals for files this benchmark work does not own (processors/rows.py, schemas/registry.py).

Each proposal is applied here by monkeypatching, its output is checked to be *identical* to
the current code's (the exactly-once design needs a deterministic ``explode``), and its
speed-up is measured on the same realistic bundles as the microbenchmarks, in one run,
interleaved, medians of CPU time.

    python benchmarks/proposals.py            # writes results/proposals.json

1. ``ip-cache``: ``processors.rows.anonymize_ip`` is a pure function of (ip, mode) and is called
   once per event with the request's address (the same for every event of a request, and
   for every request of a device): memoise it (``functools.lru_cache(maxsize=65536)``).
2. ``schema-fast-path``: ``schemas.registry.violation`` runs ``best_match(iter_errors(...))``
   for every track event, which builds the error machinery even when the event is valid:
   ask ``validator.is_valid(properties)`` first and only look for the best error when it fails.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jsonschema  # noqa: E402

import processors.rows as rows  # noqa: E402
from schemas import registry  # noqa: E402
from test_micro import _records  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ORIGINAL = {"anonymize_ip": rows.anonymize_ip, "violation": registry.violation}


def fast_violation(event: str, properties: dict) -> str | None:
    entry = registry.validators().get(event)
    if entry is None or entry[1].is_valid(properties):
        return None
    error = jsonschema.exceptions.best_match(entry[1].iter_errors(properties))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "properties"
    return f"{event} v{entry[0]}: {where}: {error.message}"[:500]


def apply(names: set[str]) -> None:
    rows.anonymize_ip = (functools.lru_cache(maxsize=65536)(ORIGINAL["anonymize_ip"]) if "ip-cache" in names
                         else ORIGINAL["anonymize_ip"])
    registry.violation = fast_violation if "schema-fast-path" in names else ORIGINAL["violation"]


def cpu_seconds(fn, records) -> float:
    t = time.process_time()
    fn(records)
    return time.process_time() - t


def main() -> int:
    records = _records(10_000)
    variants = {"current": set(), "ip-cache": {"ip-cache"}, "schema-fast-path": {"schema-fast-path"},
                "both": {"ip-cache", "schema-fast-path"}}
    apply(set())
    reference = rows.explode(records)
    for name, v in variants.items():
        apply(v)
        got = rows.explode(records)
        assert got.events.equals(reference.events) and got.rejected.equals(reference.rejected), name
    times = {name: [] for name in variants}
    for _ in range(7):
        for name, v in variants.items():
            apply(v)
            times[name].append(cpu_seconds(rows.explode, records))
    apply(set())
    med = {n: statistics.median(t) for n, t in times.items()}
    out = {n: {"cpu_ms_per_10k_events": round(1000 * m, 1), "events_per_cpu_second": round(10_000 / m),
               "speedup": round(med["current"] / m, 2)} for n, m in med.items()}
    for n, r in out.items():
        print(f"{n:18s} {r['cpu_ms_per_10k_events']:7.1f} ms / 10k events  {r['events_per_cpu_second']:7d} ev/s  "
              f"x{r['speedup']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "proposals.json").write_text(json.dumps({
        "command": "python benchmarks/proposals.py", "what": "processors.rows.explode on 10k realistic events, "
        "output checked identical to the current code; medians of 7 interleaved rounds of CPU time",
        "results": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
