"""The CAPI Gateway failing while Graph works, against a real broker and two simulators.

With ``destination=gateway`` and ``gateway_only`` off, each event goes to two lanes, Graph's
and the Gateway's, and its offset is done only when both accepted it (or it was
dead-lettered). One simulator plays Graph and another the Gateway, so a fault plan or a key
table applies to one destination only. Both keep a journal: a sampler reads the group's
committed offsets every 50 ms, then what each simulator had accepted by then; no committed
offset may pass an event either destination had not accepted. An event Graph took is never
sent to Graph again because the Gateway failed: each lane retries only its own requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from pydantic import SecretStr

from stream.config import Settings
from stream.deliver.stage import Deliverer
from stream.sim import FaultConfig, SimConfig, Simulator
from tests.integration.helpers import (
    GroupOffsets,
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    topic_records,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-gateway-faults"
KEY = "gw-key-faults"
PIXELS = ("411", "422")
PARTITIONS = 3
EVENTS = 600

Sample = tuple[dict[int, int], set[str], set[str]]


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["enriched"], n["dlq"], partitions=PARTITIONS)
    return n


def _sim(gateway_keys: dict[str, frozenset[str]] | None = None) -> Simulator:
    keys = {KEY: frozenset({"*"})} if gateway_keys is None else gateway_keys
    return Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})}, gateway_keys=keys, journal=True))


def _settings(
    bootstrap: str, names: dict[str, str], graph: Simulator, gateway: Simulator, *, only: bool
) -> Settings:
    # a long request timeout: on a loaded machine, a request timed out after the simulator took
    # it would be sent again, a duplicate that the tests would rightly count against the stage
    return stage_settings(
        bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": graph.url, "destination": "gateway", "gateway_url": gateway.url,
                   "gateway_only": only, "linger_ms": 50, "max_events": 100,
                   "request_timeout_s": 10.0, "retry_base_s": 0.1, "retry_max_s": 0.5,
                   "commit_interval_s": 0.5},
    ).model_copy(update={"gateway_access_key": SecretStr(KEY)})  # fmt: skip


def _publish(bootstrap: str, topic: str) -> list[str]:
    now = time.time()
    ids = [f"gf-{i}" for i in range(EVENTS)]
    produce(bootstrap, topic, ((e.encode(), enriched_value(e, PIXELS[i % len(PIXELS)], now))
                               for i, e in enumerate(ids)))  # fmt: skip
    return ids


def _confirmed(sim: Simulator) -> set[str]:
    """Event ids the simulator accepted in a full answer so far."""
    return {eid for entry in sim.journal() if not entry.short for _, eid in entry.keys}


class Sampler:
    """Reads the committed offsets, then what each destination had accepted, every 50 ms.

    The accepted sets are read after the offsets: whatever a commit covered was accepted
    before that commit, so before this read.
    """

    def __init__(
        self, bootstrap: str, group: str, topic: str, graph: Simulator, gateway: Simulator
    ) -> None:
        self._bootstrap, self._group, self._topic = bootstrap, group, topic
        self._graph, self._gateway = graph, gateway
        # the committed offsets, read by a consumer of the group (helpers.GroupOffsets says
        # why not the admin client); this one is the test's thread's own
        self._reader = GroupOffsets(bootstrap, group, topic, PARTITIONS)
        self.samples: list[Sample] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        reader = GroupOffsets(self._bootstrap, self._group, self._topic, PARTITIONS)
        try:
            while not self._done.is_set():
                committed = reader()
                if committed is not None:
                    graph, gateway = _confirmed(self._graph), _confirmed(self._gateway)
                    self.samples.append((committed, graph, gateway))
                self._done.wait(0.05)
        finally:
            reader.close()

    def committed(self) -> int:
        """The group's committed offsets summed over the partitions, read now (-1: the
        coordinator did not answer, which no assertion may take for 0)."""
        committed = self._reader()
        return -1 if committed is None else sum(committed.values())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(30)
        self._reader.close()

    def passed_unaccepted(self, where: dict[tuple[int, int], str], both: bool) -> list[str]:
        """Events some sample's committed offsets passed before a destination accepted them
        (``both``: Graph and the Gateway; else the Gateway alone)."""
        bad: set[str] = set()
        for committed, graph, gateway in self.samples:
            accepted = gateway & graph if both else gateway
            bad |= {e for (p, o), e in where.items() if o < committed.get(p, 0)} - accepted
        return sorted(bad)


@contextmanager
def _running(stage: Deliverer) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stage.stop()
        thread.join(60)
    assert not thread.is_alive()


def _where(settings: Settings) -> dict[tuple[int, int], str]:
    """Each enriched record's (partition, offset) and its event id (the record key)."""
    records = topic_records(settings, settings.topics.enriched)
    assert len(records) == EVENTS
    return {(r.partition, r.offset): (r.key or b"").decode() for r in records}


def _gateway_503s(gateway: Simulator) -> int:
    return gateway.stats().faults.get("http_503", 0)


def test_a_gateway_outage_holds_commits_and_graph_is_not_sent_again(
    kafka_bootstrap: str, names: dict[str, str]
) -> None:
    """600 events over two pixels; the Gateway answers every request with 503 while Graph
    accepts all of them. Nothing is committed during the outage (sampled every 50 ms, and
    checked once Graph has everything and the Gateway lanes retried on); after it, the Gateway
    gets every event, Graph got each exactly once, nothing is dead-lettered, and the group is
    committed to the end."""
    ids = _publish(kafka_bootstrap, names["enriched"])
    with _sim() as graph, _sim() as gateway:
        gateway.set_faults(FaultConfig(rates={"http_503": 1.0}))
        settings = _settings(kafka_bootstrap, names, graph, gateway, only=False)
        stage = Deliverer(settings)
        group, topic = names["deliverer_group"], names["enriched"]
        with Sampler(kafka_bootstrap, group, topic, graph, gateway) as sampler, _running(stage):
            wait_until(lambda: graph.stats().accepted == EVENTS, 60, "Graph to take all")
            # the Gateway lanes go on failing well after Graph took everything: a stage
            # that committed on Graph's word alone has had its chance by then
            held = _gateway_503s(gateway) + 20
            wait_until(lambda: _gateway_503s(gateway) >= held or sampler.committed() > 0, 30,
                       "Gateway retries (or a commit)")  # fmt: skip
            assert sampler.committed() == 0
            assert gateway.stats().accepted == 0
            gateway.clear_faults()
            wait_until(lambda: gateway.stats().accepted == EVENTS, 30, "the Gateway's turn")
            wait_until(lambda: sampler.committed() == EVENTS, 30, "commits to the end")
        graph_seen, gateway_seen = graph.stats(), gateway.stats()
    where = _where(settings)
    outage = gateway_seen.faults.get("http_503", 0)
    print(f"outage: {outage} Gateway 503s, {gateway_seen.requests} Gateway requests, "
          f"{graph_seen.requests} Graph requests, {gateway_seen.duplicates} Gateway duplicates, "
          f"{len(sampler.samples)} samples")  # fmt: skip
    assert outage >= 20
    expected = {("Purchase", i) for i in ids}
    assert graph_seen.exactly_once(expected), graph_seen.repeated()
    assert graph_seen.duplicates == 0
    assert gateway_seen.missing(expected) == set()
    assert stage.stats.delivered == EVENTS
    assert stage.stats.dead_lettered == 0
    assert topic_records(settings, names["dlq"]) == []
    assert len(sampler.samples) > 5
    assert sampler.passed_unaccepted(where, both=True) == []


def test_a_refused_access_key_halts_the_gateway_lanes_without_dead_letters(
    kafka_bootstrap: str, names: dict[str, str]
) -> None:
    """The Gateway refuses the access key (401, code 190: a setup failure) while Graph accepts
    everything: both Gateway lanes halt, the stage is not ready and ``/status`` shows them
    halted with code 190; nothing is dead-lettered or committed. Once the Gateway takes the key,
    the halted lanes' probes reopen them, every event arrives and the group is committed to the
    end."""
    ids = _publish(kafka_bootstrap, names["enriched"])
    with _sim() as graph, _sim({"another-key": frozenset({"*"})}) as gateway:
        settings = _settings(kafka_bootstrap, names, graph, gateway, only=False)
        stage = Deliverer(settings)
        group, topic = names["deliverer_group"], names["enriched"]
        with Sampler(kafka_bootstrap, group, topic, graph, gateway) as sampler, _running(stage):
            wait_until(lambda: graph.stats().accepted == EVENTS, 60, "Graph to take all")
            wait_until(lambda: len(stage.halted_lanes) == len(PIXELS), 30, "halted lanes")
            wait_until(lambda: not stage.ready(), 10, "not ready")

            def halted() -> list[tuple[str, str, int | None]]:
                return [(lane.destination, lane.pixel_id,
                         lane.last_error.code if lane.last_error else None)
                        for lane in stage.status().lanes if lane.state == "halted"]  # fmt: skip

            wait_until(lambda: len(halted()) == len(PIXELS), 10, "halted lanes in /status")
            assert sorted(halted()) == [("gateway", p, 190) for p in PIXELS]
            refused = gateway.stats().rejected
            assert refused > 0
            assert gateway.stats().accepted == 0
            assert sampler.committed() == 0
            assert stage.stats.dead_lettered == 0
            # the operator fixes the Gateway's key table (the stage's key stays the same)
            gateway.app.config = replace(gateway.app.config, gateway_keys={KEY: frozenset({"*"})})
            wait_until(lambda: gateway.stats().accepted == EVENTS, 30, "the Gateway's turn")
            wait_until(lambda: sampler.committed() == EVENTS, 30, "commits to the end")
            wait_until(stage.ready, 10, "ready again")
            assert stage.halted_lanes == []
        graph_seen, gateway_seen = graph.stats(), gateway.stats()
    where = _where(settings)
    print(f"refused: {refused} events refused by the Gateway before the fix, "
          f"{gateway_seen.requests} Gateway requests, {len(sampler.samples)} samples")  # fmt: skip
    expected = {("Purchase", i) for i in ids}
    assert graph_seen.exactly_once(expected), graph_seen.repeated()
    assert gateway_seen.missing(expected) == set()
    assert stage.stats.dead_lettered == 0
    assert topic_records(settings, names["dlq"]) == []
    assert len(sampler.samples) > 5
    assert sampler.passed_unaccepted(where, both=True) == []


def test_gateway_only_sends_nothing_to_graph(kafka_bootstrap: str, names: dict[str, str]) -> None:
    """With ``gateway_only`` on, every event goes to the Gateway once and none to Graph (whose
    simulator is configured and listening); the group is committed to the end."""
    ids = _publish(kafka_bootstrap, names["enriched"])
    with _sim() as graph, _sim() as gateway:
        settings = _settings(kafka_bootstrap, names, graph, gateway, only=True)
        stage = Deliverer(settings)
        group, topic = names["deliverer_group"], names["enriched"]
        with Sampler(kafka_bootstrap, group, topic, graph, gateway) as sampler, _running(stage):
            wait_until(lambda: gateway.stats().accepted == EVENTS, 60, "the Gateway to take all")
            wait_until(lambda: sampler.committed() == EVENTS, 30, "commits to the end")
        graph_seen, gateway_seen = graph.stats(), gateway.stats()
    assert graph_seen.requests == 0
    assert gateway_seen.exactly_once({("Purchase", i) for i in ids}), gateway_seen.repeated()
    assert stage.stats.delivered == EVENTS
    assert stage.stats.dead_lettered == 0
    assert sampler.passed_unaccepted(_where(settings), both=False) == []
