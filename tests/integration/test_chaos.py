"""Chaos, bounded: kill -9 either stage at random moments, Graph faults, one broker bounce.

One seeded run (``CHAOS_SEED`` picks another) on a private single broker, under a steady
publish load, with both stages as processes restarted as a supervisor would. The schedule (which
stage dies when, when the broker is SIGKILLed and for how long) is drawn from the seed; the
simulator answers with transient errors, resets, hangs and short receipts. Afterwards every
invariant of issue 10 is checked from what the topics, the group offsets, the simulator and the
logs hold. The whole test takes about 90 seconds (75 of them under load).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream.sim import FaultConfig, Latency, SimConfig, Simulator
from stream.sim.state import EventKey
from tests.brokers.provision import KafkaBroker
from tests.integration.chaos import (
    PII,
    SteadyPublisher,
    Supervised,
    assert_exactly_once,
    committed,
    data_ends,
    end_offsets,
    leaks,
    outcomes,
    undelivered,
    wait_for,
)
from tests.integration.helpers import stage_names, stage_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = int(os.environ.get("CHAOS_SEED", "20261201"))
PARTITIONS = 3
PIXELS = ("41001", "41002", "41003")
TOKENS = {"chaos-tok-a-4f1e": PIXELS[0], "chaos-tok-b-77c2": PIXELS[1],
          "chaos-tok-c-0d9a": PIXELS[2]}  # fmt: skip
APP_SECRET = "chaos-appsecret-5be1a7"
RATE = 100.0  # raw events per second
PUBLISH_S = 75.0  # how long the load (and the chaos) lasts
STAGE_KILLS = 6  # three of each stage
MAX_EVENTS = 100  # events per Graph request
MAX_IN_FLIGHT = 4  # requests in flight, all lanes together
REQUEST_TIMEOUT_S, RETRY_MAX_S = 2.0, 1.0
#: How long an accepted event may stay uncommitted: three failed attempts of the request of an
#: earlier event in its partition (timeout plus the longest backoff each), plus a restart.
COMMIT_LAG_BOUND_S = 3 * (REQUEST_TIMEOUT_S + RETRY_MAX_S) + 3
#: Transient answers the deliverer must retry (never dead-letter), and short receipts.
FAULT_RATES = {"http_500": 0.03, "http_503": 0.03, "code_2": 0.02, "reset": 0.02, "hang": 0.01,
               "short_receipt": 0.04}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DelivererKill:
    """What the simulator and the group held around one kill of the deliverer.

    ``before`` are the keys the simulator had accepted just before the SIGKILL, ``after`` those
    it had once the dead process's requests in flight had landed, ``committed`` the group's
    offsets then (the restarted process starts there).
    """

    at: float
    before: frozenset[EventKey]
    after: Mapping[EventKey, int]
    committed: Mapping[int, int]


def _schedule(rng: random.Random) -> tuple[list[tuple[float, str]], float, float]:
    """Stage kills (second, stage) and the broker bounce (second, seconds down), from the seed.

    Stage kills keep clear of the broker's outage so the group offsets of a killed deliverer
    can be read before it is restarted (a supervisor would restart it at once; the test only
    needs those offsets to measure re-sends).
    """
    bounce_at, down_s = rng.uniform(25, 40), rng.uniform(8, 15)
    targets = ["normalize", "deliver"] * (STAGE_KILLS // 2)
    rng.shuffle(targets)
    kills: list[tuple[float, str]] = []
    for target in targets:
        while True:
            at = rng.uniform(6, PUBLISH_S - 3)
            clear_of_bounce = not bounce_at - 3 < at < bounce_at + down_s + 8
            if clear_of_bounce and all(abs(at - t) > 3 for t, _ in kills):
                break
        kills.append((at, target))
    return sorted(kills), bounce_at, down_s


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    """A private broker: the test SIGKILLs it, which the session's broker must never see."""
    broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="capi-chaos-kafka-"))).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    faults = FaultConfig(
        seed=SEED, rates=FAULT_RATES, latency=Latency(kind="uniform", min_ms=10, max_ms=60),
        hang_seconds=3.0, hang_mode="close", short_receipts_first=2,
    )  # fmt: skip
    tokens = {tok: frozenset({pixel}) for tok, pixel in TOKENS.items()}
    with Simulator(SimConfig(tokens=tokens, app_secret=APP_SECRET, faults=faults)) as simulator:
        yield simulator


def _quiet(sim: Simulator, for_s: float = 0.6) -> Callable[[], bool]:
    """True once the simulator has seen no new request for ``for_s`` (in-flight ones landed)."""
    seen = {"requests": -1, "since": time.monotonic()}

    def check() -> bool:
        now, requests = time.monotonic(), sim.stats().requests
        if requests != seen["requests"]:
            seen.update(requests=requests, since=now)
        return now - seen["since"] >= for_s

    return check


def test_chaos_kills_faults_and_a_broker_bounce_break_no_invariant(
    broker: KafkaBroker, unique: Callable[[str], str], sim: Simulator, tmp_path: Path
) -> None:
    """Under load: stage kills, Graph faults, short receipts, a broker bounce; then all invariants.

    Re-sends are measured per deliverer kill k, from the simulator's record of accepted keys
    and the group's committed offsets C_k read after the kill (before the restart):

    - accepted since the last commit, A_k: keys at an enriched offset >= C_k that the
      simulator had accepted just before the kill;
    - in flight, F_k: keys the simulator accepted after the kill, from the dead process's
      requests still in flight (waited for until the simulator is quiet);
    - re-sent, R_k: keys accepted before the restart whose arrival count grew while the next
      process ran (until the next kill, or the end).

    The bound asserted is R_k <= F_k + A_k (nothing at or below a commit is ever re-sent); in
    distinct events, not copies, because a re-sent batch may itself meet a short receipt or a
    reset and be sent again within the next process's life, which is a fault's re-send, not the
    crash's.

    A_k itself is not a constant: during a catch-up burst (after the broker's bounce the
    normalizer delivers its backlog at several hundred events a second) it is whatever was
    accepted while an earlier event of the same partition was still unconfirmed (in retry, or
    re-sent after a short receipt). What coalesced commits promise is a short *time*: the
    oldest accepted-but-uncommitted event at each kill must be younger than
    COMMIT_LAG_BOUND_S (three failed attempts of an earlier request plus a restart), where a
    2-second commit timer and lanes in backoff holding every partition made it unbounded.
    Kills wait 8 s after the broker's return, since no commit at all is possible while it is
    down (everything accepted then is "since the last commit").
    """
    began = time.monotonic()
    rng = random.Random(SEED)  # a repeatable schedule, not a secret
    kills, bounce_at, down_s = _schedule(rng)
    bootstrap = broker.bootstrap
    names = stage_names(unique)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for future in admin.create_topics(
        [NewTopic(names[t], PARTITIONS, 1) for t in ("raw", "enriched", "dlq")]
    ).values():
        future.result(30)
    settings = stage_settings(
        bootstrap, names,
        access_tokens={pixel: tok for tok, pixel in TOKENS.items()}, app_secret=APP_SECRET,
        normalizer={"poll_batch": 200, "call_timeout_s": 15.0},
        deliverer={"graph_url": sim.url, "linger_ms": 100, "max_events": MAX_EVENTS,
                   "max_in_flight": MAX_IN_FLIGHT, "max_in_flight_per_lane": 2,
                   "commit_interval_s": 1.0, "request_timeout_s": REQUEST_TIMEOUT_S,
                   "retry_base_s": 0.1, "retry_max_s": RETRY_MAX_S},
    )  # fmt: skip
    stages = {
        "normalize": Supervised(["normalize"], settings, tmp_path / "normalizer.log"),
        "deliver": Supervised(["deliver"], settings, tmp_path / "deliverer.log"),
    }
    group, enriched_topic = names["deliverer_group"], names["enriched"]

    first_seen: dict[EventKey, float] = {}  # when the test first saw the simulator hold a key

    def supervise() -> None:
        for stage in stages.values():
            stage.ensure()
        now = time.monotonic()
        for key in sim.stats().received.keys() - first_seen.keys():
            first_seen[key] = now

    deliverer_kills: list[DelivererKill] = []
    broker_down_s = 0.0
    calm_from = 0.0  # stage kills wait until the stages had 8 s with the broker back
    publisher = SteadyPublisher(bootstrap, names["raw"], PIXELS, rate=RATE, prefix="ch").start()
    t0 = time.monotonic()
    for stage in stages.values():
        stage.start()
    actions: list[tuple[float, str]] = [*kills, (bounce_at, "broker")]
    actions.sort()
    try:
        for at, what in actions:
            due = max(t0 + at, calm_from)
            wait_for(lambda d=due: time.monotonic() >= d, PUBLISH_S + 60, what, supervise)
            supervise()  # a stage that just exited by itself is restarted, then killed
            if what == "broker":
                broker.kill()
                down_began = time.monotonic()
                back_at = down_began + down_s
                wait_for(lambda b=back_at: time.monotonic() >= b, 30, "the outage", supervise)
                broker.restart()
                broker_down_s = time.monotonic() - down_began
                calm_from = time.monotonic() + 8
            elif what == "normalize":
                stages["normalize"].kill9()
                stages["normalize"].start()
            else:
                # mid-stream: the kill comes right after the simulator accepted something new
                accepted = sim.stats().accepted
                wait_for(lambda a=accepted: sim.stats().accepted > a, 60, "deliveries", supervise)
                supervise()
                killed_at = time.monotonic()
                before = frozenset(sim.stats().received)
                stages["deliver"].kill9()
                wait_for(_quiet(sim), 15, "requests in flight to land")
                after = dict(sim.stats().received)
                offsets = None

                def read_offsets() -> bool:
                    nonlocal offsets
                    offsets = committed(bootstrap, group, enriched_topic, PARTITIONS)
                    return offsets is not None

                wait_for(read_offsets, 30, "the dead deliverer's committed offsets")
                assert offsets is not None
                deliverer_kills.append(DelivererKill(killed_at - t0, before, after, offsets))
                stages["deliver"].start()
            # a restarted stage runs at least 3 s before the next kill, however late this one was
            calm_from = max(calm_from, time.monotonic() + 3)
        wait_for(lambda: time.monotonic() - t0 >= PUBLISH_S, 60, "the end of the load", supervise)
        raw_count = publisher.finish()
        load_s = time.monotonic() - t0
        raw_ends = end_offsets(bootstrap, names["raw"], PARTITIONS)
        assert sum(raw_ends.values()) == raw_count
        drain = wait_for(
            lambda: committed(bootstrap, names["normalizer_group"], names["raw"], PARTITIONS)
            == raw_ends, 120, "normalize to commit the end of raw", supervise,
        )  # fmt: skip
        out = outcomes(bootstrap, names, raw_count)
        ends = data_ends(out, PARTITIONS)

        def delivered() -> bool:
            offsets = committed(bootstrap, group, enriched_topic, PARTITIONS)
            return offsets is not None and all(offsets[p] >= ends[p] for p in ends)

        drain += wait_for(delivered, 120, "deliver to commit the end of enriched", supervise)
    finally:
        publisher.finish()
        stop_codes = {name: stage.stop() for name, stage in stages.items()}
    final = sim.stats()

    # 1. each raw record exactly once in enriched or dead letters (read_committed)
    assert_exactly_once(out, raw_ends)
    assert any(stage == "normalize" for stage, _ in out.reasons), out.reasons  # the garbage
    # 2. each enriched event accepted by the simulator or dead-lettered with a reason
    assert undelivered(out, sim) == set()
    assert all(out.deliver_letters.values())
    # 3. nothing stuck: both groups committed to the end (checked by the waits above)
    # 4. re-sends within the bound, per deliverer kill
    where = {event_id: at for at, event_id in out.enriched_ids.items()}
    figures = []
    for k, kill in enumerate(deliverer_kills):
        later = deliverer_kills[k + 1].after if k + 1 < len(deliverer_kills) else final.received
        uncommitted = {
            key for key in kill.after
            if (at := where.get(key[1])) is not None and at[1] >= kill.committed.get(at[0], 0)
        }  # fmt: skip
        accepted_since_commit = len(uncommitted & kill.before)
        # how long the oldest accepted-uncommitted event had been accepted (to 0.2 s)
        oldest = min((first_seen[key] for key in uncommitted & kill.before if key in first_seen),
                     default=t0 + kill.at)  # fmt: skip
        lag = t0 + kill.at - oldest
        recent = sum(1 for t in first_seen.values() if t0 + kill.at - 3 <= t <= t0 + kill.at)
        in_flight = len(kill.after.keys() - kill.before)
        resent = {key for key, n in kill.after.items() if later.get(key, 0) > n}
        copies = sum(later[key] - kill.after[key] for key in resent)
        figures.append(
            (
                round(kill.at),
                len(kill.before),
                accepted_since_commit,
                in_flight,
                len(resent),
                copies,
                round(lag, 1),
                recent,
            )
        )
        assert resent <= uncommitted, f"kill {k}: re-sent events below the committed offset"
        assert len(resent) <= in_flight + accepted_since_commit, figures[-1]
        assert lag <= COMMIT_LAG_BOUND_S, f"kill {k}: commits held back {lag:.1f}s: {figures}"
    # 5. no token, app secret or raw PII in any log or dead letter
    forbidden = (*TOKENS, APP_SECRET, *PII)
    logs = [stage.log.read_text(errors="replace") for stage in stages.values()]
    # the logs hold what they should, so an empty scan means clean, not blind
    assert '"batch delivered"' in logs[1]
    assert '"started"' in logs[0]
    found = leaks(forbidden, "stage log", logs) + leaks(forbidden, "dead letter", out.letter_texts)
    assert found == [], "\n".join(found[:20])
    # the chaos did happen
    assert stages["normalize"].kills + stages["deliver"].kills == STAGE_KILLS
    assert sum(final.faults.values()) >= 10, final.faults
    assert final.faults.get("short_receipt", 0) >= 2, final.faults

    print(  # the figures the report quotes (pytest -s)
        f"\nchaos seed {SEED}: {raw_count} raw over {load_s:.0f}s, {len(out.enriched)} enriched, "
        f"dead letters {dict(out.reasons)}; kills {kills}; broker down {broker_down_s:.1f}s at "
        f"{bounce_at:.0f}s; self-exits normalize {stages['normalize'].exits} deliver "
        f"{stages['deliver'].exits}; sim faults {dict(final.faults)}, duplicates "
        f"{final.duplicates}; per deliverer kill (s, accepted so far, A accepted-uncommitted, "
        f"F in flight, R re-sent, copies, oldest uncommitted s, accepted in last 3 s) "
        f"{figures}; drained in {drain:.1f}s; "
        f"stop codes {stop_codes}; {time.monotonic() - began:.0f}s"
    )
    assert stop_codes == {"normalize": 0, "deliver": 0}, {n: s.tail() for n, s in stages.items()}
