"""A halted pixel is not opaque: ``/status``, ``/readyz`` and ``capi-stream status`` name it and
quote Meta's error, while the other pixel's lane keeps delivering."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from stream.deliver.stage import Deliverer
from stream.sim import SimConfig, Simulator
from tests.brokers.provision import free_port
from tests.integration.helpers import (
    ROOT,
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    start_stage,
)

GOOD, REVOKED = "tok-status-good-31a", "tok-status-revoked-9c0"
OK_PIXEL, BAD_PIXEL = "4440004", "5550005"


@pytest.mark.integration
@pytest.mark.skipif(
    not hasattr(Deliverer, "status"), reason="the deliver stage does not report /status yet"
)
def test_a_halted_pixel_is_named_with_metas_error(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    tmp_path: Path,
) -> None:
    """Pixel B's token is unknown to Graph (code 190): its lane halts. ``/status`` shows it
    halted with Meta's code, message and fbtrace_id and its pending events, pixel A running
    with a last success; ``/readyz`` answers 503 naming pixel B; ``capi-stream status`` prints
    the table and exits 1. No token appears anywhere."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=2)
    now = time.time()
    items = [(f"a-{i}".encode(), enriched_value(f"a-{i}", OK_PIXEL, now)) for i in range(50)]
    items += [(f"b-{i}".encode(), enriched_value(f"b-{i}", BAD_PIXEL, now)) for i in range(20)]
    produce(kafka_bootstrap, names["enriched"], items)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Simulator(SimConfig(tokens={GOOD: frozenset({OK_PIXEL})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_tokens={OK_PIXEL: GOOD, BAD_PIXEL: REVOKED},
            deliverer={"graph_url": sim.url, "linger_ms": 100, "commit_interval_s": 0.3},
        )  # fmt: skip
        proc = start_stage(["deliver", "--metrics-port", str(port)], settings, tmp_path / "d.log")
        try:
            deadline = time.monotonic() + 60
            doc: dict = {}
            while not _halted_with_success(doc):
                assert time.monotonic() < deadline, (tmp_path / "d.log").read_text()[-2000:]
                time.sleep(0.2)
                doc = _json(f"{base}/status")
            ready = httpx.get(f"{base}/readyz", timeout=5)
            shown = subprocess.run(
                [sys.executable, "-m", "stream.cli", "status", "--url", base], cwd=ROOT,
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    lanes = {lane["pixel_id"]: lane for lane in doc["lanes"]}
    bad, ok = lanes[BAD_PIXEL], lanes[OK_PIXEL]
    assert bad["state"] == "halted"
    assert bad["since"] is not None
    assert bad["last_error"]["code"] == 190
    assert "Invalid OAuth access token" in bad["last_error"]["message"]
    assert bad["last_error"]["fbtrace_id"]
    assert bad["pending"] == 20
    assert bad["destination"] == "graph"
    assert bad["last_success_at"] is None
    assert bad["last_error"]["at"] >= bad["since"] - 1  # recorded as the lane halted
    # the 20 events are minutes old at most: produced just now, waiting since they were read
    assert 0 <= bad["oldest_event_age_s"] < 600
    assert 0 <= bad["oldest_wait_s"] <= bad["oldest_event_age_s"] + 1
    assert ok["state"] == "running"
    assert ok["last_success_at"] is not None
    assert (ok["pending"], ok["last_error"], ok["oldest_event_age_s"]) == (0, None, None)
    assert doc["ready"] is False
    assert ready.status_code == 503
    assert f"pixel {BAD_PIXEL} halted since" in ready.text
    assert "code 190: Invalid OAuth access token" in ready.text
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout.splitlines()[:1] == ["deliver worker 0: NOT READY"], shown.stderr
    assert any(
        BAD_PIXEL in line and "halted" in line and "code 190" in line
        for line in shown.stdout.splitlines()
    )
    everything = ready.text + shown.stdout + shown.stderr + str(doc)
    everything += (tmp_path / "d.log").read_text()
    assert GOOD not in everything
    assert REVOKED not in everything


def _halted_with_success(doc: dict) -> bool:
    lanes = {lane["pixel_id"]: lane for lane in doc.get("lanes", ())}
    # every record read: the two partitions may be fetched a few polls apart
    return (
        lanes.get(BAD_PIXEL, {}).get("state") == "halted"
        and lanes.get(BAD_PIXEL, {}).get("pending") == 20
        and lanes.get(OK_PIXEL, {}).get("last_success_at") is not None
        and lanes.get(OK_PIXEL, {}).get("pending") == 0
    )


def _json(url: str) -> dict:
    try:
        return dict(httpx.get(url, timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return {}
