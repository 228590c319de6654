"""A real, local Apache Kafka (KRaft) that eventpipe starts itself: one node, or a cluster of three.

No Kafka broker installs from PyPI or Debian, so the jars are resolved with
``mvn`` into a user cache on first use (progress shown), KRaft storage is
formatted in a data directory, and broker+controller run as one JVM on
127.0.0.1. The CLI (``eventpipe up``/``broker``), the tests and CI all use
this launcher, so nothing assumes a broker is already running.

`KafkaCluster` runs three such combined nodes from the same jars, each with
its own ports and data directory, one KRaft quorum of three voters; topics
get replication factor 3 and ``min.insync.replicas`` 2, so one node can be
lost without refusing a write or losing an acked one (tests/test_cluster.py). Its
nodes start, stop (SIGTERM), die (SIGKILL) and restart one at a time: the
durability tests of a leader loss drive it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
import json
import os
import random
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
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from eventpipe.progress import Progress
from eventpipe.settings import Settings
from eventpipe.schemas.topics import TopicSpec, topic_specs

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
            mvn,
            "-B",
            "-f",
            str(pom_path),
            "dependency:copy-dependencies",
            f"-Dkafka.version={settings.kafka_version}",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        print(
            f"eventpipe: resolving Apache Kafka {settings.kafka_version} with mvn into {libs} (first use only)",
            file=out,
            flush=True,
        )
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        artifacts, shown = 0, 0.0
        progress = Progress(out)
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            if line.startswith("Downloaded") or "Copying " in line:
                artifacts += 1
                elapsed = time.monotonic() - started
                if progress.terminal or elapsed - shown >= 5:  # a log file gets a line every 5 s, not per jar
                    progress.update(f"  {artifacts} artifacts, {elapsed:.0f}s")
                    shown = elapsed
        progress.done()
        print(f"  {artifacts} artifacts in {time.monotonic() - started:.0f}s", file=out, flush=True)
        if proc.wait() != 0:
            raise BrokerError("mvn could not resolve the Kafka broker:\n" + "\n".join(tail))
    done.write_text(settings.kafka_version)
    return libs


def new_cluster_id() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", uuid.uuid4().hex)[:22]


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


def replication_for(nodes: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of eventpipe's topics on a cluster of ``nodes``.

    With 3 replicas and 2 in sync, an acks=all write survives the loss of any one node and a
    write is refused (NOT_ENOUGH_REPLICAS, the collector answers 503) rather than acked by a
    single copy when two are gone.
    """
    return (3, 2) if nodes >= 3 else (1, 1)


def topic_configs(spec: TopicSpec, nodes: int) -> dict[str, str]:
    return {
        **spec.configs(),
        "min.insync.replicas": str(replication_for(nodes)[1]),
        "unclean.leader.election.enable": "false",
    }


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], nodes: int = 1, timeout: float = 60.0) -> None:
    """Create the topics of ``specs`` that are missing.

    A broker that has logged "started" can still answer without a controller for a moment (seen
    under load: NodeNotReadyError for node None); retriable errors are retried, with a fresh
    client and so fresh metadata, until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await _create_missing(bootstrap, specs, nodes)
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _create_missing(bootstrap: str, specs: list[TopicSpec], nodes: int) -> None:
    replicas, _ = replication_for(nodes)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=replicas, topic_configs=topic_configs(s, nodes)
            )
            for s in specs
            if s.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class KafkaBroker:
    """One KRaft JVM bound to 127.0.0.1, its state in ``data_dir``: broker+controller by default.

    Alone (the defaults) it is eventpipe's single-node Kafka and creates the topics when it
    starts; `KafkaCluster` makes three of them, each given its id, ports and the quorum's voters.
    """

    def __init__(
        self,
        settings: Settings,
        data_dir: Path | None = None,
        node_id: int = 1,
        port: int | None = None,
        voters: str | None = None,
        roles: str = "broker,controller",
        brokers: int | None = None,
    ):
        self.settings = settings
        self.node_id = node_id
        self.port = port or settings.broker_port
        self.controller_port = self.port + 1
        self.roles = roles
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.nodes = brokers or len(self.voters.split(","))  # brokers in the cluster: replication
        self.data_dir = Path(data_dir or settings.data_dir / "kafka").resolve()
        self.log_path = self.data_dir / "broker.log"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        replicas, min_isr = replication_for(self.nodes)
        listeners = ([f"PLAINTEXT://127.0.0.1:{self.port}"] if self.is_broker else []) + (
            [f"CONTROLLER://127.0.0.1:{self.controller_port}"] if "controller" in self.roles else []
        )
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    f"process.roles={self.roles}",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={self.voters}",
                    f"listeners={','.join(listeners)}",
                    *([f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}"] if self.is_broker else []),
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'logs'}",
                    f"default.replication.factor={replicas}",
                    f"min.insync.replicas={min_isr}",
                    "unclean.leader.election.enable=false",  # a leader is always a replica that was in sync
                    f"offsets.topic.replication.factor={replicas}",
                    "offsets.topic.num.partitions=12",
                    f"transaction.state.log.replication.factor={replicas}",
                    f"transaction.state.log.min.isr={min_isr}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "num.partitions=1",
                    "",
                ]
            )
        )
        (self.data_dir / "log4j2.properties").write_text(
            "\n".join(
                [
                    "appender.out.type=Console",
                    "appender.out.name=STDOUT",
                    "appender.out.layout.type=PatternLayout",
                    "appender.out.layout.pattern=[%d] %p %m (%c)%n",
                    "rootLogger.level=WARN",
                    "rootLogger.appenderRef.out.ref=STDOUT",
                    "logger.raft.name=kafka.server.KafkaRaftServer",
                    "logger.raft.level=INFO",
                    "",
                ]
            )
        )
        return props

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            java_executable(),
            "-Xms256m",
            f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self, timeout: float = 90.0, out=sys.stderr) -> "KafkaBroker":
        """Start (or restart) this node and wait until it serves; a lone node also creates the topics."""
        if self.proc and self.proc.poll() is None:
            return self
        offset = self.launch(out=out)
        self.wait_ready(timeout, offset)
        if self.nodes == 1:
            asyncio.run(ensure_topics(self.bootstrap, topic_specs(self.settings.topic_raw, self.settings.topic_dlq)))
        return self

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "logs" / "meta.properties").exists()

    def format(self, cluster_id: str | None = None, out=sys.stderr) -> subprocess.Popen | None:
        """Format KRaft storage unless done already; returns the running StorageTool, if any, to wait for."""
        libs = resolve_jars(self.settings, out=out)
        props = self._write_config()
        if self.formatted:
            return None
        cluster_id = cluster_id or new_cluster_id()
        cmd = self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props))
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def launch(self, out=sys.stderr) -> int:
        """Start the JVM without waiting; returns the log offset `wait_ready` reads from."""
        self._stop_stale()
        port = self.port if self.is_broker else self.controller_port
        if _port_open(port):
            raise BrokerError(
                f"port {port} is already in use: is another broker running? "
                "Set EVENTPIPE_KAFKA_BOOTSTRAP to another port."
            )
        formatting = self.format(out=out)
        if formatting is not None and formatting.wait() != 0:
            raise BrokerError(f"formatting {self.data_dir} failed:\n{formatting.stdout.read().decode()[-2000:]}")
        libs = resolve_jars(self.settings, out=out)
        props = self._write_config()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid_path.write_text(str(self.proc.pid))
        return log_offset

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

    def wait_ready(self, timeout: float, offset: int) -> None:
        """Wait for this start's own ready line (written after ``offset``) and an open port."""
        deadline = time.monotonic() + timeout
        port = self.port if self.is_broker else self.controller_port
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with {self.proc.returncode}; see {self.log_path}:\n" + self.log_tail()
                )
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if READY_LINE.encode() in f.read() and _port_open(port):
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

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port_block(count: int) -> int:
    """A port p with p .. p + count - 1 all free on 127.0.0.1, below the kernel's ephemeral range.

    A port the kernel hands out as a client's source port (``bind(0)``) can be taken by any outgoing
    connection between the pick and the broker's bind; on a busy machine that happens (measured
    here: "Address already in use" for a node's port). Below the range only listeners compete.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    while True:
        base = rng.randrange(10000, max(10001, low - count))
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()


def node_ports(settings: Settings, nodes: int) -> list[int]:
    """Each node's client port: the ones ``kafka_bootstrap`` lists, or its one port + 0, 2, 4, …
    (every node's controller listens on the port after its own)."""
    ports = [int(addr.rsplit(":", 1)[1]) for addr in settings.kafka_bootstrap.split(",") if addr.strip()]
    if len(ports) == nodes:
        return ports
    if len(ports) == 1:
        return [ports[0] + 2 * i for i in range(nodes)]
    raise BrokerError(
        f"EVENTPIPE_KAFKA_BOOTSTRAP lists {len(ports)} addresses for {nodes} nodes: "
        "list one (the others follow it) or all of them"
    )


class KafkaCluster:
    """``settings.kafka_nodes`` combined broker+controller nodes on 127.0.0.1, one KRaft quorum.

    Node ``i`` (1-based) keeps its state in ``<data_dir>/kafka-cluster/node-i``; all share one
    cluster id. `start`/`stop` act on all of them, ``node(i).start()/stop()/kill()`` on one.
    """

    def __init__(self, settings: Settings, data_dir: Path | None = None, nodes: int | None = None):
        self.settings = settings
        count = nodes or settings.kafka_nodes
        if count < 3 or count % 2 == 0:  # 2 voters survive no loss; an even quorum no more than the odd one below
            raise BrokerError(
                f"a local Kafka cluster has an odd number of nodes, 3 or more (not {count}); 1 is the single node"
            )
        ports = node_ports(settings, count)
        voters = ",".join(f"{i}@127.0.0.1:{p + 1}" for i, p in enumerate(ports, 1))
        self.data_dir = Path(data_dir or settings.data_dir / "kafka-cluster").resolve()
        self.nodes = [
            KafkaBroker(settings, self.data_dir / f"node-{i}", node_id=i, port=p, voters=voters)
            for i, p in enumerate(ports, 1)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        return self.nodes[node_id - 1]

    def cluster_id(self) -> str:
        """The id a formatted node already has (a partly formatted cluster keeps it), else a new one."""
        for n in self.nodes:
            meta = n.data_dir / "logs" / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.split("=", 1)[1].strip()
        return new_cluster_id()

    def start(self, timeout: float = 120.0, out=sys.stderr) -> "KafkaCluster":
        """Format (first time), start every node at once (the quorum needs a majority to elect a
        leader), wait for each, create the topics and wait until every replica is in sync."""
        resolve_jars(self.settings, out=out)
        cluster_id = self.cluster_id()
        formatting = [(n, n.format(cluster_id, out=out)) for n in self.nodes]
        for n, proc in formatting:
            if proc is not None and proc.wait() != 0:
                raise BrokerError(f"formatting {n.data_dir} failed:\n{proc.stdout.read().decode()[-2000:]}")
        try:
            offsets = [(n, n.launch(out=out)) for n in self.nodes if not n.alive()]
            deadline = time.monotonic() + timeout
            for n, offset in offsets:
                n.wait_ready(max(1.0, deadline - time.monotonic()), offset)
            asyncio.run(self._create_topics(deadline))
        except BaseException:
            self.stop()
            raise
        return self

    async def _create_topics(self, deadline: float) -> None:
        """Create the topics once every broker is registered (before that RF 3 is refused)."""
        specs = topic_specs(self.settings.topic_raw, self.settings.topic_dlq)
        while True:
            try:
                await ensure_topics(self.bootstrap, specs, len(self.nodes))
                break
            except Exception as exc:  # noqa: BLE001 - InvalidReplicationFactor until all have registered
                if time.monotonic() > deadline:
                    raise BrokerError(f"topics not created: {exc!r}") from exc
                await asyncio.sleep(0.5)
        ids = {n.node_id for n in self.nodes}
        while not all(set(p.isr) == ids for p in (await partitions(self.bootstrap, [s.name for s in specs]))):
            if time.monotonic() > deadline:
                raise BrokerError("the topics' replicas were not all in sync in time")
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node at once (a controlled shutdown each, while the quorum still stands)."""
        for n in self.nodes:
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes:
            n.stop(timeout)

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()

    def active_controller(self) -> int | None:
        """The KRaft quorum leader: the newest epoch's leader in the nodes' ``quorum-state`` files."""
        best = (-1, None)
        for n in self.nodes:
            try:
                state = json.loads((n.data_dir / "logs" / "__cluster_metadata-0" / "quorum-state").read_text())
            except (FileNotFoundError, ValueError):
                continue
            if state.get("leaderId", -1) >= 0 and state.get("leaderEpoch", -1) > best[0]:
                best = (state["leaderEpoch"], state["leaderId"])
        return best[1]

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclasses.dataclass(frozen=True)
class Partition:
    topic: str
    partition: int
    leader: int  # -1: none (offline)
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def partitions(bootstrap: str, topics: list[str]) -> list[Partition]:
    """Leader, replicas and in-sync replicas of every partition of ``topics``: cluster metadata from the
    first node of ``bootstrap`` that answers (a client's random node may be the one just killed)."""
    failures = []
    for address in bootstrap.split(","):
        host, port = address.rsplit(":", 1)
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=5000)
        except (OSError, KafkaError, asyncio.TimeoutError) as exc:
            failures.append(f"{address}: {exc!r}")
            continue
        try:
            response = (await conn.send(MetadataRequest(topics, allow_auto_topic_creation=False))).to_object()
        except (KafkaError, asyncio.TimeoutError) as exc:
            failures.append(f"{address}: {exc!r}")
            continue
        finally:
            conn.close()
        return sorted(
            (
                Partition(t["topic"], p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
                for t in response["topics"]
                for p in t["partitions"]
            ),
            key=lambda p: (p.topic, p.partition),
        )
    raise BrokerError("no Kafka node answered for metadata: " + "; ".join(failures))


def start_kafka(settings: Settings, out=sys.stderr) -> KafkaBroker | KafkaCluster:
    """The Kafka ``settings`` asks for, started: one node, or a cluster of ``kafka_nodes``."""
    if settings.kafka_nodes == 1:
        return KafkaBroker(settings).start(out=out)
    return KafkaCluster(settings).start(out=out)
