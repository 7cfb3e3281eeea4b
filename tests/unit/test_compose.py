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


def test_every_capi_stream_service_runs_an_existing_cli_command() -> None:
    """Each service built from the Dockerfile runs a command that the CLI parses."""
    from stream.cli import build_parser

    parser = build_parser()
    services = {n: s for n, s in _compose()["services"].items() if "build" in s}
    assert {"simulator", "normalizer", "deliverer", "topics"} <= set(services)
    for name, service in services.items():
        args = parser.parse_args(service["command"])  # exits (fails the test) when unknown
        assert callable(args.handler), name


def test_stages_share_one_configuration_and_are_scalable() -> None:
    """The stages read the same settings and publish no fixed host port (so --scale works)."""
    services = _compose()["services"]
    assert services["normalizer"]["environment"] == services["deliverer"]["environment"]
    for name in ("normalizer", "deliverer"):
        assert "ports" not in services[name]
        assert "container_name" not in services[name]


def test_prometheus_scrapes_the_stages() -> None:
    """The scrape configuration names both stages on the metrics port."""
    config = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    names = config["scrape_configs"][0]["dns_sd_configs"][0]["names"]
    assert set(names) == {"normalizer", "deliverer"}


def test_dockerfile_installs_the_package_and_runs_the_cli() -> None:
    """The service image installs capi-stream and its entry point is the CLI."""
    text = (COMPOSE.parent / "Dockerfile").read_text()
    assert "pip install" in text
    assert 'ENTRYPOINT ["capi-stream"]' in text
