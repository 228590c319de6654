"""Coverage-guided fuzzing of "bytes of a Kafka record -> rows + rejects" (issue 11, "judging is total").

One input is one control byte, then a payload:

* control bit 0 = 1 ("raw"): the payload is the record's bytes as they are (msgpack decoding, bundle
  structure, whatever a corrupt or forged record holds);
* control bit 0 = 0 ("body"): the payload is the JSON body of an accepted request inside a valid bundle
  (judging). Payloads the collector would refuse are skipped: bodies orjson cannot load (malformed_json)
  and batches with an event orjson cannot re-encode (too_deep, more than 254 levels);
* bits 1-2 pick the schema mode (warn, off, enforce, enforce for the request's project only), bits 3-4 the
  IP mode (truncate, keep, drop, truncate), bit 5 puts the body in the bundle twice (two requests of two
  projects), bits 6-7 are ignored.

The target is the production path, ``eventpipe.processors.rows.explode`` (the native engine of issue 12),
and ``tests.invariants`` also compares its output with the Python specification (``rows_reference``):
a difference between the two is a finding like any other.

``check(data)`` raises on any violation of ``tests.invariants`` (and lets any exception of ``explode``
through): it is both the fuzzer's target and the replay of ``tests/fuzz/corpus`` in tests/test_fuzz.py.

Run (docs/fuzzing.md)::

    PYTHONPATH=. python tests/fuzz/fuzz_explode.py -dict=tests/fuzz/segment.dict -max_total_time=60 \\
        /tmp/fuzz-work tests/fuzz/corpus
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RECEIVED = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the seeds' timestamps are near it
PROJECTS = ("acme", "beta")
SCHEMA_MODES = ("warn", "off", "enforce", "project")
IP_MODES = ("truncate", "keep", "drop", "truncate")
RAW, BODY = 1, 0


def _load() -> None:
    """Import what is fuzzed (inside atheris' instrumentation when run as the fuzzer)."""
    global orjson, Rules, AcceptedRequest, encode_bundle, check_explode
    import orjson
    from eventpipe.processors.rows import Rules
    from eventpipe.schemas.bundle import AcceptedRequest, encode_bundle
    from tests.invariants import check_explode


def rules_of(control: int):
    mode = SCHEMA_MODES[(control >> 1) & 3]
    modes = {"acme": "enforce", "*": "warn"} if mode == "project" else {"*": mode}
    return Rules(schema_modes=modes, ip_mode=IP_MODES[(control >> 3) & 3])


def collector_accepts(body: bytes) -> bool:
    """What the collector stores: JSON orjson loads, with no event deeper than orjson re-encodes."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    batch = doc.get("batch") if isinstance(doc, dict) else None
    if isinstance(batch, list):
        for event in batch:
            try:
                orjson.dumps(event)
            except TypeError:  # orjson.JSONEncodeError
                return False
    return True


def records_of(data: bytes):
    """(records, rules) for one fuzzer input, or None when the input is one the collector never stores."""
    if not data:
        return None
    control, payload = data[0], data[1:]
    rules = rules_of(control)
    if control & 1 == RAW:
        return [(3, 17, payload)], rules
    if not collector_accepts(payload):
        return None
    requests = [AcceptedRequest(PROJECTS[0], RECEIVED, "203.0.113.7", "analytics-python/2.3.2", payload)]
    if control & 32:
        requests.append(AcceptedRequest(PROJECTS[1], RECEIVED + 1234, "2001:db8::7", "", payload))
    return [(3, 17, encode_bundle(requests))], rules


def check(data: bytes) -> None:
    """Raise unless ``explode`` handles this input as issue 11 says."""
    case = records_of(data)
    if case is not None:
        check_explode(*case)


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["eventpipe.processors", "eventpipe.schemas", "tests.invariants"]):
        _load()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
else:
    _load()
