"""Bad-event isolation: a pure state machine that splits a rejected batch until the culprits
stand alone.

Meta rejects a whole request for one bad event (docs/capi.md §1.5), so a rejected batch is split
and re-sent. When Meta names the event (``Invalid.event_index``) it is cut out and
dead-lettered with Meta's error, and the rest is re-sent as one probe. Otherwise the batch is
bisected: both halves are sent (concurrently, if the loop likes), a half that passes is
delivered, a half that fails is split again. A single event that fails is dead-lettered with
the error of the request that held only it, so every dead letter carries evidence about itself.

Cost of one bad event among n without an index, counting probes (the original request is one
more): each level of the halving tree sends two probes and only the failing half recurses,
halving never takes more than ceil(log2 n) levels, so probes <= 2*ceil(log2 n). Worked example,
n = 8, bad event 5::

    level 1  [0..3] ok   [4..7] fails
    level 2  [4,5] fails [6,7] ok
    level 3  [4] ok      [5] fails -> dead-lettered
    6 probes = 2*ceil(log2 8); 7 requests with the original

With k bad events a level holds at most min(2**d, k) failing probes, so probes <=
2 * sum(min(2**d, k) for d in 0..ceil(log2 n)-1), about 2k*log2(n/k) + 2k.

The loop retries a probe that failed transiently or was throttled unchanged; only the final
verdict (accepted, or Invalid) is reported to :meth:`Isolation.on_result`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from stream.core.graph_response import Invalid, MetaError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Probe(Generic[T]):
    """One request the isolation wants sent; ``seq`` tells probes with equal items apart."""

    seq: int
    items: tuple[T, ...]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Dead(Generic[T]):
    """An event to dead-letter, with the error Meta gave for it."""

    item: T
    error: MetaError


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    """What to do next: probes to send, events to dead-letter now."""

    to_send: tuple[Probe[T], ...]
    dead: tuple[Dead[T], ...]


class Isolation(Generic[T]):
    """Isolates the bad events of one rejected batch.

    ``trust_index=False`` sends the event Meta named alone instead of dead-lettering it at
    once: one more request, but a wrong or 1-based index can then never dead-letter a good event.
    """

    __slots__ = ("_items", "_next_seq", "_outstanding", "_requests", "_started", "_trust_index")

    def __init__(self, items: Sequence[T], *, trust_index: bool = True) -> None:
        if not items:
            raise ValueError("nothing to isolate: the batch is empty")
        self._items = tuple(items)
        self._trust_index = trust_index
        self._outstanding: dict[int, Probe[T]] = {}
        self._next_seq = 0
        self._requests = 0
        self._started = False

    def start(self, failure: Invalid) -> Step[T]:
        """Plan the first probes for the batch that was rejected with ``failure``."""
        if self._started:
            raise ValueError("isolation already started")
        self._started = True
        return self._split(self._items, failure)

    def on_result(self, probe: Probe[T], failure: Invalid | None) -> Step[T]:
        """Report a probe's verdict: None when Meta accepted it, else the Invalid it got.

        Accepted items are the caller's to ack; the returned step says what to send next.
        """
        known = self._outstanding.get(probe.seq)
        if known is None or (known is not probe and known != probe):
            raise ValueError(f"probe {probe.seq} is not outstanding")
        del self._outstanding[probe.seq]
        if failure is None:
            return Step((), ())
        return self._split(probe.items, failure)

    @property
    def done(self) -> bool:
        """Started, and no probe awaits a verdict: every event is delivered or dead."""
        return self._started and not self._outstanding

    @property
    def requests(self) -> int:
        """Probes handed out so far (the original rejected request not included)."""
        return self._requests

    @property
    def outstanding(self) -> tuple[Probe[T], ...]:
        """Probes sent or to be sent whose verdict has not come back."""
        return tuple(self._outstanding.values())

    def _split(self, items: tuple[T, ...], failure: Invalid) -> Step[T]:
        if len(items) == 1:
            return Step((), (Dead(items[0], failure.meta_error),))
        index = failure.event_index
        if index is not None and 0 <= index < len(items):
            rest = items[:index] + items[index + 1 :]
            if self._trust_index:
                return Step((self._probe(rest),), (Dead(items[index], failure.meta_error),))
            return Step((self._probe((items[index],)), self._probe(rest)), ())
        half = len(items) // 2
        return Step((self._probe(items[:half]), self._probe(items[half:])), ())

    def _probe(self, items: tuple[T, ...]) -> Probe[T]:
        probe = Probe(self._next_seq, items)
        self._next_seq += 1
        self._requests += 1
        self._outstanding[probe.seq] = probe
        return probe
