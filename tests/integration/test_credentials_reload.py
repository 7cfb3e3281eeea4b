"""The deliver stage picks up a rotated tokens file without a restart, and survives a half one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream.deliver.stage import Deliverer
from stream.sim import SimConfig, Simulator
from tests.integration.helpers import enriched_value, produce, stage_settings, wait_until

pytestmark = pytest.mark.integration

PIXEL = "111"
OLD, NEW = "tok-reload-old-0001", "tok-reload-new-0002"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens={OLD: frozenset({"*"})})) as simulator:
        yield simulator


def test_rotated_tokens_file_is_used_and_a_half_written_one_is_survived(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    sim: Simulator,
    tmp_path: Path,
) -> None:
    """Rotation in place (truncate, partial JSON): the stage keeps delivering with the last good
    token; when the file is complete with a new token (and the old one revoked), the next
    requests use it. Nothing is dead-lettered, the stage never stops."""
    names = {"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
             "normalizer_group": unique("norm"), "deliverer_group": unique("deliv")}  # fmt: skip
    make_topics(names["enriched"], names["dlq"], partitions=1)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({PIXEL: OLD}), encoding="utf-8")
    settings = stage_settings(
        kafka_bootstrap, names, access_tokens_file=tokens,
        deliverer={"graph_url": sim.url, "linger_ms": 50, "commit_interval_s": 0.5,
                   "request_timeout_s": 2.0, "retry_base_s": 0.1, "retry_max_s": 1.0},
    )  # fmt: skip
    published = 0

    def publish(n: int) -> None:
        nonlocal published
        now = time.time()
        ids = [f"rot-{i}" for i in range(published, published + n)]
        produce(kafka_bootstrap, names["enriched"], ((i.encode(), enriched_value(i, PIXEL, now))
                                                     for i in ids))  # fmt: skip
        published += n

    stage = Deliverer(settings)
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    watched = settings.credentials.tokens_file
    assert watched is not None
    try:
        publish(100)
        wait_until(lambda: sim.stats().accepted == published, 60, "delivery with the first token")
        # a writer that truncated and wrote half: requests go on with the last good token
        tokens.write_text('{"111": "tok-reload-ne', encoding="utf-8")
        deadline = time.monotonic() + 30
        while not watched.failing:
            assert time.monotonic() < deadline, "the half-written file was never looked at"
            publish(20)
            wait_until(
                lambda: sim.stats().accepted == published, 30, "delivery during the rotation"
            )
        # the writer finishes; the old token is revoked at the same moment
        sim.set_tokens({NEW: frozenset({"*"})})
        tokens.write_text(json.dumps({PIXEL: NEW}), encoding="utf-8")
        publish(100)
        wait_until(lambda: sim.stats().accepted == published, 60, "delivery with the rotated token")
        assert thread.is_alive()
        assert not watched.failing
    finally:
        stage.stop()
        thread.join(60)
    assert stage.stats.dead_lettered == 0
    assert sim.stats().duplicates == 0
