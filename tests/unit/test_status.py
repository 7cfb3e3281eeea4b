"""``/status``, the ``/readyz`` body and ``capi-stream status``: what a halted pixel looks like."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stream.core.status import LaneError, LaneStatus, StageStatus, halted_lines, table
from stream.health import HealthServer

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_796_108_000.0
HALTED = LaneStatus(
    pixel_id="111", test_event_code=None, destination="graph", state="halted", since=NOW - 300,
    pending=412, in_flight=1, oldest_event_age_s=3605.0, oldest_wait_s=310.0,
    last_success_at=NOW - 320,
    last_error=LaneError(190, 463, "Error validating access token: Session has expired.",
                         "AbCtrace", NOW - 300),
)  # fmt: skip
RUNNING = LaneStatus(
    pixel_id="222", test_event_code="TEST1", destination="graph", state="running",
    pending=3, oldest_event_age_s=1.5, last_success_at=NOW - 1,
)  # fmt: skip
STATUS = StageStatus(stage="deliver", worker=0, ready=False, lanes=(HALTED, RUNNING))


def test_halted_lines_name_pixel_since_and_metas_error() -> None:
    """One line per halted lane, with Meta's code, subcode, message and fbtrace_id."""
    assert halted_lines(STATUS.to_json()) == [
        "pixel 111 halted since 2026-12-01T06:48:20Z: code 190/463: Error validating access "
        "token: Session has expired. (fbtrace_id AbCtrace)"
    ]


def test_table_has_a_row_per_lane() -> None:
    """The table's head says ready or not; each lane's row shows its state and figures."""
    lines = table(STATUS.to_json(), now=NOW).splitlines()
    assert lines[0] == "deliver worker 0: NOT READY"
    assert lines[1].split()[:2] == ["PIXEL", "STATE"]
    halted = lines[2]
    for cell in ("111", "halted", "5m ago", "412", "60m", "code 190/463", "AbCtrace"):
        assert cell in halted, halted
    assert "222 (test TEST1)" in lines[3]
    assert "running" in lines[3]


def test_status_and_readyz_bodies() -> None:
    """``/status`` serves the JSON; a 503 ``/readyz`` names the halted pixel and why; a stage
    with no status answers 404 on ``/status`` and the bare ``/readyz`` body."""
    with HealthServer(0, ready=lambda: False, status=STATUS.to_json, host="127.0.0.1") as server:
        status = httpx.get(f"{server.url}/status")
        ready = httpx.get(f"{server.url}/readyz")
    assert status.status_code == 200
    assert status.json()["lanes"][0]["last_error"]["fbtrace_id"] == "AbCtrace"
    assert ready.status_code == 503
    assert ready.text.splitlines()[0] == "not ready"
    assert "pixel 111 halted since" in ready.text
    assert "code 190/463" in ready.text
    with HealthServer(0, ready=lambda: False, host="127.0.0.1") as bare:
        assert httpx.get(f"{bare.url}/status").status_code == 404
        assert httpx.get(f"{bare.url}/readyz").text == "not ready\n"


def _status_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "status", *argv], cwd=ROOT, text=True,
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def test_status_command_prints_the_table_and_exits_by_readiness() -> None:
    """``capi-stream status --url``: the table on stdout, each halted lane on stderr, exit 1
    while not ready; ``--json`` prints the document; exit 0 once ready."""
    doc = {"value": STATUS.to_json()}
    with HealthServer(0, ready=lambda: False, status=lambda: doc["value"],
                      host="127.0.0.1") as server:  # fmt: skip
        shown = _status_cli("--url", server.url)
        as_json = _status_cli("--url", server.url, "--json")
        doc["value"] = StageStatus("deliver", 0, ready=True, lanes=(RUNNING,)).to_json()
        healthy = _status_cli("--url", f"{server.url}/status")
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout.splitlines()[0] == "deliver worker 0: NOT READY"
    assert "halted" in shown.stdout
    assert "pixel 111 halted since" in shown.stderr
    assert json.loads(as_json.stdout)["lanes"][1]["pixel_id"] == "222"
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.splitlines()[0] == "deliver worker 0: ready"


def test_status_command_against_nothing_is_one_line() -> None:
    """No stage at the URL: exit 1, one line naming the URL, quickly."""
    started = time.monotonic()
    result = _status_cli("--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "http://127.0.0.1:9/status: no answer" in result.stderr
    assert time.monotonic() - started < 20
