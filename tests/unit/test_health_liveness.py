"""Liveness: /healthz of a normalize stage turns red once its loop stops ticking."""

from __future__ import annotations

import httpx

from stream.config import Settings
from stream.health import HealthServer
from stream.normalizer import Normalizer


def test_healthz_turns_red_when_the_normalizer_loop_stalls() -> None:
    """200 while the loop ticked within stall_timeout_s, 503 after, 200 again on the next tick."""
    now = [100.0]
    stage = Normalizer(
        Settings(normalizer={"stall_timeout_s": 30}), monotonic=lambda: now[0]
    )  # not run: no broker needed to read its liveness
    with HealthServer(0, alive=stage.alive, host="127.0.0.1") as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        now[0] += 30.0
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # at the limit: alive
        now[0] += 0.5
        response = httpx.get(f"{server.url}/healthz")
        assert response.status_code == 503
        assert response.text == "not alive\n"
        stage._last_tick = now[0]  # what the loop does on each iteration
        assert httpx.get(f"{server.url}/healthz").status_code == 200
