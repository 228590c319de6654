"""Per-core capacities for `eventpipe plan`: the newest benchmark result that measured each, else a fallback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from eventpipe.plan.assumptions import FALLBACKS, RESULT_KEYS


@dataclasses.dataclass
class Capacities:
    collector_rps_per_core: float
    processor_eps_per_core: float
    clickhouse_bytes_per_event: float
    kafka_bytes_per_event: float
    sources: dict[str, str]
    bare_server_rps_per_core: float | None = None
    kafka_broker_write_mb_s_per_core: float = FALLBACKS["kafka_broker_write_mb_s_per_core"]


def _find_key(doc, keys: tuple[str, ...]):
    if isinstance(doc, dict):
        for key in keys:
            if isinstance(doc.get(key), (int, float)) and doc[key] > 0:
                return doc[key]
        values = doc.values()
    elif isinstance(doc, list):
        values = doc
    else:
        return None
    for value in values:
        found = _find_key(value, keys)
        if found is not None:
            return found
    return None


def _scenario_value(doc, field: str):
    """Scenario-style results: {"scenario": "collector", "requests_per_sec": N, "cores": 1}."""
    if not isinstance(doc, dict):
        return None
    cores = doc.get("cores") or 1
    if field == "collector_rps_per_core" and doc.get("scenario") == "collector":
        value = doc.get("requests_per_sec") or (doc.get("median") or {}).get("requests_per_sec")
    elif field == "processor_eps_per_core" and doc.get("scenario") == "processor":
        value = doc.get("events_per_sec") or (doc.get("median") or {}).get("events_per_sec")
    else:
        return None
    return value / cores if isinstance(value, (int, float)) and value > 0 else None


def load_capacities(results_dir: Path) -> Capacities:
    """Measured numbers from the benchmark JSON that has them, else the fallbacks.

    A scenario's own result (``collector.json``, ``processor.json``: a name without a ``-``) comes before its
    variants (``collector-c64-window5.json``, ``processor-profile.json``, measured under other conditions),
    then the newest first. File times alone do not say which is newest after a clone, which writes them all
    at once, and a variant is not the figure to size from."""
    files = (
        sorted(Path(results_dir).glob("*.json"), key=lambda p: ("-" in p.stem, -p.stat().st_mtime))
        if Path(results_dir).is_dir()
        else []
    )
    docs = []
    for path in files:
        try:
            docs.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    values, sources = {}, {}
    for field, keys in RESULT_KEYS.items():
        for path, doc in docs:
            value = _find_key(doc, keys) or _scenario_value(doc, field)
            if value is not None:
                values[field], sources[field] = float(value), f"measured: {path}"
                break
        else:
            values[field], sources[field] = FALLBACKS[field], "FALLBACK (no benchmark result has it)"
    bare = None
    for _, doc in docs:
        rsgi = (doc.get("candidates") or {}).get("granian-rsgi") if isinstance(doc, dict) else None
        if rsgi:
            bare = (rsgi.get("median") or {}).get("requests_per_sec")
            break
    return Capacities(**values, sources=sources, bare_server_rps_per_core=bare)
