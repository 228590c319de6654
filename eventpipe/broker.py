"""A real, local Apache Kafka broker (KRaft, single node) that eventpipe starts itself.

No Kafka broker installs from PyPI or Debian, so the jars are resolved with
``mvn`` into a user cache on first use (progress shown), KRaft storage is
formatted in a data directory, and broker+controller run as one JVM on
127.0.0.1. The CLI (``eventpipe up``/``broker``), the tests and CI all use
this launcher, so nothing assumes a broker is already running.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from eventpipe.settings import Settings
from schemas.topics import TopicSpec, topic_specs

READY_LINE = "Kafka Server started"


class BrokerError(RuntimeError):
    pass


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BrokerError(f"`{tool}` was not found on PATH: {why}")
    return path


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return _require("java", "Kafka 4 needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")


def resolve_jars(settings: Settings, out=sys.stderr) -> Path:
    """The directory of the broker's jars, resolved with mvn on first use."""
    libs = settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = _require("mvn", "the Kafka broker's jars are resolved with Maven (Debian: apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    pom = importlib.resources.files("eventpipe").joinpath("broker_pom.xml")
    with importlib.resources.as_file(pom) as pom_path:
        cmd = [
            mvn, "-B", "-f", str(pom_path), "dependency:copy-dependencies",
            f"-Dkafka.version={settings.kafka_version}", f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        print(f"eventpipe: resolving Apache Kafka {settings.kafka_version} with mvn into {libs} (first use only)",
              file=out, flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        artifacts = 0
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            if line.startswith("Downloaded") or "Copying " in line:
                artifacts += 1
                print(f"\r  {artifacts} artifacts, {time.monotonic() - started:.0f}s", end="", file=out, flush=True)
        print(file=out)
        if proc.wait() != 0:
            raise BrokerError("mvn could not resolve the Kafka broker:\n" + "\n".join(tail))
    done.write_text(settings.kafka_version)
    return libs


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def ensure_topics(bootstrap: str, specs: list[TopicSpec]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, topic_configs=s.configs())
            for s in specs if s.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class KafkaBroker:
    """One KRaft broker+controller JVM bound to 127.0.0.1, its state in ``data_dir``."""

    def __init__(self, settings: Settings, data_dir: Path | None = None):
        self.settings = settings
        self.port = settings.broker_port
        self.controller_port = self.port + 1
        self.data_dir = Path(data_dir or settings.data_dir / "kafka").resolve()
        self.log_path = self.data_dir / "broker.log"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir / 'logs'}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=12",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "",
        ]))
        (self.data_dir / "log4j2.properties").write_text("\n".join([
            "appender.out.type=Console",
            "appender.out.name=STDOUT",
            "appender.out.layout.type=PatternLayout",
            "appender.out.layout.pattern=[%d] %p %m (%c)%n",
            "rootLogger.level=WARN",
            "rootLogger.appenderRef.out.ref=STDOUT",
            "logger.raft.name=kafka.server.KafkaRaftServer",
            "logger.raft.level=INFO",
            "",
        ]))
        return props

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            java_executable(), "-Xms256m", f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", *args,
        ]

    def start(self, timeout: float = 90.0, out=sys.stderr) -> "KafkaBroker":
        if self.proc and self.proc.poll() is None:
            return self
        self._stop_stale()
        if _port_open(self.port):
            raise BrokerError(f"port {self.port} is already in use: is another broker running? "
                              "Set EVENTPIPE_KAFKA_BOOTSTRAP to another port.")
        libs = resolve_jars(self.settings, out=out)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = re.sub(r"[^A-Za-z0-9]", "", uuid.uuid4().hex)[:22]
            subprocess.run(self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                           check=True, capture_output=True, text=True)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._java(libs, "kafka.Kafka", str(props)), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.pid_path.write_text(str(self.proc.pid))
        self._wait_ready(timeout, log_offset)
        asyncio.run(ensure_topics(self.bootstrap, topic_specs(self.settings.topic_raw, self.settings.topic_dlq)))
        return self

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    def _stop_stale(self) -> None:
        """Stop a broker that a killed earlier run left behind on this data directory."""
        try:
            pid = int(self.pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return
        if b"kafka.Kafka" in cmdline and str(self.data_dir).encode() in cmdline:
            print(f"eventpipe: stopping a broker left running by an earlier run (pid {pid})", file=sys.stderr)
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def _wait_ready(self, timeout: float, offset: int) -> None:
        """Wait for this start's own ready line (written after ``offset``) and an open port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with {self.proc.returncode}; see {self.log_path}:\n"
                                  + self.log_tail())
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if READY_LINE.encode() in f.read() and _port_open(self.port):
                    return
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"the Kafka broker was not ready within {timeout:.0f}s; see {self.log_path}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a controlled shutdown), then SIGKILL if it does not exit in time."""
        proc, self.proc = self.proc, None
        self.pid_path.unlink(missing_ok=True)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
