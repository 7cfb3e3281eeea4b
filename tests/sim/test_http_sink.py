"""The deliver stage's HTTP seam against the simulator: what a POST leaves behind."""

from __future__ import annotations

import asyncio
import gc
import sys

import orjson

from stream.sim import Simulator
from stream.sinks.http import HttpSink, build_client, graph_url
from tests.sim.events import PIXEL, TOKEN, event


def test_a_sent_body_is_let_go_without_the_cyclic_collector(sim: Simulator) -> None:
    """httpx leaves each request in reference cycles that only the cyclic collector frees; the
    body (up to ~1 MB, 32 requests in flight) must not wait with them. With the collector off,
    after the answer the body is held by this test alone, and the simulator took every event."""
    body = orjson.dumps({"data": [event(i) for i in range(500)], "access_token": TOKEN})

    async def post_twice() -> list[int | None]:
        client = build_client(max_connections=2, timeout_s=10, user_agent="capi-stream-test")
        sink = HttpSink(client)
        url = graph_url(sim.url, "v25.0", PIXEL)
        try:
            statuses = []
            for _ in range(2):
                held = sys.getrefcount(body)
                answer = await sink.post(url, body)
                statuses.append(answer.status)
                assert sys.getrefcount(body) == held
            return statuses
        finally:
            await client.aclose()

    gc.disable()
    try:
        assert asyncio.run(post_twice()) == [200, 200]
    finally:
        gc.enable()
    assert sim.stats().accepted == 500
