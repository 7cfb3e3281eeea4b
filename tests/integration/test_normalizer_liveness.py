"""/healthz of a running normalize stage: green while its loop ticks, red while it is stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.sensors import MemorySensor
from stream.health import HealthServer
from stream.normalizer import Normalizer
from stream.watchdog import Watchdog
from tests.factories import raw_event
from tests.integration.helpers import produce, stage_names, stage_settings, wait_until

pytestmark = pytest.mark.integration


class StuckSensor(MemorySensor):
    """Blocks the stage's loop inside its first committed batch until released."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck = threading.Event()
        self.release = threading.Event()

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        super().count(name, value, **labels)
        if name == "consumed" and not self.release.is_set():
            self.stuck.set()
            self.release.wait(30)  # bounded: a failed test must not hang the suite


def test_healthz_turns_red_while_the_loop_is_stuck_and_green_when_it_ticks_again(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """A loop that has not ticked for stall_timeout_s answers 503 on /healthz, then 200 again."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=1)
    settings = stage_settings(
        kafka_bootstrap, names,
        # an idle poll is a tick: 0.1 s polls leave 0.9 s of the 1 s stall timeout as slack
        normalizer={"stall_timeout_s": 1.0, "poll_timeout_s": 0.1, "default_pixel_id": "111"},
    )  # fmt: skip
    sensor = StuckSensor()
    fired: list[int] = []
    stage = Normalizer(settings, sensor=sensor, watchdog=Watchdog(exit=fired.append))
    thread = threading.Thread(target=stage.run, daemon=True)
    with HealthServer(0, alive=stage.alive, host="127.0.0.1") as server:

        def healthz() -> int:
            return httpx.get(f"{server.url}/healthz").status_code

        thread.start()
        try:
            wait_until(stage.ready, 60, "partitions")
            # idle polls are ticks: green throughout longer than stall_timeout_s with no input
            idle_until = time.monotonic() + 1.5
            while time.monotonic() < idle_until:
                assert healthz() == 200
                time.sleep(0.1)
            codec = AvroCodec(schemas.load("conversion_event"))
            event = raw_event(event_id="live-1", event_time=int(time.time()) - 60, pixel_id=None)
            produce(kafka_bootstrap, names["raw"], [(b"k", codec.encode(event))])
            assert sensor.stuck.wait(30)
            wait_until(lambda: healthz() == 503, 10, "/healthz to turn red")
            sensor.release.set()
            wait_until(lambda: healthz() == 200, 10, "/healthz to turn green again")
        finally:
            sensor.release.set()
            stage.stop()
            thread.join(60)
    assert fired == []
    assert sensor.total("consumed") == 1
