"""Match quality end to end, no network: raw events with known key coverage go through both
stages to the simulator; ``quality report`` and ``quality serve`` then show the numbers."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.match_quality import local_score
from stream.deliver.stage import Deliverer
from stream.normalizer import Normalizer
from stream.quality import cli as quality_cli
from stream.sim import SimConfig, Simulator
from stream.sim.quality import sim_emq
from tests.factories import raw_event
from tests.integration.helpers import (
    ROOT,
    produce,
    stage_env,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-quality-e2e"
SHOP, BLOG = "111", "222"
FBC = "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQ"
FBP = "fb.1.1596403881668.1116446470"
#: Runs ``capi-stream quality ...`` with the module's own parser (as cli.py will register it).
_QUALITY_MAIN = (
    "import argparse, sys\n"
    "from stream.quality.cli import add_parser\n"
    "p = argparse.ArgumentParser(prog='capi-stream')\n"
    "p.add_argument('--config', default=None)\n"
    "p.add_argument('--bootstrap', default=None)\n"
    "add_parser(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.handler(a))\n"
)


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["raw"], n["enriched"], n["dlq"], partitions=2)
    return n


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens={TOKEN: frozenset({SHOP, BLOG})})) as simulator:
        yield simulator


def _events(now: int) -> list[dict[str, Any]]:
    """SHOP: 20 Purchases, all with e-mail, external_id, fbc, fbp, IP and UA, 12 with a phone
    (60 %); 10 Leads with e-mail and UA only, 5 with a first name. BLOG: 4 custom events."""
    events = []
    for i in range(20):
        event = raw_event(event_id=f"p-{i}", event_time=now - 60, pixel_id=SHOP)
        event["user_data"].update(external_id=[f"user-{i}"], fbc=FBC, fbp=FBP)
        if i >= 12:
            event["user_data"]["ph"] = []
        events.append(event)
    for i in range(10):
        event = raw_event(event_id=f"l-{i}", event_name="Lead", event_time=now - 60, pixel_id=SHOP)
        event["user_data"].update(ph=[], client_ip_address=None, fn=["Mary"] if i < 5 else [])
        events.append(event)
    for i in range(4):
        events.append(raw_event(event_id=f"c-{i}", event_name="ReadArticle",
                                event_time=now - 60, pixel_id=BLOG))  # fmt: skip
    return events


def _run_pipeline(settings: Settings, names: dict[str, str], events: list[dict[str, Any]]) -> None:
    codec = AvroCodec(schemas.load("conversion_event"))
    produce(settings.bootstrap_servers, names["raw"],
            ((e["event_id"].encode(), codec.encode(e)) for e in events))  # fmt: skip
    normalized = Normalizer(settings).run(max_idle_s=3)
    assert normalized.consumed == len(events)
    Deliverer(settings).run(max_idle_s=3)


def _report(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    """``capi-stream quality ARGV`` in this process, settings from the environment only."""
    for key in [k for k in os.environ if k.startswith("CAPI_STREAM_")]:
        monkeypatch.delenv(key)
    for key, value in stage_env(settings).items():
        if key.startswith("CAPI_STREAM_"):
            monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser(prog="capi-stream")
    parser.add_argument("--config", default=None)
    parser.add_argument("--bootstrap", default=None)
    quality_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["quality", *argv])
    return int(args.handler(args))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_report_and_serve_show_known_coverage(
    kafka_bootstrap: str,
    names: dict[str, str],
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    tmp_path: Path,
) -> None:
    """Our coverage and Meta's (the simulator's) agree with what was published; EMQ and the
    local score follow their formulas; the fix names the missing phone; serve exports it."""
    settings = stage_settings(
        kafka_bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 100, "commit_interval_s": 0.5,
                   "request_timeout_s": 5.0},
    )  # fmt: skip
    _run_pipeline(settings, names, _events(int(time.time())))
    assert sim.stats().accepted == 34
    capsys.readouterr()  # the stages' log lines

    assert _report(monkeypatch, settings, "report", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {(r["pixel"], r["event_name"]): r for r in doc["rows"]}
    assert set(rows) == {(SHOP, "Purchase"), (SHOP, "Lead"), (BLOG, "ReadArticle")}
    assert doc["failures"] == []
    assert doc["local"]["counted"] == 34

    purchase = rows[(SHOP, "Purchase")]
    assert purchase["events"] == 20
    ours = {"em": 1.0, "ph": 0.6, "external_id": 1.0, "fbc": 1.0, "fbp": 1.0,
            "client_ip_address": 1.0, "client_user_agent": 1.0, "ip_ua": 1.0}  # fmt: skip
    assert purchase["local_coverage"] == ours
    # the simulator received what we sent, so Meta's side agrees key for key
    assert purchase["meta_coverage"] == ours
    # 2 + 1.5 * 0.6 + 1 + 1 + 0.75 + 1 = 6.65
    assert purchase["local_score"] == local_score(ours) == 6.7
    # 1 + 9 * (0.25 + 0.2 * 0.6 + 0.1 + 0.1 + 0.1 + 0.1) = 7.93
    assert purchase["meta_emq"] == sim_emq(ours) == 7.9
    assert purchase["event_coverage"] == 1.0
    assert purchase["coverage_goal"] == 0.75
    assert purchase["freshness"] == "real_time"
    assert purchase["missing"] == ["acr"]
    assert purchase["fix"] == "add ph: 40 % of Purchase events carry no phone"

    lead = rows[(SHOP, "Lead")]
    assert lead["local_coverage"] == {"em": 1.0, "client_user_agent": 1.0, "fn": 0.5}
    assert lead["meta_emq"] == sim_emq(lead["meta_coverage"]) == 3.4
    assert lead["fix"] == "add ph: 100 % of Lead events carry no phone"
    # a custom name: Meta's row keeps it, ours is counted under "custom" and joined to it
    assert rows[(BLOG, "ReadArticle")]["events"] == 4

    # the table, with a chart
    chart = tmp_path / "quality.png"
    assert _report(monkeypatch, settings, "report", "--plot", str(chart)) == 0
    text = capsys.readouterr().out
    assert "add ph: 40 % of Purchase events carry no phone" in text
    assert chart.read_bytes()[:4] == b"\x89PNG"

    # serve: the same numbers as gauges, then a clean exit on SIGTERM
    port = _free_port()
    env = stage_env(settings)
    proc = subprocess.Popen(
        [sys.executable, "-c", _QUALITY_MAIN, "quality", "--serve", "--metrics-port", str(port),
         "--pixel-id", SHOP], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wanted = f'meta_event_match_quality{{event_name="Purchase",pixel="{SHOP}"}} 7.9'

        def exported() -> bool:
            try:
                return wanted in httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.HTTPError:
                return False

        wait_until(exported, 60, "the quality gauges on /metrics")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert TOKEN.encode() not in err


def test_report_counts_a_meta_failure(
    kafka_bootstrap: str,
    names: dict[str, str],
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pixel the token may not read: the report still prints, names the failure, exits 1."""
    settings = stage_settings(kafka_bootstrap, names, access_token=TOKEN,
                              deliverer={"graph_url": sim.url})  # fmt: skip
    assert _report(monkeypatch, settings, "report", "--pixel-id", "333") == 1
    out = capsys.readouterr().out
    assert "pixel 333: Meta's numbers unavailable (setup:" in out
    assert TOKEN not in out
