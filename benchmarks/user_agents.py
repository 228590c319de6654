"""The cost of the user-agent columns: explode() CPU per event with ua-parser, and with its parse replaced
by constants, in one run (best of 5 rounds each, the parse cache emptied before every round).

    python benchmarks/user_agents.py        # writes results/user-agents.json
"""

import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_micro import BODIES
from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
from eventpipe.processors import rows, user_agents

rng = random.Random(3)


def ua(i):  # ~2,000 distinct realistic strings: browsers and app HTTP stacks by version
    kind = i % 4
    if kind == 0:
        return f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_{i % 7} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{i % 7} Mobile/15E148 Safari/604.1"
    if kind == 1:
        return f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{100 + i % 30}.0.{i % 5000}.{i % 200} Safari/537.36"
    if kind == 2:
        return f"Dalvik/2.1.0 (Linux; U; Android {10 + i % 5}; Pixel {i % 9} Build/UQ1A.{i})"
    return f"ShopApp/{i % 40}.{i % 9} (iPhone; iOS 17.{i % 5}; Scale/3.00)"


def records(distinct):
    recs = []
    for r in range(1000):
        reqs = [
            AcceptedRequest(
                "bench", 1_764_000_000_000, "10.0.0.1", ua(rng.randrange(distinct)), BODIES[(r * 6 + k) % len(BODIES)]
            )
            for k in range(6)
        ]
        recs.append((r % 12, r, encode_bundle(reqs)))
    return recs  # 60,000 events


real = user_agents.parse
out = {}
for distinct in (500, 5000):
    recs = records(distinct)
    for name, fn in (("without", lambda s: user_agents.EMPTY), ("with", real)):
        best = 1e9
        for _ in range(5):
            real.cache_clear()
            rows.user_agents.parse = fn
            t = time.process_time()
            rows.explode(recs)
            best = min(best, time.process_time() - t)
        out[(distinct, name)] = best / 60000 * 1e6
    rows.user_agents.parse = real
result = {
    "command": "python benchmarks/user_agents.py",
    "events_per_round": 60000,
    "what": "explode() CPU µs per event (process time, best of 5), 6 requests of 10 events per record",
    "us_per_event": {f"{d} distinct user agents, {name}": round(v, 2) for (d, name), v in out.items()},
}
(HERE / "results" / "user-agents.json").write_text(json.dumps(result, indent=1) + "\n")
for k, v in result["us_per_event"].items():
    print(f"{k:>40}: {v:.2f} µs/event")
