"""Real Apache Kafka 4.x (KRaft) and Apicurio Registry 3.x for tests, from Maven Central.

Nothing here is a mock: Maven fetches the jars once (cached in ``~/.m2`` and ``lib/``), and each
test session starts a fresh broker on free loopback ports and stops it by PID at the end.
``python -m tests.brokers.provision`` only downloads, so CI can fetch before the suite runs.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIB = HERE / "lib"
VENDOR = HERE / "vendor"
APICURIO_VERSION = "3.3.3"
APICURIO_DIR = VENDOR / f"apicurio-{APICURIO_VERSION}"

JVM_FLAGS = [
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
]


def free_port() -> int:
    """A port nothing listens on now (bind to 0, read, close), as pytest-kafka-broker does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mvn(*args: str, cwd: Path) -> None:
    subprocess.run(["mvn", "-B", "-q", "-ntp", *args], cwd=cwd, check=True)


def fetch_kafka() -> Path:
    """Copy the Kafka broker's runtime closure into ``lib/`` unless it is there already."""
    marker = LIB / ".complete"
    if not marker.exists():
        _mvn("dependency:copy-dependencies", cwd=HERE)
        # the pom's dependency plugin also drops unrelated artifacts copied by hand; keep jars only
        for extra in LIB.glob("*.tar.gz"):
            extra.unlink()
        marker.touch()
    return LIB


def fetch_apicurio() -> Path:
    """Download and unpack Apicurio Registry's Quarkus app; return its ``quarkus-run.jar``."""
    marker = APICURIO_DIR / ".complete"
    if not marker.exists():
        with tempfile.TemporaryDirectory() as tmp:
            # run outside this folder so the pom's own output directory does not apply
            _mvn(
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
                f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
                f"-DoutputDirectory={tmp}",
                cwd=Path(tmp),
            )
            archive = next(Path(tmp).glob("*.tar.gz"))
            shutil.rmtree(APICURIO_DIR, ignore_errors=True)
            APICURIO_DIR.mkdir(parents=True)
            with tarfile.open(archive) as tar:
                tar.extractall(APICURIO_DIR, filter="data")
        marker.touch()
    return next(APICURIO_DIR.rglob("quarkus-run.jar"))


def registry_java() -> str:
    """A ``java`` of release 21 or later: Apicurio 3.3 is compiled for Java 21 (class file 65).

    The broker runs on the default Java 17; the registry takes the newest JDK under
    ``/usr/lib/jvm`` (the machine image ships Temurin 25 beside OpenJDK 17), or ``REGISTRY_JAVA``.
    """
    if explicit := os.environ.get("REGISTRY_JAVA"):
        return explicit
    best: tuple[int, str] | None = None
    for release in Path("/usr/lib/jvm").glob("*/release"):
        fields = dict(
            line.split("=", 1) for line in release.read_text().splitlines() if "=" in line
        )
        major = int(fields.get("JAVA_VERSION", '"0').strip('"').split(".")[0] or 0)
        java = release.parent / "bin" / "java"
        if major >= 21 and java.exists() and (best is None or major > best[0]):
            best = (major, str(java))
    if best is None:
        raise RuntimeError("the schema registry needs Java 21+; none under /usr/lib/jvm")
    return best[1]


def _wait(
    check: object, proc: subprocess.Popen[bytes], log: Path, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early (rc={proc.returncode}):\n{_tail(log)}")
        if callable(check) and check():
            return
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.2)


def _cluster_id() -> str:
    # a base64 id that starts with "-" is read as an option by the storage tool
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _jvm(flags: list[str]) -> list[str]:
    return [*flags, f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}"]


def _launch_kafka(workdir: Path, flags: list[str]) -> subprocess.Popen[bytes]:
    """Start ``kafka.Kafka`` on ``workdir/server.properties``, logging to ``workdir/broker.log``."""
    with (workdir / "broker.log").open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            ["java", *_jvm(flags), "-cp", f"{fetch_kafka()}/*", "kafka.Kafka",
             str(workdir / "server.properties")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap: what a crashed machine leaves behind."""
    proc.kill()
    proc.wait(timeout=30)


@dataclass
class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1; ``bootstrap`` is ``host:port``."""

    workdir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Format a new data directory and start the broker on it."""
        lib = fetch_kafka()
        began = time.monotonic()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = (HERE / "server.properties.in").read_text()
        props = (
            props.replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.controller_port))
            .replace("@DATA@", str(data))
        )
        conf = self.workdir / "server.properties"
        conf.write_text(props)
        fmt_log = self.workdir / "format.log"
        with fmt_log.open("wb") as out:
            subprocess.run(
                ["java", *_jvm(JVM_FLAGS), "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format",
                 "-t", _cluster_id(), "-c", str(conf)],
                stdout=out, stderr=subprocess.STDOUT, check=True,
            )  # fmt: skip
        self._launch(timeout)
        self.startup_seconds = time.monotonic() - began
        return self

    def restart(self, timeout: float = 90.0) -> KafkaBroker:
        """Start again on the same data directory and ports (after :meth:`kill` or :meth:`stop`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the broker is still running")
        self._launch(timeout)
        return self

    def kill(self) -> None:
        """SIGKILL the broker, as a crashed machine would leave it: no clean shutdown."""
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None

    def stop(self) -> None:
        """A graceful shutdown (SIGTERM, then SIGKILL after 30 s)."""
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def _launch(self, timeout: float) -> None:
        log = self.workdir / "broker.log"
        self.proc = _launch_kafka(self.workdir, JVM_FLAGS)
        # the 4.x broker opens its client port only once it is unfenced and serving metadata
        _wait(lambda: _port_open(self.port), self.proc, log, timeout, "kafka broker")


#: Cluster nodes run three JVMs on two cores: a smaller heap than the single test broker's.
CLUSTER_JVM_FLAGS = [f for f in JVM_FLAGS if not f.startswith(("-Xms", "-Xmx"))] + [
    "-Xms96m",
    "-Xmx384m",
    "-XX:CICompilerCount=1",
    "-XX:ActiveProcessorCount=1",
]


@dataclass
class ClusterNode:
    """One combined broker+controller of a :class:`KafkaCluster`, on its own dir and ports."""

    node_id: int
    workdir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> Path:
        return self.workdir / "broker.log"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the JVM on the formatted data dir; readiness is the caller's to wait for."""
        if self.alive:
            raise RuntimeError(f"node {self.node_id} is still running")
        self.proc = _launch_kafka(self.workdir, CLUSTER_JVM_FLAGS)
        return self.proc

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, leadership moves only when the controller fences it."""
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@dataclass
class KafkaCluster:
    """Three KRaft nodes, each broker and controller, voting as one quorum on 127.0.0.1.

    Topics default to replication factor 3 with ``min.insync.replicas=2``; the offsets and
    transaction state topics are replicated 3 times (transactions need 2 in sync), so the
    cluster keeps serving, transactions included, while any one node is down.
    """

    workdir: Path
    size: int = 3
    nodes: list[ClusterNode] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start(self, timeout: float = 180.0) -> KafkaCluster:
        """Format every node's data dir with one cluster id and start all of them."""
        lib = fetch_kafka()
        began = time.monotonic()
        self.nodes = [ClusterNode(i, self.workdir / f"node{i}") for i in range(1, self.size + 1)]
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        template = (HERE / "cluster.properties.in").read_text()
        cluster_id = _cluster_id()
        for node in self.nodes:
            data = node.workdir / "data"
            data.mkdir(parents=True, exist_ok=True)
            conf = node.workdir / "server.properties"
            conf.write_text(
                template.replace("@NODE_ID@", str(node.node_id))
                .replace("@VOTERS@", voters)
                .replace("@PORT@", str(node.port))
                .replace("@CONTROLLER_PORT@", str(node.controller_port))
                .replace("@DATA@", str(data))
            )
            with (node.workdir / "format.log").open("wb") as out:
                subprocess.run(
                    ["java", *_jvm(CLUSTER_JVM_FLAGS), "-cp", f"{lib}/*", "kafka.tools.StorageTool",
                     "format", "-t", cluster_id, "-c", str(conf)],
                    stdout=out, stderr=subprocess.STDOUT, check=True,
                )  # fmt: skip
        # all at once: a node opens its client port only once the quorum has elected a leader
        for node in self.nodes:
            node.launch()
        try:
            for node in self.nodes:
                self._wait_ready(node, timeout - (time.monotonic() - began))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crashed machine would leave it."""
        self.node(node_id).kill()

    def restart(self, node_id: int, timeout: float = 120.0) -> None:
        """Start a killed or stopped node again on its own data dir and ports."""
        node = self.node(node_id)
        node.launch()
        self._wait_ready(node, timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node at once, SIGKILL what is still running after ``timeout``.

        One by one, the last node's controlled shutdown would wait for a quorum that is gone.
        """
        procs = [n.proc for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for node in self.nodes:
            node.proc = None

    @staticmethod
    def _wait_ready(node: ClusterNode, timeout: float) -> None:
        assert node.proc is not None
        _wait(lambda: _port_open(node.port), node.proc, node.log, max(timeout, 1.0),
              f"kafka node {node.node_id}")  # fmt: skip


@dataclass
class SchemaRegistry:
    """Apicurio Registry 3.x serving the Confluent API at ``url`` (…/apis/ccompat/v7)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    def start(self, timeout: float = 120.0) -> SchemaRegistry:
        jar = fetch_apicurio()
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "registry.log"
        out = log.open("wb")
        self.proc = subprocess.Popen(
            [
                registry_java(), "-Xms64m", "-Xmx384m",
                "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.net.preferIPv4Stack=true",
                "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
                "-Dquarkus.management.host=127.0.0.1",
                f"-Dquarkus.management.port={self.management_port}",
                "-Dapicurio.rest.deletion.group.enabled=true",
                "-Dapicurio.rest.deletion.artifact.enabled=true",
                "-Dapicurio.rest.deletion.artifact-version.enabled=true",
                "-jar", str(jar),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        out.close()  # the child keeps its own descriptor
        _wait(self._answers, self.proc, log, timeout, "schema registry")
        self.startup_seconds = time.monotonic() - began
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=1) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def main() -> int:
    """Fetch everything the integration tests start, so the first test does not wait on Maven."""
    began = time.monotonic()
    fetch_kafka()
    jar = fetch_apicurio()
    print(
        f"kafka jars in {LIB}; registry at {jar}; {time.monotonic() - began:.1f}s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MAVEN_OPTS", "-Xmx512m")
    raise SystemExit(main())
