"""SIGTERM with work in hand: the deliver stage sends what it has batched, commits only what
Meta took, and ends within ``revoke_timeout_s`` + 5 s, against a real broker and simulator.

The stage's other SIGTERM tests stop it idle, with nothing pending. Here the signal comes:

* while 500 events wait in windows that would stay open for another minute: the drain must
  send them and commit them, not drop them and not leave them uncommitted;
* while every request hangs at Meta: the stage must end in time, commit nothing it was not
  told was accepted, and the next process must deliver everything.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.config import Settings
from stream.sim import FaultConfig, SimConfig, Simulator
from tests.brokers.provision import free_port
from tests.integration.helpers import (
    committed_total,
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    start_stage,
    started_lines,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-drain-test"
PIXEL = "111"
EVENTS = 500
PARTITIONS = 3
REVOKE_TIMEOUT_S = 3.0
#: what the stage promises after SIGTERM (revoke_timeout_s + 5 s), and slack for a loaded host
STOP_BOUND_S = REVOKE_TIMEOUT_S + 5 + 3


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as simulator:
        yield simulator


def _settings(
    bootstrap: str, names: dict[str, str], sim: Simulator, **deliverer: object
) -> Settings:
    return stage_settings(
        bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "revoke_timeout_s": REVOKE_TIMEOUT_S,
                   "static_membership": False, **deliverer},
    )  # fmt: skip


def _consumed(port: int) -> float:
    """The stage's ``consumed_total`` from its /metrics; 0 while it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "capi_stream_consumed_total" and sample.labels["stage"] == "deliver":
                return sample.value
    return 0.0


def _publish(bootstrap: str, topic: str) -> list[str]:
    ids = [f"drain-{i}" for i in range(EVENTS)]
    now = time.time()
    produce(bootstrap, topic, ((i.encode(), enriched_value(i, PIXEL, now)) for i in ids))
    return ids


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the process took to end (killed after 60 s)."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60), time.monotonic() - began
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_sigterm_sends_the_open_windows_and_commits_them(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None],
    sim: Simulator, tmp_path: Path,
) -> None:  # fmt: skip
    """500 events sit in windows with a 60 s linger (and a 60 s commit timer) when SIGTERM
    comes: the stage sends them, Meta takes each once, the group is committed to the end, and
    the process exits 0 within revoke_timeout_s + 5 s."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=PARTITIONS)
    ids = _publish(kafka_bootstrap, names["enriched"])
    port = free_port()
    settings = _settings(kafka_bootstrap, names, sim, linger_ms=60_000, commit_interval_s=60.0)
    log = tmp_path / "deliver.log"
    proc = start_stage(["deliver", "--metrics-port", str(port)], settings, log)
    try:
        wait_until(lambda: _consumed(port) >= EVENTS, 60, "the stage to read every event")
        # read and batched, not sent: the windows have ~a minute to go
        assert sim.stats().requests == 0
        assert started_lines(log) == 1
        code, took = _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"drained {EVENTS} batched events; the stop took {took:.1f} s")
    assert code == 0, log.read_text()[-3000:]
    assert took < STOP_BOUND_S
    received = sim.stats()
    assert received.accepted == EVENTS
    assert received.duplicates == 0
    assert received.missing(("Purchase", i) for i in ids) == set()
    assert (
        committed_total(kafka_bootstrap, names["deliverer_group"], names["enriched"], PARTITIONS)
        == EVENTS
    )


def test_sigterm_while_meta_hangs_ends_in_time_and_the_next_process_delivers_all(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None],
    sim: Simulator, tmp_path: Path,
) -> None:  # fmt: skip
    """Every request hangs (60 s, longer than the client's 30 s timeout) when SIGTERM comes:
    the process ends within revoke_timeout_s + 5 s with exit 0 and commits nothing (Meta
    accepted nothing); a fresh process then delivers every event and commits to the end."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=PARTITIONS)
    ids = _publish(kafka_bootstrap, names["enriched"])
    sim.set_faults(FaultConfig(rates={"hang": 1.0}, hang_seconds=60.0))
    settings = _settings(kafka_bootstrap, names, sim, linger_ms=100)
    group, topic = names["deliverer_group"], names["enriched"]
    log = tmp_path / "deliver.log"
    proc = start_stage(["deliver"], settings, log)
    try:
        wait_until(lambda: sim.stats(PIXEL).faults.get("hang", 0) >= 1, 60, "a request to hang")
        code, took = _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    hung = sim.stats(PIXEL).faults.get("hang", 0)
    print(f"stopped with {hung} request(s) hanging at Meta; the stop took {took:.1f} s")
    assert code == 0, log.read_text()[-3000:]
    assert took < STOP_BOUND_S
    assert sim.stats().accepted == 0
    assert committed_total(kafka_bootstrap, group, topic, PARTITIONS) == 0

    sim.clear_faults()
    again = start_stage(["deliver"], settings, log)
    try:
        wait_until(lambda: sim.stats().accepted == EVENTS, 90, "every event from the next process")
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, topic, PARTITIONS) == EVENTS,
            30,
            "the commit",
        )
        code, _ = _stop(again)
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    assert code == 0, log.read_text()[-3000:]
    assert sim.stats().missing(("Purchase", i) for i in ids) == set()
