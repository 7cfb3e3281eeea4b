"""`capi-stream sim`: the optional access log, and the warning when no token is configured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.sim.events import PIXEL, TOKEN, body, event

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def _sim(
    tmp_path: Path, config: dict[str, object], *options: str
) -> Iterator[tuple[str, list[str]]]:
    """``capi-stream sim --port 0 --sim-config FILE``; yields its URL and, after SIGTERM has
    ended it, fills the list with its stderr lines."""
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "stream.cli",
        "sim",
        "--port",
        "0",
        "--sim-config",
        str(path),
        *options,
    ]
    lines: list[str] = []
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        try:
            yield url, lines
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=10)
            lines.extend(stderr.splitlines())
    assert proc.returncode == 0, stderr


def test_the_access_log_has_one_line_per_request_and_never_the_token(tmp_path: Path) -> None:
    """Three requests: three lines naming pixel, events and status; the token appears in none."""
    config = {"tokens": {TOKEN: [PIXEL]}, "access_log": True}
    with _sim(tmp_path, config) as (url, lines), httpx.Client(base_url=url) as client:
        events_url = f"/v25.0/{PIXEL}/events"
        assert client.post(events_url, json=body([event(0), event(1), event(2)])).status_code == 200
        assert client.post(f"{events_url}?access_token={TOKEN}",
                           json={"data": [event(3)]}).status_code == 200  # fmt: skip
        wrong = {"data": [event(4)], "access_token": "wrong"}
        assert client.post(events_url, json=wrong).status_code == 400
    access = [line for line in lines if f"/v25.0/{PIXEL}/events" in line]
    assert len(access) == 3
    assert f"pixel={PIXEL} events=3 status=200" in access[0]
    assert f"pixel={PIXEL} events=1 status=200" in access[1]
    assert "status=400" in access[2]
    assert all(TOKEN not in line and "wrong" not in line for line in lines)


def test_without_the_access_log_requests_are_not_logged(tmp_path: Path) -> None:
    """The access log is off by default: a request leaves no line."""
    with _sim(tmp_path, {"tokens": {TOKEN: [PIXEL]}}) as (url, lines):
        httpx.post(f"{url}/v25.0/{PIXEL}/events", json=body([event(0)]), timeout=10)
    assert not [line for line in lines if "/events" in line]
    assert not [line for line in lines if "no access token configured" in line]


def test_no_token_configured_gets_a_warning(tmp_path: Path) -> None:
    """With no token every token passes: the simulator says so at start."""
    with _sim(tmp_path, {}) as (_, lines):
        pass
    [warning] = [line for line in lines if "no access token configured" in line]
    assert "warning" in warning.lower()
    assert "--token TOKEN=PIXEL" in warning


def test_the_access_log_option_turns_it_on(tmp_path: Path) -> None:
    """``capi-stream sim --access-log`` does what ``"access_log": true`` in the file does."""
    with _sim(tmp_path, {"tokens": {TOKEN: [PIXEL]}}, "--access-log") as (url, lines):
        httpx.post(f"{url}/v25.0/{PIXEL}/events", json=body([event(0), event(1)]), timeout=10)
    [access] = [line for line in lines if f"/v25.0/{PIXEL}/events" in line]
    assert f"pixel={PIXEL} events=2 status=200" in access
    assert TOKEN not in access
