"""What the simulator has received, per pixel: counts, the dedup store, injected faults.

Dedup follows docs/capi.md §7.1 on the server's clock: per pixel, an (event_name, event_id) seen
within the last 48 hours is a duplicate; past the window it counts as new again. Events without
an ``event_id`` cannot be deduplicated and are always accepted. ``received`` keeps how many times
each key arrived in an accepted request (first copy and duplicates), so a test can assert that
every event arrived exactly once. With the journal on, each processed request is also kept as a
:class:`JournalEntry`, so a test can tell *when* each copy of an event arrived (e.g. before or
after a crash of the client).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.core.capi import DEDUP_WINDOW_SECONDS

EventKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of one pixel, or of all pixels summed (``received`` then sums per key too).

    ``accepted`` counts first copies, ``duplicates`` later copies within the window,
    ``rejected`` the events of requests refused for their content or credentials, and
    ``test_events`` those sent with a ``test_event_code`` (kept apart from the rest).
    ``requests`` counts every request to the events edges, ``faults`` the injected ones by kind.
    """

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    test_events: int = 0
    requests: int = 0
    without_event_id: int = 0
    faults: Mapping[str, int] = field(default_factory=dict)
    received: Mapping[EventKey, int] = field(default_factory=dict)

    @property
    def event_keys(self) -> frozenset[EventKey]:
        """Every (event_name, event_id) accepted at least once."""
        return frozenset(self.received)

    def missing(self, expected: Iterable[EventKey]) -> set[EventKey]:
        """The expected keys that never arrived."""
        return set(expected) - self.received.keys()

    def repeated(self) -> dict[EventKey, int]:
        """The keys that arrived more than once, with their arrival counts."""
        return {key: n for key, n in self.received.items() if n > 1}

    def exactly_once(self, expected: Iterable[EventKey]) -> bool:
        """Whether the accepted keys are exactly ``expected``, each arrived once."""
        return self.received.keys() == set(expected) and all(n == 1 for n in self.received.values())

    def to_dict(self, *, include_ids: bool = False) -> dict[str, Any]:
        """The JSON form of ``GET /_sim/stats``; ``received`` as [[name, id, count], ...]."""
        out: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "test_events": self.test_events,
            "requests": self.requests,
            "without_event_id": self.without_event_id,
            "faults": dict(self.faults),
        }
        if include_ids:
            out["received"] = [[name, eid, n] for (name, eid), n in self.received.items()]
        return out


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One processed request to an events edge, in the order the answers were made.

    ``arrived_at`` is when its head was read (before any injected latency), ``answered_at``
    when its answer was made; ``keys`` are the events it recorded (a short receipt records
    fewer than it was sent: ``sent`` says how many came).
    """

    pixel_id: str
    arrived_at: float
    answered_at: float
    sent: int
    keys: tuple[EventKey, ...]
    short: bool


class _Pixel:
    __slots__ = (
        "accepted",
        "duplicates",
        "faults",
        "first_seen",
        "received",
        "rejected",
        "requests",
        "test_events",
        "without_event_id",
    )

    def __init__(self) -> None:
        self.accepted = self.duplicates = self.rejected = 0
        self.test_events = self.requests = self.without_event_id = 0
        self.faults: dict[str, int] = {}
        self.first_seen: dict[EventKey, float] = {}
        self.received: dict[EventKey, int] = {}

    def snapshot(self, include_ids: bool) -> Stats:
        return Stats(
            self.accepted,
            self.duplicates,
            self.rejected,
            self.test_events,
            self.requests,
            self.without_event_id,
            dict(self.faults),
            dict(self.received) if include_ids else {},
        )


class Recorder:
    """The per-pixel record; thread-safe (the server writes, tests read from another thread)."""

    def __init__(
        self,
        clock: Callable[[], float],
        window: float = DEDUP_WINDOW_SECONDS,
        *,
        journal: bool = False,
    ) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._pixels: dict[str, _Pixel] = {}
        self._journal: list[JournalEntry] | None = [] if journal else None

    def _pixel(self, pixel_id: str) -> _Pixel:
        pixel = self._pixels.get(pixel_id)
        if pixel is None:
            pixel = self._pixels[pixel_id] = _Pixel()
        return pixel

    def request(self, pixel_id: str) -> None:
        with self._lock:
            self._pixel(pixel_id).requests += 1

    def fault(self, pixel_id: str, kind: str) -> None:
        with self._lock:
            faults = self._pixel(pixel_id).faults
            faults[kind] = faults.get(kind, 0) + 1

    def reject(self, pixel_id: str, events: int) -> None:
        with self._lock:
            self._pixel(pixel_id).rejected += events

    def accept(
        self, pixel_id: str, events: Sequence[dict[str, Any]], *, test: bool = False
    ) -> tuple[int, int]:
        """Record a valid request's events; returns (first copies, duplicates)."""
        now = self._clock()
        window = self._window
        accepted = duplicates = anonymous = 0
        with self._lock:
            pixel = self._pixel(pixel_id)
            if test:
                pixel.test_events += len(events)
                return 0, 0
            first_seen, received = pixel.first_seen, pixel.received
            for event in events:
                event_id = event.get("event_id")
                if event_id is None or event_id == "":
                    anonymous += 1
                    continue
                key = (event["event_name"], event_id if type(event_id) is str else str(event_id))
                seen = first_seen.get(key)
                if seen is not None and now - seen < window:
                    duplicates += 1
                else:
                    first_seen[key] = now
                    accepted += 1
                received[key] = received.get(key, 0) + 1
            pixel.accepted += accepted + anonymous
            pixel.duplicates += duplicates
            pixel.without_event_id += anonymous
        return accepted + anonymous, duplicates

    def log(self, entry: JournalEntry) -> None:
        """Keep ``entry`` when the journal is on."""
        with self._lock:
            if self._journal is not None:
                self._journal.append(entry)

    def journal(self) -> list[JournalEntry]:
        """The requests processed so far (empty when the journal is off)."""
        with self._lock:
            return list(self._journal or ())

    def stats(self, pixel_id: str | None = None, *, include_ids: bool = True) -> Stats:
        """One pixel's snapshot (zeros if it never saw a request), or all pixels summed."""
        with self._lock:
            if pixel_id is not None:
                pixel = self._pixels.get(pixel_id)
                return pixel.snapshot(include_ids) if pixel else Stats()
            parts = [p.snapshot(include_ids) for p in self._pixels.values()]
        faults: dict[str, int] = {}
        received: dict[EventKey, int] = {}
        for part in parts:
            for kind, n in part.faults.items():
                faults[kind] = faults.get(kind, 0) + n
            for key, n in part.received.items():
                received[key] = received.get(key, 0) + n
        return Stats(
            sum(p.accepted for p in parts),
            sum(p.duplicates for p in parts),
            sum(p.rejected for p in parts),
            sum(p.test_events for p in parts),
            sum(p.requests for p in parts),
            sum(p.without_event_id for p in parts),
            faults,
            received,
        )

    def pixel_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._pixels)

    def reset(self) -> None:
        """Forget everything: counts, the dedup store, the fault tally."""
        with self._lock:
            self._pixels.clear()
            if self._journal is not None:
                self._journal.clear()
