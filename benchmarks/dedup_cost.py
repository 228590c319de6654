"""The messageId lookup's cost as ``message_keys`` grows: asking the store about every key against asking only
about those the in-memory filters may hold (processors/recent_keys.py).

``message_keys`` keeps a week of keys. Stored keys are generated straight into it (random 64-bit keys over 12
partitions, received within the last 20 minutes); each lookup is ``EventWriter._drop_seen`` on a micro-batch of
50,000 fresh events (``--retries``, 0.1 %, of them retries of stored ids, in their partition), on CPU 0, process
CPU, median of 5, both ways in turn.

    python benchmarks/dedup_cost.py [--sizes 300000 1000000 3000000 12000000] [--retries 0.001]

writes results/dedup-cost.json and dedup-cost.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402

from harness import RESULTS  # noqa: E402
from test_micro import _records  # noqa: E402

from eventpipe.processors import rows  # noqa: E402
from eventpipe.processors.writer import EventWriter  # noqa: E402
from eventpipe.progress import Progress  # noqa: E402
from eventpipe.settings import Settings  # noqa: E402
from eventpipe.store import Store  # noqa: E402

BATCH = 50_000
ROUNDS = 5
CHUNK = 1_000_000


def fill(store: Store, start: int, end: int, now_ms: int, rng: random.Random) -> None:
    """Keys number ``start`` to ``end`` (their offsets, and their insert tokens: each insert its own)."""
    made = start
    while made < end:
        n = min(CHUNK, end - made)
        rows_ = pa.table(
            {
                "kafka_partition": pa.array([i % 12 for i in range(n)], pa.uint16()),
                "key": pa.array([rng.getrandbits(64) for _ in range(n)], pa.uint64()),
                "kafka_offset": pa.array(range(made, made + n), pa.uint64()),
                "received_at": pa.array(
                    [now_ms - rng.randrange(1_200_000) for _ in range(n)], pa.timestamp("ms", "UTC")
                ),
            }
        )
        store.insert_arrow("message_keys", rows_, token=f"fill/{made}")
        made += n


def batch(now_ms: int, offset: int, stored_ids: list[str], retries: float, rng: random.Random) -> pa.Table:
    """A micro-batch of the bench's events, received at ``now_ms``, its records from ``offset`` on; a share of
    ``retries`` of its rows repeat the id of the same row of ``stored_ids`` (same layout: same partition)."""
    events = rows.explode([(p, o + offset, v) for p, o, v in _records(BATCH)]).events
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(events.num_rows)]
    for i in rng.sample(range(len(ids)), int(retries * len(ids))) if stored_ids else ():
        ids[i] = stored_ids[i]
    events = events.set_column(events.schema.get_field_index("message_id"), "message_id", pa.array(ids))
    received = pa.array([now_ms] * events.num_rows, pa.timestamp("ms", "UTC"))
    return events.set_column(events.schema.get_field_index("received_at"), "received_at", received)


def _pairs(events: pa.Table):
    from eventpipe.processors.recent_keys import typed_view

    keys = pa.Array.from_buffers(pa.uint64(), events.num_rows, [None, pa.py_buffer(rows.message_keys(events))])
    return typed_view(events.column("kafka_partition"), "H"), typed_view(keys, "Q")


def cpu(fn, *args) -> float:
    t0 = time.process_time()
    fn(*args)
    return time.process_time() - t0


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[300_000, 1_000_000, 3_000_000, 12_000_000])
    ap.add_argument("--retries", type=float, default=0.001, help="share of a batch's events that are retries")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    rng = random.Random(12)
    now_ms = int(time.time() * 1000)
    out = []
    with tempfile.TemporaryDirectory(prefix="eventpipe-dedup-") as tmp:
        store = Store(Settings.from_env({}, data_dir=Path(tmp)))
        store.migrate()
        # ids stored through events, so their keys are real ones a retry can hit
        seed = batch(now_ms - 60_000, 10**9, [], 0, rng)
        store.insert_arrow("events", seed, token="seed")
        stored_ids = seed.column("message_id").to_pylist()
        have = seed.num_rows
        progress = Progress(sys.stderr)
        for size in sorted(args.sizes):
            fill(store, have, size, now_ms, rng)
            have = size
            full, filtered = EventWriter(store, "events.raw"), EventWriter(store, "events.raw")
            t0 = time.process_time()
            loaded = filtered.recent.warm(list(range(12)), filtered.stored_keys)
            warm_s = time.process_time() - t0
            b = batch(now_ms, 2 * 10**9, stored_ids, args.retries, rng)
            times = {"full": [], "filtered": []}
            for _ in range(ROUNDS):
                for name, w in (("full", full), ("filtered", filtered)):
                    times[name].append(cpu(w._drop_seen, b))
            kept_full, kept_filtered = full._drop_seen(b)[0].num_rows, filtered._drop_seen(b)[0].num_rows
            row = {
                "stored_keys": size,
                "full_us_per_event": round(statistics.median(times["full"]) / b.num_rows * 1e6, 3),
                "filtered_us_per_event": round(statistics.median(times["filtered"]) / b.num_rows * 1e6, 3),
                "same_rows_kept": kept_full == kept_filtered,
                "dropped": b.num_rows - kept_filtered,
                "keys_asked_filtered": filtered.recent.maybe_stored(*_pairs(b)).count(1),
                "warm_up_cpu_s": round(warm_s, 2),
                "warm_up_keys": loaded,
                "filter_mb": round(filtered.recent.nbytes / 1e6, 1),
            }
            out.append(row)
            progress.update(
                f"dedup cost: {size:,} keys: full {row['full_us_per_event']} µs/event, "
                f"filtered {row['filtered_us_per_event']} µs/event"
            )
        progress.done()
        store.close()
    doc = {
        "scenario": "dedup-cost",
        "command": "python benchmarks/dedup_cost.py " + " ".join(sys.argv[1:]),
        "retries": args.retries,
        "unit": f"µs CPU per event of one {BATCH:,}-event micro-batch's lookup (median of {ROUNDS}, CPU 0)",
        "runs": out,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dedup-cost.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(out, RESULTS / "dedup-cost.png")
    return doc


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["stored_keys"] / 1e6 for r in runs]
    ax.plot(x, [r["full_us_per_event"] for r in runs], "o-", label="every key asked (before)")
    ax.plot(x, [r["filtered_us_per_event"] for r in runs], "o-", label="only keys the filters may hold")
    ax.set_xlabel("keys in message_keys (millions)")
    ax.set_ylabel("µs CPU per event")
    ax.set_title("messageId lookup of a 50,000-event micro-batch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
