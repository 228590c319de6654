"""The whole pipeline on one machine: broker, processor and collector as child processes.

``eventpipe up`` runs it in the foreground; the integration tests run the same
stack. Each child's output is prefixed with its name; stopping is in the
order that loses nothing: collector (drains and flushes), processor (commits),
then the broker.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from eventpipe.broker import KafkaBroker, KafkaCluster, start_kafka
from eventpipe.settings import Settings


class StackError(RuntimeError):
    pass


class Child:
    """A child process whose output lines are copied, prefixed, to ``out``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], out=sys.stdout):
        self.name = name
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._copy, args=(out,), daemon=True)
        self._pump.start()

    def _copy(self, out) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines = (self.lines + [line])[-200:]
            if out is not None:
                print(f"{self.name:>9} | {line}", file=out, flush=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(timeout=5)
        return self.proc.returncode


def wait_http(url: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise StackError(f"{child.name} exited with {child.proc.returncode}:\n" + "\n".join(child.lines[-30:]))
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise StackError(f"{child.name} was not ready at {url} within {timeout:.0f}s:\n" + "\n".join(child.lines[-30:]))


def eventpipe_command(*args: str) -> list[str]:
    # -P: no working directory on sys.path, so a user's own eventpipe/ or schemas/ folder cannot shadow ours.
    return [sys.executable, "-P", "-m", "eventpipe.cli", *args]


class LocalStack:
    def __init__(self, settings: Settings, out=sys.stdout, broker: KafkaBroker | KafkaCluster | None = None):
        self.settings = settings
        self.out = out
        self.broker = broker
        self._own_broker = broker is None
        self.processor: Child | None = None
        self.collector: Child | None = None
        if broker is not None:
            self._bootstrap_to(broker)

    def _bootstrap_to(self, broker: KafkaBroker | KafkaCluster) -> None:
        """Children bootstrap to every node, so any one of them being down at their start is harmless."""
        self.settings = dataclasses.replace(self.settings, kafka_bootstrap=broker.bootstrap)

    @property
    def collector_url(self) -> str:
        return f"http://{self.settings.collector_host}:{self.settings.collector_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.processor_web_port}/query"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.env(), "PYTHONUNBUFFERED": "1"}

    def start(self, timeout: float = 120.0) -> "LocalStack":
        try:
            if self._own_broker:
                self.broker = start_kafka(self.settings, out=self.out)
                self._bootstrap_to(self.broker)
                nodes = f"{self.settings.kafka_nodes} nodes " if self.settings.kafka_nodes > 1 else ""
                print(
                    f"   broker | Kafka {self.settings.kafka_version} {nodes}ready at {self.broker.bootstrap}",
                    file=self.out,
                    flush=True,
                )
            self.start_processor(timeout)
            self.start_collector(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_processor(self, timeout: float = 120.0) -> None:
        self.processor = Child("processor", eventpipe_command("processor"), self._env(), self.out)
        wait_http(self.query_url + "?sql=SELECT%201", self.processor, timeout)

    def start_collector(self, timeout: float = 60.0) -> None:
        self.collector = Child("collector", eventpipe_command("collector"), self._env(), self.out)
        wait_http(self.collector_url + "/readyz", self.collector, timeout)

    def children(self) -> list[Child]:
        return [c for c in (self.collector, self.processor) if c is not None]

    def stop(self) -> None:
        for child in self.children():
            child.stop()
        if self._own_broker and self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
