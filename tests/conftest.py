"""Session fixtures: a real Kafka broker and a real schema registry, started once, on demand.

``KAFKA_BOOTSTRAP=host:port`` and ``SCHEMA_REGISTRY_URL=…/apis/ccompat/v7`` use existing servers
instead. Unit tests of the core ask for neither and run with nothing started.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, settings

from tests.brokers.provision import KafkaBroker, KafkaCluster, SchemaRegistry

# The suite runs on shared, loaded machines: an example the OS took off the CPU for a quarter of
# a second is no failure. Property tests still fail on a wrong answer, never on a slow one.
settings.register_profile(
    "capi-stream", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("capi-stream")

_STARTUP: dict[str, float] = {}


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Apache Kafka 4.x broker for this test session."""
    if existing := os.environ.get("KAFKA_BOOTSTRAP"):
        yield existing
        return
    workdir = Path(tempfile.mkdtemp(prefix="capi-kafka-"))
    broker = KafkaBroker(workdir).start()
    _STARTUP["kafka broker"] = broker.startup_seconds
    try:
        _wait_metadata(broker.bootstrap)
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """Base URL of a real Confluent-compatible schema registry (Apicurio 3.x)."""
    if existing := os.environ.get("SCHEMA_REGISTRY_URL"):
        yield existing
        return
    registry = SchemaRegistry(Path(tempfile.mkdtemp(prefix="capi-registry-"))).start()
    _STARTUP["schema registry"] = registry.startup_seconds
    try:
        yield registry.url
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """Three KRaft nodes (RF 3, min ISR 2), started only for the module that asks for it."""
    cluster = KafkaCluster(Path(tempfile.mkdtemp(prefix="capi-cluster-"))).start()
    _STARTUP["kafka cluster (3 nodes)"] = cluster.startup_seconds
    try:
        _wait_metadata(cluster.bootstrap)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Makes names unique to this test, so tests never share topics or groups."""
    token = uuid.uuid4().hex[:10]
    return lambda name: f"{name}-{token}"


@pytest.fixture
def make_topics(kafka_bootstrap: str) -> Callable[..., None]:
    """Creates topics on the test broker and waits until they exist."""

    def create(*names: str, partitions: int = 3) -> None:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for future in futures.values():
            future.result(30)

    return create


def _wait_metadata(bootstrap: str, timeout: float = 60.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if admin.list_topics(timeout=5).brokers:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no metadata from {bootstrap}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long the real servers took to start."""
    for name, seconds in _STARTUP.items():
        terminalreporter.write_line(f"{name} started in {seconds:.1f}s")
