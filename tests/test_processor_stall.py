"""A processor that cannot write is loud and stoppable (processors/health.py), against the real broker and chDB.

While the store refuses writes (the failpoint file), the processor retries the
same micro-batch: ``/readyz`` must turn 503 once that lasted
``processor_stall_seconds`` and 200 again after the next successful write, the
gauges must count the failed attempts and the age of the oldest unwritten
record, and the dashboard must say "stalled". SIGTERM in the middle of the
retries must end the process within seconds and commit nothing that was not
written: after a restart with the store healed, every event is stored exactly
once.
"""

from __future__ import annotations

import time
import uuid

import orjson

from eventpipe.processors.health import WriteHealth
from tests.conftest import private_stack, query, wait_for
from tests.http import get, post
from tests.test_dashboard import CHROMIUM, _chromium, _Texts

STALL = 4.0
REQUESTS, EVENTS = 20, 10


def test_write_health_counts_failures_and_ages_the_batch_in_hand():
    now = [1000.0]
    health = WriteHealth(stall_seconds=5, clock=lambda: now[0])
    assert health.state()["stalled"] is False and health.oldest_unwritten_seconds() == 0
    health.started(oldest_timestamp=990.0)
    health.failed(RuntimeError("store down"))
    now[0] += 4.5
    assert (health.failures, health.stalled(), health.oldest_unwritten_seconds()) == (1, False, 14.5)
    health.failed(RuntimeError("store down"))
    now[0] += 0.5
    assert health.stalled() and health.state()["consecutive_failures"] == 2
    assert health.state()["last_error"] == "RuntimeError: store down"
    health.written()
    assert (health.failures, health.stalled(), health.oldest_unwritten_seconds()) == (0, False, 0)


def _send(stack, run: str, round_: int) -> None:
    for i in range(REQUESTS):
        body = orjson.dumps(
            {
                "batch": [
                    {
                        "type": "track",
                        "event": f"stall {run}",
                        "anonymousId": f"d{i}",
                        "messageId": f"{run}-{round_}-{i}-{j}",
                    }
                    for j in range(EVENTS)
                ]
            }
        )
        assert post(stack.collector_url + "/v1/batch", body, "test-key-acme")[0] == 200  # Kafka still takes them


def _readyz(web: str) -> tuple[int, dict]:
    status, _, raw = get(web + "/readyz")
    return status, orjson.loads(raw)


def _gauge(web: str, name: str) -> float:
    _, _, raw = get(web + "/metrics")
    (value,) = [float(line.split()[-1]) for line in raw.decode().splitlines() if line.startswith(name + " ")]
    return value


def _stored(stack, run: str) -> list:
    return query(stack, f"SELECT count(), uniqExact(message_id) FROM events WHERE event = 'stall {run}'")[0]


def _wait_for_stall(web: str) -> list[tuple[int, dict]]:
    samples: list[tuple[int, dict]] = []

    def stalled() -> bool:
        samples.append(_readyz(web))
        return samples[-1][0] == 503

    assert wait_for(stalled, timeout=60, interval=0.1), samples[-3:]
    for status, state in samples:  # 503 exactly when writes failed without a break for the configured time
        assert (status == 503) == (state["failing_seconds"] >= STALL) == state["stalled"], (status, state)
    return samples


def test_a_stalled_processor_is_loud_and_sigterm_stops_it_without_committing(tmp_path):
    run = uuid.uuid4().hex[:10]
    with private_stack(tmp_path, processor_stall_seconds=STALL, processor_session_timeout=6.0) as stack:
        web = f"http://127.0.0.1:{stack.settings.processor_web_port}"
        failpoint = stack.settings.store_failpoint
        assert get(web + "/healthz")[0] == 200
        assert _readyz(web)[0] == 200

        # 1. the store fails: retries, then readiness fails; the gauges and the dashboard say why
        failpoint.touch()
        _send(stack, run, 1)
        samples = _wait_for_stall(web)
        assert any(s == 200 and state["consecutive_failures"] > 0 for s, state in samples), "503 at once"
        assert _gauge(web, "eventpipe_processor_consecutive_write_failures") >= 2
        assert _gauge(web, "eventpipe_processor_oldest_unwritten_seconds") >= STALL  # records wait since before
        assert get(web + "/healthz")[0] == 200  # alive: a stall is not a reason to restart
        status, _, raw = get(web + "/dashboard/data")
        writes = orjson.loads(raw)["writes"]
        assert status == 200 and writes["stalled"] and "store writes are failing" in writes["last_error"]
        if CHROMIUM:  # the page, as a browser renders it
            out = _chromium(web + "/dashboard", tmp_path, "--dump-dom")
            parser = _Texts()
            parser.feed(out.stdout.decode())
            assert parser.texts.get("writes", "").startswith("stalled: writes to ClickHouse have failed for"), (
                parser.texts.get("writes")
            )
        assert _stored(stack, run) == [0, 0]

        # 2. healed: the same batch goes in, readiness and the gauges return
        failpoint.unlink()
        assert wait_for(lambda: _readyz(web)[0] == 200, timeout=60)
        assert wait_for(lambda: _stored(stack, run) == [REQUESTS * EVENTS] * 2, timeout=60)
        assert _gauge(web, "eventpipe_processor_consecutive_write_failures") == 0
        assert _gauge(web, "eventpipe_processor_oldest_unwritten_seconds") == 0

        # 3. failing again, SIGTERM in the middle of the retries: a prompt exit, nothing committed
        failpoint.touch()
        _send(stack, run, 2)
        _wait_for_stall(web)
        started = time.monotonic()
        code = stack.processor.stop(timeout=30)
        took = time.monotonic() - started
        print(f"SIGTERM to exit while stalled: {took:.1f}s (exit code {code})")
        assert code == 0 and took < 10, (code, took)  # not the SIGKILL after 30 s
        assert "abandoned a micro-batch" in (tmp_path / "stack.log").read_text()

        # 4. restarted on a healed store: the abandoned batch comes again, every event once
        failpoint.unlink()
        stack.start_processor()
        assert wait_for(lambda: _stored(stack, run) == [2 * REQUESTS * EVENTS] * 2, timeout=90), _stored(stack, run)
        time.sleep(1)
        assert _stored(stack, run) == [2 * REQUESTS * EVENTS] * 2
