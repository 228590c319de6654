"""Shared fixtures: one real Kafka broker per test session, and the pipeline running on it.

The broker is the same launcher ``eventpipe up`` uses (jars from the user
cache, resolved with mvn on first use); the store is a real chDB directory.
Ports are picked free, so a developer's own running stack does not collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.parse
import urllib.request

import orjson
import pytest

from eventpipe.broker import KafkaBroker
from eventpipe.settings import Settings
from eventpipe.stack import LocalStack

WRITE_KEYS = {"test-key-acme": "acme", "test-key-beta": "beta", "test-key-hostile": "hostile"}


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and, with ``pair``, the one after it free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def make_settings(tmp_path, **overrides) -> Settings:
    values = dict(
        data_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{free_port(pair=True)}",
        collector_port=free_port(),
        processor_web_port=free_port(),
        write_keys=",".join(f"{k}={p}" for k, p in WRITE_KEYS.items()),
        processor_batch_seconds=0.2,
        schema_modes="beta=enforce,*=warn",
        store_failpoint=tmp_path / "store-failpoint",  # tests create this file to make store writes fail
    )
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("eventpipe"))


@pytest.fixture(scope="session")
def broker(settings):
    broker = KafkaBroker(settings).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def stack(settings, broker):
    with LocalStack(settings, out=None, broker=broker) as running:
        yield running


@contextlib.contextmanager
def private_stack(tmp_path, **overrides):
    """A whole stack on its own broker, for tests that kill or restart parts of it; logs in tmp_path/stack.log."""
    settings = make_settings(tmp_path, **overrides)
    with stack_on(KafkaBroker(settings).start(), tmp_path) as stack:
        yield stack


@contextlib.contextmanager
def stack_on(broker, tmp_path):
    """Processor and collector on a started ``broker`` (one node or a cluster), stopped with it at the end;
    their output in tmp_path/stack.log."""
    log = open(tmp_path / "stack.log", "w")
    stack = LocalStack(broker.settings, out=log, broker=broker)
    try:
        stack.start_processor()
        stack.start_collector()
        yield stack
    finally:
        stack.stop()
        broker.stop()
        log.close()


def query(stack: LocalStack, sql: str) -> list[list]:
    """Rows of ``sql`` through the processor's read-only endpoint."""
    url = stack.query_url + "?" + urllib.parse.urlencode({"sql": sql})
    with urllib.request.urlopen(url, timeout=30) as resp:
        return orjson.loads(resp.read())["rows"]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run(coro):
    return asyncio.run(coro)
