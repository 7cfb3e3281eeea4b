"""docker-compose.yml is well formed (Docker is not available to run it here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_every_service_has_an_image_or_build_and_a_healthcheck() -> None:
    """Each service names what it runs and how Compose knows it is healthy."""
    services = _compose()["services"]
    assert {"kafka", "schema-registry"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert "healthcheck" in service, name
        assert service["healthcheck"]["test"], name


def test_kafka_runs_in_kraft_mode() -> None:
    """The broker is a combined KRaft node (no ZooKeeper)."""
    env = _compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in COMPOSE.read_text().lower()


def test_published_ports_are_loopback_only() -> None:
    """Ports are published on 127.0.0.1 only."""
    for service in _compose()["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
