"""Building the simulator's settings, its latency draws, and running it as a process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stream.core.errors import ConfigError
from stream.sim import FaultConfig, Latency, PoisonRule, SimConfig, config_from_options
from stream.sim.faults import draw_latency

ROOT = Path(__file__).resolve().parents[2]


def test_from_dict_reads_a_whole_config() -> None:
    """SimConfig.from_dict reads tokens, switches and a nested fault plan."""
    config = SimConfig.from_dict(
        {
            "tokens": {"tok": ["1", "2"], "admin": "*"},
            "app_secret": "s",
            "report_event_index": False,
            "faults": {
                "seed": 5,
                "latency": {"kind": "uniform", "min_ms": 1, "max_ms": 5},
                "rates": {"http_500": 0.1, "hang": 0.05},
                "poison": [{"field": "event_id", "in": ["a", "b"]}],
            },
        }
    )
    assert config.tokens == {"tok": frozenset({"1", "2"}), "admin": frozenset({"*"})}
    assert config.report_event_index is False
    assert config.faults.latency == Latency(kind="uniform", min_ms=1, max_ms=5)
    assert config.faults.poison == (
        PoisonRule(field="event_id", op="in", value=frozenset({"a", "b"})),
    )


@pytest.mark.parametrize(
    "data",
    [
        {"tokenz": {}},
        {"faults": {"rates": {"meteor": 0.1}}},
        {"faults": {"rates": {"http_500": 0.7, "http_503": 0.7}}},
        {"faults": {"latency": {"kind": "gaussian"}}},
        {"faults": {"hang_mode": "explode"}},
        {"faults": {"poison": [{"field": "event_id", "equals": "a", "gt": 1}]}},
    ],
    ids=["unknown-key", "unknown-kind", "rates-over-1", "latency-kind", "hang-mode", "two-ops"],
)
def test_bad_config_is_refused(data: dict[str, object]) -> None:
    """Unknown keys, kinds and impossible rates raise ConfigError."""
    with pytest.raises(ConfigError):
        SimConfig.from_dict(data)


def test_secret_is_not_in_the_repr() -> None:
    """The app secret never shows in a printed config."""
    assert "hunter2" not in repr(SimConfig(app_secret="hunter2"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50", Latency(kind="fixed", ms=50)),
        ("10-100", Latency(kind="uniform", min_ms=10, max_ms=100)),
        ("lognormal:20:1.5", Latency(kind="lognormal", median_ms=20, sigma=1.5)),
        ("pareto:5:1.2", Latency(kind="pareto", scale_ms=5, alpha=1.2)),
    ],
)
def test_latency_cli_forms(text: str, expected: Latency) -> None:
    """--latency-ms accepts fixed, uniform, lognormal and pareto forms."""
    assert Latency.parse(text) == expected


def test_options_build_a_config() -> None:
    """config_from_options reads --token, --latency-ms, --seed and --fault."""
    config = config_from_options(
        tokens=["t1=1,2", "t2=*"],
        app_secret="s",
        latency="25",
        seed=9,
        faults=["http_500=0.1", "throttle_17=0.2"],
    )
    assert config.tokens == {"t1": frozenset({"1", "2"}), "t2": frozenset({"*"})}
    assert config.faults.seed == 9
    assert config.faults.latency == Latency(kind="fixed", ms=25)
    assert config.faults.rates == {"http_500": 0.1, "throttle_17": 0.2}


@pytest.mark.parametrize(
    ("tokens", "faults"), [(["secret-token-no-pixels"], []), ([], ["http_500"])]
)
def test_bad_options_are_refused_without_echoing_tokens(
    tokens: list[str], faults: list[str]
) -> None:
    """A malformed --token or --fault raises ConfigError; the token stays out of the message."""
    with pytest.raises(ConfigError) as raised:
        config_from_options(tokens=tokens, faults=faults)
    assert "secret-token" not in str(raised.value)


@pytest.mark.parametrize(
    ("latency", "low", "high"),
    [
        (Latency(kind="fixed", ms=40), 0.04, 0.04),
        (Latency(kind="uniform", min_ms=10, max_ms=20), 0.01, 0.02),
        (Latency(kind="lognormal", median_ms=10, sigma=2, cap_ms=500), 0.0, 0.5),
        (Latency(kind="pareto", scale_ms=5, alpha=1.1, cap_ms=300), 0.005, 0.3),
    ],
)
def test_latency_draws_stay_in_range(latency: Latency, low: float, high: float) -> None:
    """Every latency draw is within its distribution's range and under the cap."""
    rng = random.Random(1)
    draws = [draw_latency(latency, rng) for _ in range(2000)]
    assert all(low <= d <= high for d in draws)


def test_long_tailed_latency_has_a_tail() -> None:
    """A lognormal latency has a 99th percentile far above its median."""
    rng = random.Random(2)
    draws = sorted(
        draw_latency(Latency(kind="lognormal", median_ms=10, sigma=1.5), rng) for _ in range(5000)
    )
    assert draws[2500] == pytest.approx(0.010, rel=0.2)
    assert draws[4950] > 5 * draws[2500]


def test_fault_plan_adds_a_rate() -> None:
    """with_rate returns a new plan with the extra rate, leaving the original alone."""
    plan = FaultConfig(rates={"code_1": 0.1})
    assert plan.with_rate("reset", 0.2).rates == {"code_1": 0.1, "reset": 0.2}
    assert plan.rates == {"code_1": 0.1}


def test_serve_runs_until_sigterm() -> None:
    """serve() answers on its port and exits cleanly on SIGTERM."""
    code = (
        "from stream.sim import SimConfig, serve\n"
        "serve(SimConfig(), '127.0.0.1', 0, on_ready=lambda url: print(url, flush=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        try:
            assert httpx.get(f"{url}/_sim/healthz", timeout=5).json() == {"status": "ok"}
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
