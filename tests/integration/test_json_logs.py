"""With JSON logs, every line a stage or its supervisor writes to stderr is one JSON object, and
every line of a worker names its worker id (the supervisor's lines say they are its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from stream.sim import SimConfig, Simulator
from tests.integration.helpers import ROOT, stage_env, stage_names, stage_settings

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
