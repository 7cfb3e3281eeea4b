"""docker-compose.yml is well formed (Docker is not available to run it here)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
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


# -- the Compose Specification --------------------------------------------------------------------

#: compose-spec.json of the Compose Specification, vendored with its licence (see SOURCE.md there)
COMPOSE_SPEC = Path(__file__).resolve().parent / "data" / "compose-spec" / "compose-spec.json"


def test_compose_file_follows_the_compose_specification() -> None:
    """docker-compose.yml validates against the Compose Specification's JSON schema.

    This is the check `docker compose config` makes on the file's shape (unknown keys, wrong
    types, a healthcheck's fields), done without Docker.
    """
    import jsonschema

    schema = json.loads(COMPOSE_SPEC.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(_compose())
    ]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    """The vendored schema rejects what Compose would: an unknown service key fails validation."""
    import jsonschema

    schema = json.loads(COMPOSE_SPEC.read_text())
    broken = _compose()
    broken["services"]["deliverer"]["stop_grace_periode"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


# -- Kafka: a listener for the stack and one for the host -----------------------------------------


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` as {NAME: "host:port"}."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_is_reachable_from_the_stack_and_from_the_host() -> None:
    """Containers use the in-network listener; the host reaches its own through the published port.

    Each listener advertises an address its clients can resolve: ``kafka:19092`` for the
    services, ``127.0.0.1:9092`` for the host, which is also the default bootstrap of
    ``capi-stream`` (so a command on the host needs no ``--bootstrap``).
    """
    from stream.config import Settings

    services = _compose()["services"]
    env = services["kafka"]["environment"]
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(advertised) <= set(listeners) <= set(protocols)

    internal = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert internal.split(":")[0] == "kafka"
    for name, service in services.items():
        bootstrap = service.get("environment", {}).get("CAPI_STREAM_BOOTSTRAP_SERVERS")
        assert bootstrap in (None, internal), name

    published = [str(p).split(":") for p in services["kafka"]["ports"]]
    host_addresses = {
        f"{ip}:{host_port}": container_port for ip, host_port, container_port in published
    }
    host_listener = advertised["HOST"]
    assert host_listener in host_addresses
    # the published port leads to the host listener's own port inside the container
    assert listeners["HOST"].rsplit(":", 1)[1] == host_addresses[host_listener]
    assert Settings.model_fields["bootstrap_servers"].default == host_listener


def test_kafka_keeps_its_data_in_a_named_volume() -> None:
    """The broker's log directory is a named volume, so topics outlive the container."""
    compose = _compose()
    kafka = compose["services"]["kafka"]
    log_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = dict(str(v).split(":", 1) for v in kafka["volumes"])
    volume = next(name for name, target in mounts.items() if target == log_dir)
    assert volume in compose["volumes"]


def test_registry_keeps_its_schemas_in_kafka() -> None:
    """Apicurio stores schemas in Kafka (kafkasql), not in memory, on the in-network listener.

    In memory, a registry restart forgets every schema id, and every record written before it
    would then fail to decode (``decode_unknown_schema``).
    """
    services = _compose()["services"]
    env = services["schema-registry"]["environment"]
    kafka_env = services["kafka"]["environment"]
    internal = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])[
        kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    ]
    assert env["APICURIO_STORAGE_KIND"] == "kafkasql"
    assert env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] == internal
    assert services["schema-registry"]["depends_on"]["kafka"] == {"condition": "service_healthy"}


# -- stopping and one-off commands -----------------------------------------------------------------


def _seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``45s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("name", ["normalizer", "deliverer"])
def test_stages_get_longer_than_their_drain_before_sigkill(name: str) -> None:
    """``stop_grace_period`` exceeds the stage's own bound on a SIGTERM shutdown.

    The deliverer gives requests in flight ``deliverer.revoke_timeout_s`` and then commits; its
    watchdog ends the process ``SHUTDOWN_GRACE_S`` after that. Docker's SIGKILL must come later,
    or what was delivered in the drain is not committed and is sent again.
    """
    from stream.config import Deliverer as DelivererSettings
    from stream.deliver.stage import Deliverer
    from stream.normalizer import Normalizer

    service = _compose()["services"][name]
    env = service["environment"]
    revoke_s = float(
        env.get(
            "CAPI_STREAM_DELIVERER__REVOKE_TIMEOUT_S",
            DelivererSettings.model_fields["revoke_timeout_s"].default,
        )
    )
    # the stage's own module, wherever the class lives
    stage = {"normalizer": Normalizer, "deliverer": Deliverer}[name]
    grace_s = sys.modules[stage.__module__].SHUTDOWN_GRACE_S
    assert _seconds(service["stop_grace_period"]) > revoke_s + grace_s


def _documented_tool_commands() -> list[list[str]]:
    """Every ``docker compose run ... tools ARGS`` written in the compose file and its guide."""
    texts = [COMPOSE.read_text(), (COMPOSE.parent / "docs" / "compose.md").read_text()]
    found = []
    for text in texts:
        for match in re.finditer(r"docker compose run ([^\n`]*)", text):
            # the command ends at a redirection, a pipe or a comment
            line = re.split(r"[<|#]", match.group(1), maxsplit=1)[0]
            words = shlex.split(line)
            if "tools" in words:
                found.append(words[words.index("tools") + 1 :])
    return found


def test_tools_service_runs_the_operator_commands_in_the_stack() -> None:
    """The ``tools`` profile runs publish, dlq and replay with the stages' settings.

    It starts only when asked (a profile), and every ``docker compose run ... tools`` command
    the compose file and docs/compose.md show is one the CLI parses.
    """
    from stream.cli import build_parser

    services = _compose()["services"]
    tools = services["tools"]
    assert tools["profiles"] == ["tools"]
    assert tools["environment"] == services["deliverer"]["environment"]
    commands = _documented_tool_commands()
    assert {c[0] for c in commands} >= {"publish", "dlq", "replay"}
    parser = build_parser()
    for command in commands:
        assert callable(parser.parse_args(command).handler), command


# -- the image -------------------------------------------------------------------------------------


def test_image_installs_the_pinned_versions_and_nothing_else() -> None:
    """The Dockerfile installs constraints.txt, then the package without resolving anything more."""
    text = (COMPOSE.parent / "Dockerfile").read_text()
    assert "COPY constraints.txt" in text
    assert "pip install -r constraints.txt" in text
    assert "pip install --no-deps ." in text
    assert "pip check" in text


def test_build_context_holds_only_what_the_image_copies() -> None:
    """.dockerignore excludes everything, then lets in exactly the Dockerfile's COPY sources.

    The virtualenv, .git, caches and local tokens files never reach the builder.
    """
    root = COMPOSE.parent
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    let_in = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for line in (root / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources.update(shlex.split(line)[1:-1])
    assert sources == let_in
    for path in sources:
        assert (root / path).exists(), path
