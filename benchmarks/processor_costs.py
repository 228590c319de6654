"""Where the processor's CPU goes, per event and per micro-batch, measured in one process.

``eventpipe bench processor`` gives the outside view (events per CPU-second of the whole
processor); this script splits that time into the parts issue 12 asks about, on the same
realistic batches (``eventpipe.demo``, 10 events per request, 6 requests per Kafka record):

  explode_reference   processors.rows_reference.explode: the per-event Python specification
  explode_native      processors.rows.explode: the Rust extension eventpipe._explode
  insert_ceiling      the chDB insert of the pre-built Arrow rows, with every view (rollups,
                      message_keys): what no processor can go below
  dedup               EventWriter._drop_seen: the messageId lookup against message_keys
  micro_batch_fixed   one small micro-batch through EventWriter.write, split into ledger row,
                      dedup query and inserts (the fixed cost the issue saw: 1,290 events, 0.77 s)

CPU is process CPU (``time.process_time``: every thread, chDB's included), so numbers are ratios
from one run. ``python benchmarks/processor_costs.py`` writes results/processor-costs.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_micro import _records  # noqa: E402

from eventpipe.settings import Settings  # noqa: E402
from eventpipe.store import Store  # noqa: E402

EVENTS = 100_000
ROUNDS = 3


def cpu(fn, *args):
    """(CPU seconds of the process, result) of one call."""
    t0 = time.process_time()
    out = fn(*args)
    return time.process_time() - t0, out


def best(fn, *args, rounds: int = ROUNDS):
    runs = [cpu(fn, *args) for _ in range(rounds)]
    return min(r[0] for r in runs), runs[-1][1]


def main() -> dict:
    from eventpipe.processors import rows as native, rows_reference
    from eventpipe.processors.writer import EventWriter

    records = _records(EVENTS)
    doc: dict = {"events": EVENTS, "rounds": ROUNDS, "unit": "µs CPU per event (best of rounds)"}
    t_ref, ref = best(rows_reference.explode, records)
    doc["explode_reference_us"] = round(t_ref / EVENTS * 1e6, 2)
    t_nat, nat = best(native.explode, records)
    doc["explode_native_us"] = round(t_nat / EVENTS * 1e6, 2)
    doc["explode_speedup"] = round(t_ref / t_nat, 1)
    table = ref.events
    with tempfile.TemporaryDirectory(prefix="eventpipe-costs-") as tmp:
        store = Store(Settings.from_env({}, data_dir=Path(tmp)))
        store.migrate()
        tokens = iter(range(10**9))
        t_ins, _ = best(lambda: store.insert_arrow("events", table, token=f"costs/0/{next(tokens)}"))
        doc["insert_ceiling_us"] = round(t_ins / EVENTS * 1e6, 2)
        writer = EventWriter(store, "events.raw")
        t_dd, kept = best(writer._drop_seen, table)
        doc["dedup_us"] = round(t_dd / EVENTS * 1e6, 2)
        # a small micro-batch (~1,290 events), each part alone; fresh offsets so nothing is deduplicated
        small = [(p, o + 10_000_000, v) for p, o, v in _records(1_290)]
        parts = {}
        ranges = [[r] for r in small]
        token = writer.token(ranges)
        parts["ledger_row_s"], _ = cpu(writer._record, ranges, token)
        parts["explode_s"], exploded = cpu(native.explode, small, writer.rules)
        parts["dedup_s"], (ev, _) = cpu(writer._drop_seen, exploded.events)
        parts["insert_s"], _ = cpu(store.insert_arrow, "events", ev, token)
        t_all, _ = cpu(writer.write, [(p, o + 20_000_000, v) for p, o, v in small])
        parts["write_total_s"] = t_all
        doc["micro_batch_1290_events"] = {k: round(v, 4) for k, v in parts.items()}
        store.close()
    doc["budget_us_at_150k"] = round(1e6 / 150_000, 2)
    return doc


def ceiling(path: str, batch_rows: int) -> dict:
    """``eventpipe bench processor``'s in-run ceiling on its own bundles (a msgpack list of Kafka record
    values), in micro-batches of ~``batch_rows`` events: first each batch's native explode (timed per call),
    then the inserts of those pre-built rows into a fresh store, back to back, timed as the whole process's
    CPU from the first insert until the store runs no merge. So the background merges the inserts cause
    count here as they do in the processor's own figure (timing each insert call alone left out the merges
    running between the calls: 147-197k events per CPU-second at 1M events where the processor read 49-66k).
    Also the reference explode on the first 20,000 events, for the before/after of the same run."""
    import msgspec

    from processor_bench import settle_merges

    from eventpipe.processors import rows, rows_reference
    from eventpipe.processors.rows import Rules

    values = msgspec.msgpack.decode(Path(path).read_bytes())
    records = [(i % 12, i, v) for i, v in enumerate(values)]
    per_record = max(1, rows.explode(records[:1]).events.num_rows)
    step = max(1, batch_rows // per_record)
    chunks = [records[i : i + step] for i in range(0, len(records), step)]
    t = {"explode": 0.0, "insert": 0.0}
    built = []
    rules = Rules(topic="events.raw")  # the processor's defaults
    for chunk in chunks:
        dt, exploded = cpu(rows.explode, chunk, rules)
        t["explode"] += dt
        built.append(exploded.events)
    events = sum(b.num_rows for b in built)
    with tempfile.TemporaryDirectory(prefix="eventpipe-ceiling-") as tmp:
        store = Store(Settings.from_env({}, data_dir=Path(tmp)))
        store.migrate()
        t0 = time.process_time()
        for n, table in enumerate(built):
            store.insert_arrow("events", table, f"ceiling/{n}")
        settle_merges(lambda: store.query("SELECT count() FROM system.merges").rows[0][0])
        t["insert"] = time.process_time() - t0
        stored = store.query("SELECT count() FROM events").rows[0][0]
        store.close()
    sample, sampled = [], 0
    for record in records:
        if sampled >= 20_000:
            break
        sample.append(record)
        sampled += per_record
    t_ref, _ = cpu(rows_reference.explode, sample, rules)
    t_nat, _ = cpu(rows.explode, sample, rules)
    return {
        "events": events,
        "stored": stored,
        "micro_batches": len(chunks),
        "rows_per_micro_batch": step * per_record,
        "insert_events_per_cpu_second": round(events / t["insert"], 1),
        "us_per_event": {k: round(v / events * 1e6, 3) for k, v in t.items()},
        "explode_reference_vs_native_us_per_event": [round(t_ref / sampled * 1e6, 2), round(t_nat / sampled * 1e6, 2)],
    }


if __name__ == "__main__":
    if "--ceiling" in sys.argv:
        args = sys.argv[1:]
        print(json.dumps(ceiling(args[args.index("--ceiling") + 1], int(args[args.index("--batch-rows") + 1]))))
        sys.exit(0)
    result = main()
    print(json.dumps(result, indent=1))
    out = Path(__file__).resolve().parent / "results" / "processor-costs.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
