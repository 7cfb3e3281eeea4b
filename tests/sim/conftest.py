"""Fixtures that start the CAPI simulator on a free loopback port, with a real httpx client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from stream.sim import SimConfig, Simulator
from tests.sim.events import PIXEL, TOKEN

StartSim = Callable[..., Simulator]


def default_config(**overrides: Any) -> SimConfig:
    """One token allowed on the test pixel, plus ``overrides``."""
    values: dict[str, Any] = {"tokens": {TOKEN: frozenset({PIXEL})}}
    values.update(overrides)
    return SimConfig(**values)


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """Starts simulators with the given config (or the default one); stops them after the test."""
    started: list[Simulator] = []

    def start(config: SimConfig | None = None, **kwargs: Any) -> Simulator:
        sim = Simulator(config or default_config(), **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(start_sim: StartSim) -> Simulator:
    """A simulator with the default config on a free loopback port."""
    return start_sim()


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    """A real keep-alive httpx client on the simulator's base URL."""
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        yield http
