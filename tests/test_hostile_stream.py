"""Hostile events mixed into ordinary traffic, through the real collector, broker, processor and chDB.

The property (issue "No event can stop the pipeline"): every event the collector accepts ends as
exactly one row of ``events`` or of ``events_rejected``, and valid events sent after the hostile ones
are stored within seconds; nothing stalls. The hostile events put JSON of every type in every field
of every call type, in ``context`` and its nested objects too, with dates of every kind.
"""

from __future__ import annotations

import random
import time
import uuid

import orjson

from eventpipe.verify import verify
from tests.conftest import query, wait_for
from tests.http import post

KEY, PROJECT = "test-key-hostile", "hostile"
VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    18446744073709551615,
    1.5,
    -0.0,
    1.7976931348623157e308,
    1e-300,
    "",
    "x",
    "ünï🎉\u202e\u0000",
    "2026-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31",
    "2299-12-31T23:59:59.999Z",
    "1899-12-31T23:59:59Z",
    "next tuesday",
    "1767225600000",
    [],
    [None, {"a": [1]}],
    {},
    {"name": {"deep": [1, 2]}, "version": 3},
    {"a": {"b": {"c": {}}}},
]
FIELDS = [
    "event",
    "name",
    "userId",
    "anonymousId",
    "timestamp",
    "sentAt",
    "originalTimestamp",
    "properties",
    "traits",
    "context",
    "integrations",
    "groupId",
    "previousId",
    "category",
    "channel",
]
CONTEXT = [
    "app",
    "os",
    "device",
    "library",
    "page",
    "ip",
    "locale",
    "timezone",
    "userAgent",
    "campaign",
    "network",
    "screen",
    "traits",
]
NESTED = ["name", "version", "build", "model", "manufacturer", "path", "url", "referrer", "id"]
TYPES = ["track", "identify", "page", "screen", "group", "alias"]


def hostile_event(rng: random.Random, run: str, n: int) -> dict:
    """An event the collector accepts (its call's required fields are there) with junk everywhere else."""
    kind = rng.choice(TYPES)
    event = {"type": kind, "userId": f"u-{n}", "event": f"hostile {run}", "groupId": "g", "previousId": "p"}
    for name in rng.sample(FIELDS, 4):
        if name in ("userId", "event", "groupId", "previousId"):
            continue  # what the call requires stays: a refused request is the collector's test, not this one
        event[name] = rng.choice(VALUES)
    if rng.random() < 0.7:
        event["context"] = {
            c: rng.choice(VALUES) if rng.random() < 0.5 else {k: rng.choice(VALUES) for k in rng.sample(NESTED, 3)}
            for c in rng.sample(CONTEXT, 5)
        }
    # messageIds are unique or of the wrong type: a repeated valid id is a client retry, dropped by design
    event["messageId"] = rng.choice([f"{run}-{n}", f"{run}-{n}", None, {"id": n}, [n], True])
    if event["messageId"] is None:
        del event["messageId"]
    return event


def test_hostile_events_are_stored_or_rejected_and_never_stall_the_stream(stack):
    run = uuid.uuid4().hex
    rng = random.Random(20261201)
    url = stack.collector_url + "/v1/batch"
    accepted = n = 0
    for r in range(40):
        events = [hostile_event(rng, run, n + i) for i in range(10)]
        n += len(events)
        body = orjson.dumps({"batch": events, "sentAt": rng.choice(VALUES), "context": rng.choice(VALUES)})
        status, _, answer = post(url, body, KEY)
        assert status == 200, answer  # every required field is there: the rest is the processor's to judge
        accepted += len(events)

    # ordinary events sent after all of the hostile ones
    valid_after = [
        {"type": "track", "event": f"after {run}", "userId": f"v{i}", "messageId": f"after-{run}-{i}"}
        for i in range(20)
    ]
    started = time.monotonic()
    assert post(url, orjson.dumps({"batch": valid_after}), KEY)[0] == 200
    assert wait_for(
        lambda: query(stack, f"SELECT count() FROM events WHERE event = 'after {run}'")[0][0] == 20, timeout=20
    ), "valid events after hostile ones were not stored"
    print(f"valid events after {accepted} hostile ones stored in {time.monotonic() - started:.2f} s")

    def accounted():
        # the project is this test's alone
        stored = query(stack, f"SELECT count() FROM events WHERE project = '{PROJECT}' AND event != 'after {run}'")
        rejected = query(stack, f"SELECT count() FROM events_rejected WHERE project = '{PROJECT}'")
        return stored[0][0], rejected[0][0]
        return stored, rejected

    assert wait_for(lambda: sum(accounted()) == accepted, timeout=20), (accounted(), accepted)
    stored, rejected = accounted()
    assert stored and rejected, (stored, rejected)
    reasons = dict(
        query(stack, f"SELECT reason, count() FROM events_rejected WHERE project = '{PROJECT}' GROUP BY reason")
    )
    assert "processing_error" not in reasons, reasons  # a processing_error is a bug in judging: say which
    assert set(reasons) <= {
        "invalid_field",
        "too_old",
        "no_user_anon_id",
        "missing_event_name",
        "invalid_event",
        "missing_previous_id",
        "missing_group_id",
    }, reasons
    assert all(check.ok for check in verify(lambda sql: query(stack, sql)))
