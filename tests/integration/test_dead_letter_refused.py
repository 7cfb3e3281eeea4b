"""The dead-letter topic refuses writes mid-run, as a real cluster can: both stages, real broker.

The guarantee under test: an event's offset is committed only after Meta accepted it or its dead
letter (with a reason) reached the dead-letter topic. While the topic refuses a letter, neither
stage commits past that event, and neither loses it; once the topic takes writes again the stage
goes on, or it stops and a restart re-reads the event and dead-letters it.

The broker refuses a letter here in two ways, both changes an operator makes to a live cluster:
the topic is deleted (the test broker has ``auto.create.topics.enable=false``), or its
``max.message.bytes`` is lowered below the letter's size. (``min.insync.replicas`` above the
replica count refuses nothing on one broker: Kafka caps the effective minimum at the replica
count, so that case needs a cluster and is not run here.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.dead_letter import record_size
from stream.core.errors import KafkaError
from stream.deliver.stage import Deliverer
from stream.normalizer import Normalizer
from stream.sim import FaultConfig, PoisonRule, SimConfig, Simulator
from tests.brokers.provision import KafkaCluster
from tests.factories import custom_data, raw_event
from tests.integration.chaos import Supervised, wait_for
from tests.integration.helpers import (
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    wait_until,
)
from tests.integration.refusals import (
    FITS_ALONE,
    SHRUNK_LIMIT,
    admin_client,
    alter_topic,
    commits_watched,
    committed,
    create_topics,
    delete_topic,
    exists,
    letters,
    normalize_past_a_shrunk_topic,
    outputs_per_source,
    padding,
    raw_items,
    set_record_limit,
)

pytestmark = pytest.mark.integration

TOKEN, PIXEL = "tok-dlq-refused-5e2", "4004"


# -- the deliver stage ------------------------------------------------------------------------


class Running:
    """A deliver stage run in a thread; ``outcome`` is its stats or the error that stopped it."""

    def __init__(self, settings: Settings) -> None:
        self.stage = Deliverer(settings)
        self.outcome: object = None
        self.thread = threading.Thread(target=self._run, name="deliver-stage", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = self.stage.run(max_idle_s=600)
        except Exception as exc:  # noqa: BLE001 - the test reads which error stopped it
            self.outcome = exc

    def stop(self) -> object:
        self.stage.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the deliver stage did not stop"
        return self.outcome


def deliver_settings(bootstrap: str, names: dict[str, str], sim: Simulator) -> Settings:
    return stage_settings(
        bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 50, "commit_min_interval_s": 0.05,
                   "revoke_timeout_s": 2},
    )  # fmt: skip


def enriched(event_id: str, now: float, **overrides: Any) -> tuple[bytes, bytes]:
    return event_id.encode(), enriched_value(event_id, PIXEL, now, **overrides)


def accepted_ids(sim: Simulator) -> Counter[str]:
    return Counter({event_id: n for (_, event_id), n in sim.stats().received.items()})


def test_deliver_a_letter_the_shrunk_topic_refuses_stops_the_stage_and_a_restart_cuts_it(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """Meta rejects one 250 KB event (a poison rule: code 100 for it alone) right after the
    dead-letter topic's max.message.bytes went down to 100,000: its letter, made with the limit
    read at start, is refused (MSG_SIZE_TOO_LARGE). The stage stops with that error and commits
    nothing past the event meanwhile, though Meta took the events after it; a restart (the topic
    still shrunk) reads the new limit, cuts the letter to fit and commits to the end."""
    names = stage_names(unique)
    create_topics(kafka_bootstrap, names["enriched"], names["dlq"])
    now = time.time()
    poison = PoisonRule("event_id", "equals", "bad", message="Poisoned by the test.")
    with Simulator(SimConfig(tokens={TOKEN: frozenset({PIXEL})})) as sim:
        sim.set_faults(FaultConfig(poison=(poison,)))
        settings = deliver_settings(kafka_bootstrap, names, sim)
        produce(kafka_bootstrap, names["enriched"], [enriched(f"a{i}", now) for i in range(5)])
        first = Running(settings)
        wait_until(lambda: sim.stats().accepted == 5, 30, "the first five accepted")
        set_record_limit(kafka_bootstrap, names["dlq"], SHRUNK_LIMIT)
        bad = enriched("bad", now, custom_data=custom_data(custom_properties={"pad": padding()}))
        after = [enriched(f"b{i}", now) for i in range(4)]
        with commits_watched(kafka_bootstrap, names["deliverer_group"], names["enriched"]) as seen:
            produce(kafka_bootstrap, names["enriched"], [bad, *after])  # offsets 5..9
            first.thread.join(45)
        assert not first.thread.is_alive(), "the stage neither stopped nor dead-lettered"
        assert isinstance(first.outcome, KafkaError), first.outcome
        assert "MSG_SIZE_TOO_LARGE" in str(first.outcome)
        assert seen, "no committed offset was read"
        assert max(seen) <= 5, f"committed past the refused letter: {max(seen)}"
        assert letters(settings) == []

        second = Running(settings)  # the supervisor's restart; the limit is still lowered
        try:
            wait_until(
                lambda: committed(kafka_bootstrap, names["deliverer_group"], names["enriched"])
                == 10, 30, "the restart to commit to the end",
            )  # fmt: skip
        finally:
            outcome = second.stop()
        assert not isinstance(outcome, BaseException), outcome
        got = accepted_ids(sim)
    assert set(got) == {f"a{i}" for i in range(5)} | {f"b{i}" for i in range(4)}
    ((record, letter),) = letters(settings)
    assert (letter["stage"], letter["reason"], letter["event_id"]) == (
        "deliver", "rejected_by_meta", "bad")  # fmt: skip
    assert letter["source"]["offset"] == 5
    assert letter["original_truncated"] is True
    assert record_size(record.key, record.value, record.headers) <= SHRUNK_LIMIT


def test_deliver_waits_for_a_deleted_dead_letter_topic_and_goes_on_when_it_is_back(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """The dead-letter topic is deleted while the stage runs; then an event past Meta's age
    limit arrives among fresh ones (a delivery rule refuses it before any request). Its letter
    cannot be written: the fresh events are still delivered, but nothing is committed past the
    expired one. The topic is created again within librdkafka's 30 s metadata grace: the same
    stage, without a restart, writes the letter and commits to the end."""
    names = stage_names(unique)
    create_topics(kafka_bootstrap, names["enriched"], names["dlq"])
    now = time.time()
    with Simulator(SimConfig(tokens={TOKEN: frozenset({PIXEL})})) as sim:
        settings = deliver_settings(kafka_bootstrap, names, sim)
        produce(kafka_bootstrap, names["enriched"], [enriched(f"a{i}", now) for i in range(5)])
        stage = Running(settings)
        try:
            wait_until(lambda: sim.stats().accepted == 5, 30, "the first five accepted")
            delete_topic(kafka_bootstrap, names["dlq"])
            old = enriched("old", now - 8 * 86_400)
            with commits_watched(
                kafka_bootstrap, names["deliverer_group"], names["enriched"]
            ) as seen:
                produce(kafka_bootstrap, names["enriched"],
                        [old, *(enriched(f"b{i}", now) for i in range(4))])  # fmt: skip
                wait_until(lambda: sim.stats().accepted == 9, 20, "the fresh events accepted")
                # the fresh events settled after the expired one: a commit past it would come now
                wait_until(lambda: len(seen) >= 20, 10, "two seconds of commit samples")
                assert stage.thread.is_alive(), stage.outcome
            assert seen, "no committed offset was read"
            assert max(seen) <= 5, f"committed past the unwritten letter: {max(seen)}"
            create_topics(kafka_bootstrap, names["dlq"])
            wait_until(
                lambda: committed(kafka_bootstrap, names["deliverer_group"], names["enriched"])
                == 10, 25, "the commit to the end once the topic is back",
            )  # fmt: skip
            assert stage.thread.is_alive(), stage.outcome  # it went on: no restart was needed
        finally:
            outcome = stage.stop()
        assert not isinstance(outcome, BaseException), outcome
        assert set(accepted_ids(sim)) == {f"a{i}" for i in range(5)} | {f"b{i}" for i in range(4)}
    ((_, letter),) = letters(settings)
    assert (letter["stage"], letter["reason"], letter["event_id"]) == ("deliver", "expired", "old")
    assert letter["source"]["offset"] == 5


# -- the normalize stage ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("processing", ["exactly_once", "at_least_once"])
def test_normalize_a_letter_the_shrunk_topic_refuses_does_not_stall_the_partition(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path, processing: str
) -> None:
    """The dead-letter topic's max.message.bytes goes down to 100,000 while the stage runs
    (under a supervisor that restarts it when it exits); then a raw event without pixel_id,
    250 KB, arrives between valid ones. Its letter keeps the original whole and the broker
    refuses it. The stage must not commit past it, and must get past it within 40 s: a fresh
    start reads the lowered limit and cuts the letter to fit. Every raw record then has its
    output: exactly one in exactly_once, at most two (one repeat of the batch) in
    at_least_once."""
    past = normalize_past_a_shrunk_topic(
        kafka_bootstrap, unique, tmp_path / "normalizer.log", processing=processing,
        shrink="dlq", pixel_id=None,
    )  # fmt: skip
    assert set(past.per_source) == set(range(12))
    most = 1 if processing == "exactly_once" else 2
    assert max(past.per_source.values()) <= most, past.per_source
    assert {(letter["reason"], letter["source"]["offset"]) for _, letter in past.dead} == {
        ("missing_pixel_id", 8)
    }
    for record, _ in past.dead:
        assert record_size(record.key, record.value, record.headers) <= SHRUNK_LIMIT


@pytest.mark.slow
def test_normalize_exactly_once_survives_a_deleted_dead_letter_topic(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path
) -> None:
    """The dead-letter topic is deleted under a running exactly-once normalizer, then a raw
    event without pixel_id arrives among valid ones. The transaction cannot commit (the letter's
    topic is gone): the stage does not commit past it, and ends itself when its call deadline
    passes (its supervisor restarts it). Once the topic is created again every raw record has
    exactly one output for read_committed readers, the letter among them."""
    names = stage_names(unique)
    create_topics(kafka_bootstrap, names["raw"], names["enriched"], names["dlq"])
    settings = stage_settings(
        kafka_bootstrap, names,
        normalizer={"processing": "exactly_once", "poll_timeout_s": 0.2, "call_timeout_s": 4},
    )  # fmt: skip
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    group, raw = names["normalizer_group"], names["raw"]
    stage = Supervised(["normalize"], settings, tmp_path / "normalizer.log")
    stage.start()
    try:
        produce(kafka_bootstrap, raw, raw_items(codec, [f"a{i}" for i in range(5)], now))
        wait_for(lambda: committed(kafka_bootstrap, group, raw) == 5, 60, "the first batch",
                 tick=stage.ensure)  # fmt: skip
        delete_topic(kafka_bootstrap, names["dlq"])
        bad = raw_items(codec, ["bad"], now, pixel_id=None)
        items = [*raw_items(codec, ["b0", "b1"], now), *bad, *raw_items(codec, ["b2", "b3"], now)]
        with commits_watched(kafka_bootstrap, group, raw) as seen:
            produce(kafka_bootstrap, raw, items)  # offsets 5..9, the letter's at 7
            wait_for(lambda: stage.starts >= 2, 30, "the stage to end itself and be restarted",
                     tick=stage.ensure)  # fmt: skip
        assert seen, "no committed offset was read"
        assert max(seen) <= 5, f"committed past the unwritten letter: {max(seen)}"
        create_topics(kafka_bootstrap, names["dlq"])
        wait_for(lambda: committed(kafka_bootstrap, group, raw) == 10, 60, "a commit to the end",
                 tick=stage.ensure)  # fmt: skip
    finally:
        stage.stop()
    per_source, dead = outputs_per_source(settings)
    assert per_source == Counter(dict.fromkeys(range(10), 1))
    assert [(letter["reason"], letter["source"]["offset"]) for _, letter in dead] == [
        ("missing_pixel_id", 7)
    ]


# -- letters that each fit, refused together --------------------------------------------------


def test_deliver_letters_that_each_fit_the_topics_limit_are_not_refused_together(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """The dead-letter topic was made with max.message.bytes 100,000 (a limit the stage honours:
    it reads it at start and cuts any larger letter). Five 60 KB events past Meta's age limit
    arrive together: each letter fits, so none is cut. The broker checks the limit against a
    record batch, and librdkafka batches all five: the stage must still write every letter and
    commit to the end, not stop (and stop again at every restart)."""
    names = stage_names(unique)
    create_topics(kafka_bootstrap, names["enriched"])
    create_topics(kafka_bootstrap, names["dlq"], config={"max.message.bytes": str(SHRUNK_LIMIT)})
    now = time.time()
    old = [
        enriched(f"old{i}", now - 8 * 86_400,
                 custom_data=custom_data(custom_properties={"pad": padding(FITS_ALONE)}))
        for i in range(5)
    ]  # fmt: skip
    produce(kafka_bootstrap, names["enriched"], [*old, *(enriched(f"b{i}", now) for i in range(3))])
    with Simulator(SimConfig(tokens={TOKEN: frozenset({PIXEL})})) as sim:
        settings = deliver_settings(kafka_bootstrap, names, sim)
        stats = Deliverer(settings).run(max_idle_s=2)  # raises when a letter is refused
        assert set(accepted_ids(sim)) == {"b0", "b1", "b2"}
    assert stats.dead_lettered == 5
    dead = letters(settings)
    assert sorted(letter["event_id"] for _, letter in dead) == [f"old{i}" for i in range(5)]
    assert not any(letter["original_truncated"] for _, letter in dead)
    assert committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == 8


def test_normalize_letters_that_each_fit_the_topics_limit_are_not_refused_together(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """The same for the normalize stage (exactly_once): five raw events without pixel_id, 60 KB
    each, in one poll batch; the dead-letter topic takes 100,000 bytes. Each letter fits, so the
    transaction must commit with all five, not be aborted and re-read (forever)."""
    names = stage_names(unique)
    create_topics(kafka_bootstrap, names["raw"], names["enriched"])
    create_topics(kafka_bootstrap, names["dlq"], config={"max.message.bytes": str(SHRUNK_LIMIT)})
    settings = stage_settings(kafka_bootstrap, names, normalizer={"poll_timeout_s": 0.2})
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    bad = [
        (f"bad{i}".encode(), codec.encode(raw_event(
            event_id=f"bad{i}", event_time=now, pixel_id=None,
            custom_data=custom_data(custom_properties={"pad": padding(FITS_ALONE)}),
        )))
        for i in range(5)
    ]  # fmt: skip
    produce(kafka_bootstrap, names["raw"], [*bad, *raw_items(codec, ["b0", "b1", "b2"], now)])
    stage = Normalizer(settings)
    thread = threading.Thread(target=stage.run, name="normalize-stage", daemon=True)
    thread.start()
    group, raw = names["normalizer_group"], names["raw"]
    try:
        wait_until(
            lambda: stage.stats.aborted > 0 or committed(kafka_bootstrap, group, raw) == 8,
            60, "the batch committed or aborted",
        )  # fmt: skip
    finally:
        stage.stop()
        thread.join(60)
    assert stage.stats.aborted == 0, "the transaction with the five letters was aborted"
    assert committed(kafka_bootstrap, group, raw) == 8
    per_source, dead = outputs_per_source(settings)
    assert per_source == Counter(dict.fromkeys(range(8), 1))
    assert sorted(letter["reason"] for _, letter in dead) == ["missing_pixel_id"] * 5


# -- too few replicas in sync (a retriable refusal), on three brokers --------------------------


def set_min_insync(bootstrap: str, topic: str, value: int | None) -> None:
    """Set the topic's ``min.insync.replicas`` (None: back to the cluster's default)."""
    alter_topic(bootstrap, topic, "min.insync.replicas", None if value is None else str(value))


@pytest.mark.slow
def test_both_stages_wait_while_too_few_replicas_are_in_sync_and_go_on_after(
    kafka_cluster: KafkaCluster, unique: Callable[[str], str]
) -> None:
    """Three brokers, one of them down (every topic keeps two replicas in sync); then the
    dead-letter topic's min.insync.replicas goes up to 3 while both stages run: every letter
    is refused with NOT_ENOUGH_REPLICAS, which librdkafka retries. A raw event without pixel_id
    (normalize, exactly_once) and an expired enriched event (deliver) arrive with a valid one
    each. Neither stage commits past its event meanwhile (the deliver stage still delivers the
    event after it); once the setting is back to 2 both go on without a restart: one letter
    each, every other event once, both groups committed to the end."""
    bootstrap = kafka_cluster.bootstrap
    names = stage_names(unique)
    names["deliver_input"] = unique("enr2")  # the deliver stage's own input: no open transaction
    admin = admin_client(bootstrap)
    topics = [NewTopic(names[n], 1, 3) for n in ("raw", "enriched", "dlq", "deliver_input")]
    for future in admin.create_topics(topics).values():
        future.result(60)

    def dlq_leader() -> int:
        topic = admin.list_topics(timeout=10).topics.get(names["dlq"])
        return -1 if topic is None or 0 not in topic.partitions else topic.partitions[0].leader

    wait_until(lambda: dlq_leader() >= 0 and exists(bootstrap, *(t.topic for t in topics)),
               60, "the topics' leaders")  # fmt: skip
    leader = dlq_leader()
    victim = next(node.node_id for node in kafka_cluster.nodes if node.node_id != leader)
    kafka_cluster.kill(victim)

    def in_sync() -> int:
        return len(admin.list_topics(timeout=10).topics[names["dlq"]].partitions[0].isrs)

    wait_until(lambda: in_sync() == 2, 60, "the dead-letter topic's ISR without the node")
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    with Simulator(SimConfig(tokens={TOKEN: frozenset({PIXEL})})) as sim:
        settings = stage_settings(
            bootstrap, names, access_token=TOKEN,
            # a normalize call blocked past call_timeout_s ends the process: keep it far away
            normalizer={"poll_timeout_s": 0.2, "call_timeout_s": 90},
            deliverer={"graph_url": sim.url, "linger_ms": 50, "commit_min_interval_s": 0.05,
                       "revoke_timeout_s": 2},
        )  # fmt: skip
        d_topics = settings.topics.model_copy(update={"enriched": names["deliver_input"]})
        d_settings = settings.model_copy(update={"topics": d_topics})
        produce(bootstrap, names["raw"], raw_items(codec, ["a0"], now))
        produce(bootstrap, names["deliver_input"], [enriched("x0", now)])
        normalizer = Normalizer(settings)
        n_thread = threading.Thread(target=normalizer.run, name="normalize-stage", daemon=True)
        n_thread.start()
        deliverer = Running(d_settings)
        raw, norm_group = names["raw"], names["normalizer_group"]
        d_input, d_group = names["deliver_input"], names["deliverer_group"]
        try:
            wait_until(lambda: committed(bootstrap, norm_group, raw) == 1, 60, "normalize start")
            wait_until(lambda: committed(bootstrap, d_group, d_input) == 1, 60, "deliver start")
            set_min_insync(bootstrap, names["dlq"], 3)
            with (
                commits_watched(bootstrap, norm_group, raw) as n_seen,
                commits_watched(bootstrap, d_group, d_input) as d_seen,
            ):
                produce(bootstrap, raw, [*raw_items(codec, ["bad"], now, pixel_id=None),
                                         *raw_items(codec, ["a1"], now)])  # fmt: skip
                produce(bootstrap, d_input, [enriched("old", now - 8 * 86_400),
                                             enriched("x1", now)])  # fmt: skip
                wait_until(lambda: "x1" in accepted_ids(sim), 30, "the event after the expired")
                wait_until(lambda: len(d_seen) >= 30, 15, "three seconds of commit samples")
            assert d_seen, "no committed offset was read"
            assert max(d_seen) <= 1, f"deliver committed past the refused letter: {max(d_seen)}"
            # (the normalize group's offsets cannot be read while its transaction is open)
            assert max(n_seen, default=0) <= 1, "normalize committed past the refused letter"
            assert letters(settings) == [], "a letter was written: nothing was refused"
            assert n_thread.is_alive()
            assert deliverer.thread.is_alive(), deliverer.outcome
            set_min_insync(bootstrap, names["dlq"], None)
            wait_until(lambda: committed(bootstrap, norm_group, raw) == 3, 60, "normalize end")
            wait_until(lambda: committed(bootstrap, d_group, d_input) == 3, 60, "deliver end")
            assert n_thread.is_alive()
            assert deliverer.thread.is_alive(), deliverer.outcome  # no restart was needed
        finally:
            normalizer.stop()
            n_thread.join(60)
            outcome = deliverer.stop()
        assert not isinstance(outcome, BaseException), outcome
        assert set(accepted_ids(sim)) == {"x0", "x1"}
    per_source, dead = outputs_per_source(settings)
    assert per_source == Counter(dict.fromkeys(range(3), 1))
    assert sorted((letter["stage"], letter["reason"]) for _, letter in dead) == [
        ("deliver", "expired"), ("normalize", "missing_pixel_id"),
    ]  # fmt: skip
