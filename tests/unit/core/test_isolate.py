"""Bad-event isolation: every good event delivered, every bad one dead-lettered, few requests."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.graph_response import Invalid, MetaError
from stream.core.isolate import Dead, Isolation, Probe

ERROR = MetaError(100, 2804003, "OAuthException", "Invalid parameter")


@dataclass
class Run:
    delivered: list[int]
    dead: list[Dead[int]]
    requests: int


def failure(items: tuple[int, ...], bad: Collection[int], *, names: str) -> Invalid | None:
    """The simulated Meta: a request fails iff it holds a bad event.

    ``names`` is "none" (no index), "first" (the index of the first bad event) or "wrong" (the
    index of a good neighbour, as a 1-based index would be).
    """
    positions = [i for i, item in enumerate(items) if item in bad]
    if not positions:
        return None
    error = MetaError(100, None, "OAuthException", f"bad event {items[positions[0]]}")
    if names == "first":
        return Invalid(error, positions[0])
    if names == "wrong":
        good = [i for i, item in enumerate(items) if item not in bad]
        return Invalid(error, good[0] if good else None)
    return Invalid(error, None)


def isolate(
    n: int,
    bad: Collection[int],
    *,
    names: str = "none",
    trust_index: bool = True,
    rnd: random.Random | None = None,
) -> Run:
    """Drive an isolation against the simulated Meta; ``rnd`` shuffles verdict order."""
    items = tuple(range(n))
    isolation: Isolation[int] = Isolation(items, trust_index=trust_index)
    first = failure(items, bad, names=names)
    assert first is not None
    step = isolation.start(first)
    queue: deque[Probe[int]] = deque(step.to_send)
    dead = list(step.dead)
    delivered: list[int] = []
    while queue:
        if rnd is not None:
            queue.rotate(rnd.randrange(len(queue)))
        probe = queue.popleft()
        verdict = failure(probe.items, bad, names=names)
        if verdict is None:
            delivered.extend(probe.items)
        step = isolation.on_result(probe, verdict)
        queue.extend(step.to_send)
        dead.extend(step.dead)
    assert isolation.done
    return Run(sorted(delivered), dead, isolation.requests)


def bisection_bound(n: int, k: int) -> int:
    """Probes for k bad events among n: two per failing probe, min(2**d, k) of them per level."""
    return 2 * sum(min(1 << d, k) for d in range(math.ceil(math.log2(n))))


def test_one_bad_event_among_1000_costs_at_most_2_log2_n_plus_1_requests() -> None:
    """For every position of one bad event among 1,000, with no index from Meta, isolation
    takes at most 2*ceil(log2 1000) = 20 probes: 21 requests with the rejected original."""
    n = 1000
    worst = 0
    for bad in range(n):
        run = isolate(n, {bad})
        assert [d.item for d in run.dead] == [bad]
        assert run.delivered == [i for i in range(n) if i != bad]
        worst = max(worst, run.requests)
    assert worst + 1 <= 2 * math.ceil(math.log2(n)) + 1
    assert worst == 20


@pytest.mark.parametrize("n", range(2, 70))
def test_the_single_bad_event_bound_holds_for_every_small_batch(n: int) -> None:
    """Uneven halves never add a level: probes <= 2*ceil(log2 n) for every n and position."""
    for bad in range(n):
        assert isolate(n, {bad}).requests <= 2 * math.ceil(math.log2(n))


@pytest.mark.parametrize("k", [2, 5, 10, 50])
def test_k_bad_events_cost_at_most_two_probes_per_failing_probe(k: int) -> None:
    """k bad events among 1,000 stay within 2*sum(min(2**d, k)) probes, far below k separate
    isolations and far below one request per event."""
    n = 1000
    rnd = random.Random(k)
    bound = bisection_bound(n, k)
    for _ in range(20):
        bad = set(rnd.sample(range(n), k))
        run = isolate(n, bad)
        assert sorted(d.item for d in run.dead) == sorted(bad)
        assert run.delivered == [i for i in range(n) if i not in bad]
        assert run.requests <= bound
    assert bound <= k * 2 * math.ceil(math.log2(n))
    # spread evenly, the bad events split apart as early as possible: the worst case
    spread = isolate(n, set(range(0, n, n // k)))
    assert spread.requests <= bound
    assert {2: 38, 5: 84, 10: 150, 50: 526}[k] == bound


def test_a_named_bad_event_costs_one_request() -> None:
    """When Meta names the event, it is dead-lettered at once and the rest re-sent once."""
    run = isolate(1000, {417}, names="first")
    assert run.requests == 1
    assert [d.item for d in run.dead] == [417]
    assert len(run.delivered) == 999


def test_named_bad_events_cost_one_request_each() -> None:
    """If the re-sent rest fails again naming the next one, isolation goes on: k requests."""
    run = isolate(1000, {3, 500, 999}, names="first")
    assert run.requests == 3
    assert sorted(d.item for d in run.dead) == [3, 500, 999]
    assert len(run.delivered) == 997


def test_a_trusted_wrong_index_dead_letters_the_named_event() -> None:
    """trust_index=True believes Meta: the named event is dead-lettered without a probe."""
    run = isolate(10, {4}, names="wrong")
    assert 0 in [d.item for d in run.dead]


def test_an_untrusted_wrong_index_never_dead_letters_a_good_event() -> None:
    """trust_index=False probes the named event alone, so only bad events end dead."""
    run = isolate(100, {4, 60}, names="wrong", trust_index=False)
    assert sorted(d.item for d in run.dead) == [4, 60]
    assert run.delivered == [i for i in range(100) if i not in (4, 60)]


def test_an_untrusted_right_index_costs_one_extra_request() -> None:
    """Confirming the named event alone costs one probe more than trusting it."""
    assert isolate(1000, {417}, names="first", trust_index=False).requests == 2


def test_each_dead_letter_carries_the_error_of_its_own_request() -> None:
    """With bisection a dead event's error comes from the request that held only it."""
    run = isolate(64, {5, 40})
    assert {d.item: d.error.message for d in run.dead} == {5: "bad event 5", 40: "bad event 40"}


def test_a_single_rejected_event_is_dead_lettered_without_a_probe() -> None:
    """A batch of one that Meta rejects is already isolated."""
    isolation: Isolation[str] = Isolation(["e"])
    step = isolation.start(Invalid(ERROR, None))
    assert step.to_send == ()
    assert step.dead == (Dead("e", ERROR),)
    assert isolation.done
    assert isolation.requests == 0


def test_bisection_sends_both_halves_at_once() -> None:
    """Without an index the first step is the two halves, left one the smaller."""
    step = Isolation(list(range(5))).start(Invalid(ERROR, None))
    assert [p.items for p in step.to_send] == [(0, 1), (2, 3, 4)]


def test_an_index_outside_the_probe_is_ignored() -> None:
    """An index past the end of the probe falls back to bisection."""
    step = Isolation(list(range(4))).start(Invalid(ERROR, 9))
    assert [p.items for p in step.to_send] == [(0, 1), (2, 3)]


def test_outstanding_lists_probes_awaiting_a_verdict() -> None:
    """Until every probe is answered the isolation is not done."""
    isolation: Isolation[int] = Isolation(list(range(4)))
    step = isolation.start(Invalid(ERROR, None))
    assert not isolation.done
    assert isolation.outstanding == step.to_send
    isolation.on_result(step.to_send[0], None)
    assert not isolation.done
    isolation.on_result(step.to_send[1], None)
    assert isolation.done


def test_a_verdict_for_an_unknown_probe_raises() -> None:
    """A probe answered twice, or one from another isolation, is a caller bug."""
    isolation: Isolation[int] = Isolation(list(range(4)))
    probe = isolation.start(Invalid(ERROR, None)).to_send[0]
    isolation.on_result(probe, None)
    with pytest.raises(ValueError, match="not outstanding"):
        isolation.on_result(probe, None)
    with pytest.raises(ValueError, match="not outstanding"):
        isolation.on_result(Probe(1, (9, 9)), None)


def test_starting_twice_or_on_nothing_raises() -> None:
    """An isolation plans one rejected batch, which is never empty."""
    isolation: Isolation[int] = Isolation([1, 2])
    isolation.start(Invalid(ERROR, None))
    with pytest.raises(ValueError, match="already started"):
        isolation.start(Invalid(ERROR, None))
    with pytest.raises(ValueError, match="empty"):
        Isolation([])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 200),
    data=st.data(),
    names=st.sampled_from(["none", "first"]),
    trust_index=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_any_bad_set_ends_with_goods_delivered_and_bads_dead_exactly_once(
    n: int, data: st.DataObject, names: str, trust_index: bool, seed: int
) -> None:
    """Whatever the bad events, index hints and verdict order, each good event is delivered
    once and each bad one dead-lettered once, within the bisection bound."""
    bad = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n))
    run = isolate(n, bad, names=names, trust_index=trust_index, rnd=random.Random(seed))
    assert run.delivered == [i for i in range(n) if i not in bad]
    assert sorted(d.item for d in run.dead) == sorted(bad)
    if names == "none" and n > 1:
        assert run.requests <= bisection_bound(n, len(bad))
