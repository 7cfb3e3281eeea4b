"""`capi-stream deliver --metrics-port`: /healthz, /readyz and /metrics of a running stage."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stream.sim import SimConfig, Simulator
from tests.brokers.provision import free_port
from tests.integration.helpers import (
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    start_stage,
)

pytestmark = pytest.mark.integration


def test_running_deliverer_serves_health_readiness_and_metrics(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Alive at once (the loop ticks), ready once assigned, /metrics counts what it delivered,
    and librdkafka's log never reaches stderr raw."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=2)
    now = time.time()
    items = [(f"m-{i}".encode(), enriched_value(f"m-{i}", "111", now)) for i in range(300)]
    produce(kafka_bootstrap, names["enriched"], items)
    port = free_port()
    with Simulator(SimConfig(tokens={"sekrit-9f3a": frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token="sekrit-9f3a",
            deliverer={"graph_url": sim.url, "linger_ms": 100, "commit_interval_s": 0.3},
        )  # fmt: skip
        proc = start_stage(["deliver", "--metrics-port", str(port)], settings, tmp_path / "d.log")
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while sim.stats().accepted < 300 or _get(f"{base}/readyz") != 200:
                assert time.monotonic() < deadline, (tmp_path / "d.log").read_text()[-2000:]
                time.sleep(0.2)
            assert _get(f"{base}/healthz") == 200
            text = ""
            while "capi_stream_events_posted_total" not in text and time.monotonic() < deadline:
                text = httpx.get(f"{base}/metrics", timeout=5).text
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    assert 'capi_stream_consumed_total{stage="deliver"} 300.0' in text
    assert 'capi_stream_events_posted_total{pixel="111"} 300.0' in text
    assert "sekrit-9f3a" not in text
    log = (tmp_path / "d.log").read_text()
    assert "|rdkafka#" not in log  # librdkafka's raw "%3|…|FAIL|rdkafka#…|" lines: none
    assert "sekrit-9f3a" not in log


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
