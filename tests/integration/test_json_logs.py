"""With JSON logs, every line a stage or its supervisor writes to stderr is one JSON object, and
every line of a worker names its worker id (the supervisor's lines say they are its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from stream.kafka.serde import build_codecs
from stream.sim import SimConfig, Simulator
from tests.factories import raw_event
from tests.integration.helpers import ROOT, produce, stage_env, stage_names, stage_settings

TOKEN = "tok-json-logs-8d2c"


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", *argv], env=env, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stderr.splitlines()


def _objects(lines: list[str]) -> list[dict[str, Any]]:
    """Each stderr line as JSON; fails naming the first line that is not."""
    objects = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return objects


@pytest.mark.integration
def test_supervisor_and_workers_log_json_with_worker_ids(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """``normalize --workers 2``: the supervisor's lines and both workers' lines are JSON;
    every worker line carries ``worker`` 0 or 1, every supervisor line ``role=supervisor``."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=2)
    settings = stage_settings(kafka_bootstrap, names)
    code, lines = _run(["normalize", "--workers", "2", "--max-idle", "2"], stage_env(settings))
    objects = _objects(lines)
    assert code == 0, lines
    supervisor = [o for o in objects if o.get("role") == "supervisor"]
    workers = [o for o in objects if o.get("role") != "supervisor"]
    assert {o["event"] for o in supervisor} >= {"worker started", "worker done"}
    assert {o.get("worker") for o in workers} == {0, 1}, lines
    assert all(o.get("stage") == "normalize" for o in objects)
    assert any(o["event"] == "stage stopped" for o in workers)


@pytest.mark.integration
def test_deliver_logs_json_including_library_lines_and_its_last_line(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """A deliverer with nothing to do, logging at debug with librdkafka's group debug on, writes
    JSON only: its own lines, librdkafka's and the final summary, each naming worker 3."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=1)
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN,
            deliverer={"graph_url": sim.url},
            kafka={"debug": "cgrp"}, observability={"log_level": "debug"},  # librdkafka logs
        )  # fmt: skip
        code, lines = _run(["deliver", "--worker", "3", "--max-idle", "2"], stage_env(settings))
    objects = _objects(lines)
    assert code == 0, lines
    assert all(o.get("worker") == 3 for o in objects), lines
    assert any(o["event"] == "librdkafka" for o in objects)
    assert objects[-1]["event"] == "stage stopped"
    assert TOKEN not in "\n".join(lines)


def test_a_failed_stage_ends_with_a_json_line() -> None:
    """A stage that cannot reach its cluster: its waiting line and its last (error) line are
    both JSON, and both name the worker; exit 1."""
    names = {"raw": "r", "enriched": "e", "dlq": "d", "normalizer_group": "n",
             "deliverer_group": "g"}  # fmt: skip
    env = stage_env(stage_settings("127.0.0.1:9", names))
    env["CAPI_STREAM_KAFKA_CONNECT_TIMEOUT_S"] = "1"
    code, lines = _run(["normalize", "--worker", "5"], env)
    objects = _objects(lines)
    assert code == 1, lines
    assert [o["level"] for o in objects] == ["warning", "error"], lines
    assert "cannot reach Kafka at 127.0.0.1:9" in objects[-1]["event"]
    assert all(o.get("worker") == 5 for o in objects)


@pytest.mark.integration
def test_normalize_with_the_registry_logs_json_only_and_warns_once_per_pixel(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
) -> None:
    """The normalize stage in the Confluent wire format (the registry client and its libraries
    load: no Authlib deprecation text), at debug level with librdkafka's debug on, over website
    events half of which have no event_id: every stderr line is JSON and names worker 0; the
    derived-id warning comes once per pixel, not once per event."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=1)
    settings = stage_settings(
        kafka_bootstrap, names, schema_registry_url=schema_registry_url,
        kafka={"debug": "cgrp"}, observability={"log_level": "debug"},
    )  # fmt: skip
    codecs = build_codecs(settings)  # registers the raw schema, as a publisher would
    codecs.close()
    now = int(time.time())
    pixels = ("111", "222")
    events = [
        raw_event(pixel_id=pixels[i % 2], event_time=now, event_id=None if i % 2 else f"e-{i}")
        for i in range(20)
    ]
    produce(kafka_bootstrap, names["raw"], [(None, codecs.raw.encode(e)) for e in events])
    code, lines = _run(["normalize", "--max-idle", "3"], stage_env(settings))
    objects = _objects(lines)
    assert code == 0, lines
    assert all(o.get("worker") == 0 for o in objects), lines
    assert any(o["event"] == "librdkafka" for o in objects)
    foreign = {o["logger"] for o in objects if not o.get("logger", "capi").startswith("capi")}
    assert foreign, "a standard-library logger's line (the registry's HTTP client)"
    assert "authlib" not in "\n".join(lines).lower()
    derived = [o for o in objects if "without an event_id" in o["event"]]
    assert [(o["pixel"], o["events"]) for o in derived] == [("222", 10)], derived
