"""``capi-stream quality``: its parser, and the report against the simulator without Kafka."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

import httpx
import pytest

from stream.core.errors import ConfigError
from stream.quality import cli as quality_cli
from stream.sim import SimConfig, Simulator

TOKEN = "tok-quality-cli"
PIXEL = "111"
EM = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="capi-stream")
    parser.add_argument("--config", default=None)
    parser.add_argument("--bootstrap", default=None)
    quality_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["quality", *argv])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CAPI_STREAM_ variable of the caller's environment reaches the settings."""
    for key in [k for k in os.environ if k.startswith("CAPI_STREAM_")]:
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens={TOKEN: frozenset({PIXEL})})) as simulator:
        yield simulator


def test_parser_routes_actions() -> None:
    """Bare ``quality`` reports, ``--serve`` serves, and both actions have their options."""
    bare = _parse()
    assert (bare.handler, bare.serve) == (quality_cli.run, False)
    served = _parse("--serve", "--metrics-port", "9470", "--pixel-id", "1")
    assert (served.serve, served.metrics_port, served.pixel_id) == (True, 9470, ["1"])
    report = _parse("report", "--json", "--plot", "q.png", "--window-hours", "2")
    assert (report.handler, report.json, report.window_hours) == (quality_cli.report, True, 2.0)
    serve = _parse("serve", "--interval", "60", "--all-agents")
    assert (serve.handler, serve.interval, serve.all_agents) == (quality_cli.serve, 60.0, True)
    assert report.all_agents is False


def test_report_of_metas_numbers_without_kafka(
    env: pytest.MonkeyPatch, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-local: Meta's side only, read with the deliver stage's token settings."""
    events = [
        {"event_name": "Purchase", "event_time": int(sim.app._clock()) - 60,
         "action_source": "website", "event_id": f"e-{i}",
         "event_source_url": "https://shop.example.com/",
         "user_data": {"em": [EM], "client_user_agent": "UA"},
         "custom_data": {"currency": "usd", "value": 1.0}}
        for i in range(4)
    ]  # fmt: skip
    httpx.post(sim.events_url(PIXEL), json={"data": events, "access_token": TOKEN})
    env.setenv("CAPI_STREAM_ACCESS_TOKENS", json.dumps({PIXEL: TOKEN}))
    env.setenv("CAPI_STREAM_DELIVERER__GRAPH_URL", sim.url)
    args = _parse("report", "--no-local", "--json")
    assert args.handler(args) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert (row["pixel"], row["event_name"], row["events"]) == (PIXEL, "Purchase", None)
    assert row["meta_coverage"] == {"em": 1.0, "client_user_agent": 1.0}
    assert row["fix"] == "add ph: 100 % of Purchase events carry no phone"


def test_serve_refuses_what_it_cannot_do(env: pytest.MonkeyPatch) -> None:
    """No pixel, no port, or a non-positive interval: a ConfigError before anything starts."""
    with pytest.raises(ConfigError, match="no pixel"):
        quality_cli.serve(_parse("serve", "--metrics-port", "0"))
    env.setenv("CAPI_STREAM_ACCESS_TOKEN", "tok")
    with pytest.raises(ConfigError, match="metrics-port"):
        quality_cli.serve(_parse("serve", "--pixel-id", PIXEL))
    with pytest.raises(ConfigError, match="interval"):
        quality_cli.serve(_parse("serve", "--pixel-id", PIXEL, "--interval", "0"))


def test_plot_without_matplotlib_fails_before_any_work(env: pytest.MonkeyPatch) -> None:
    """--plot with matplotlib missing is a ConfigError, before Kafka or Meta are asked."""
    env.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match="matplotlib"):
        quality_cli.report(_parse("report", "--plot", "q.png"))


def test_a_throttle_stops_the_reports_calls(
    env: pytest.MonkeyPatch, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """After Meta throttles one pixel the report asks for no other; both are named, exit 1."""
    from stream.sim import FaultConfig

    sim.set_faults(FaultConfig(rates={"throttle_4": 1.0}))
    env.setenv("CAPI_STREAM_ACCESS_TOKEN", TOKEN)
    env.setenv("CAPI_STREAM_DELIVERER__GRAPH_URL", sim.url)
    args = _parse("report", "--no-local", "--json", "--pixel-id", PIXEL, "--pixel-id", "222")
    assert args.handler(args) == 1
    failures = json.loads(capsys.readouterr().out)["failures"]
    assert [(f["pixel"], f["kind"], f["code"]) for f in failures] == [
        (PIXEL, "throttled", 4), ("222", "throttled", None),
    ]  # fmt: skip
    assert sim.app.quality.requests() == {PIXEL: 1}
