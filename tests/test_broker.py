"""The local broker launcher: a real Kafka that starts, keeps data across a restart, and stops."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventpipe.broker import BrokerError, KafkaBroker, _alive, _port_open, resolve_jars
from tests.conftest import make_settings
from tests.kafka import produce, read_to_end


def test_start_restart_from_cache_and_stop(tmp_path):
    settings = make_settings(tmp_path)
    broker = KafkaBroker(settings)
    started = time.monotonic()
    broker.start()
    cold = time.monotonic() - started
    try:
        assert _port_open(broker.port)
        asyncio.run(produce(broker.bootstrap, settings.topic_raw, b"survives a restart"))
    finally:
        assert broker.stop() is not None
    assert not _port_open(broker.port), "the broker still listens after stop()"

    # Second start: the jars come from the cache (no mvn) and the data directory is reused.
    assert (resolve_jars(settings).joinpath(".complete")).exists()
    started = time.monotonic()
    broker.start()
    warm = time.monotonic() - started
    try:
        assert asyncio.run(read_to_end(broker.bootstrap, settings.topic_raw, [0])) == [b"survives a restart"]
    finally:
        broker.stop()
    print(f"broker start: first {cold:.1f}s, restart {warm:.1f}s")
    assert warm < 60


def test_missing_tools_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn on it
    monkeypatch.delenv("JAVA_HOME", raising=False)
    settings = make_settings(tmp_path, cache_dir=tmp_path / "empty-cache")
    with pytest.raises(BrokerError, match="`mvn` was not found"):
        resolve_jars(settings)
    with pytest.raises(BrokerError, match="`java` was not found"):
        KafkaBroker(settings)._java(tmp_path)


def test_busy_port_is_refused(tmp_path, broker):
    settings = make_settings(tmp_path, kafka_bootstrap=broker.bootstrap)
    with pytest.raises(BrokerError, match="already in use"):
        KafkaBroker(settings).start()


def test_a_broker_left_by_a_killed_run_is_stopped_on_start(tmp_path):
    settings = make_settings(tmp_path)
    orphan = KafkaBroker(settings).start()
    orphan_pid = orphan.proc.pid
    orphan.proc = None  # as if the process that started it died without stopping it
    broker = KafkaBroker(settings).start()
    try:
        assert broker.proc.pid != orphan_pid
        assert not _alive(orphan_pid)
    finally:
        broker.stop()
