"""The lane batcher: groups pending events into requests, feed/flush shaped.

A lane is one ``(destination, pixel_id, test_event_code)``: events of different lanes can never
share a request. Each lane holds at most one open window. A window is cut into a :class:`Batch`
when the next event would break a limit (count or bytes: neither is ever exceeded), when it
has lingered long enough, or when its oldest-expiring event gets close to the age at which Meta
would reject the whole request.

The loop drives it like httpx's ``ByteChunker``::

    batches = batcher.add(event, now)     # ready because full
    batches += batcher.due(now)           # ready because of time
    sleep(batcher.next_deadline() - now)  # nothing can become due before then
    batches = batcher.flush()             # shutdown: everything that is left

Byte size is the size of the ``data`` JSON array as :mod:`stream.core.payload` splices it:
``2 + sum(len(event_json)) + (n - 1)`` (brackets and commas). Room for the rest of the body
(token, test_event_code) is the caller's margin when choosing ``max_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from stream.core.capi import MAX_EVENTS_PER_REQUEST
from stream.core.delivery_rules import DATA_ARRAY_OVERHEAD, fits
from stream.core.errors import ConfigError
from stream.core.records import TopicPartition
from stream.core.settlement import Unsettled

#: Meta documents no body-size limit; 4 MiB keeps requests far below common proxy limits while
#: letting the 1,000-event count be the limit that binds for normal events (~1 KiB each).
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: Flush an event this long before Meta would reject it, leaving time for a few retries.
DEFAULT_AGE_GUARD_S = 600.0

_BRACKETS = DATA_ARRAY_OVERHEAD  # b"[" and b"]"
_COMMA = 1


class LaneKey(NamedTuple):
    """Where a request goes; events of different lanes never share a request.

    A named tuple, not a dataclass: the windows look it up once per event, and a tuple is
    hashed and compared in C (a frozen dataclass's ``__hash__`` is a Python call each time).
    """

    destination: str
    pixel_id: str
    test_event_code: str | None = None


#: One event's request JSON: bytes, or a view of the tail of the record's value that holds it
#: (the enriched record's last field: the stage keeps the view, not a copy, while it waits).
Json = bytes | memoryview


class Pending(Protocol):
    """What a window holds of one event: the settlement's :class:`~stream.core.settlement.
    Unsettled` in the stage (one object per event, in every lane it goes to), a
    :class:`PendingEvent` outside it (tests, tools)."""

    @property
    def tp(self) -> TopicPartition: ...
    @property
    def offset(self) -> int: ...
    @property
    def lanes(self) -> tuple[Hashable, ...]: ...
    @property
    def event_json(self) -> Json: ...  # one serialized JSON object, spliced into the body as is
    @property
    def event_id(self) -> str: ...
    @property
    def event_name(self) -> str: ...
    @property
    def expires_at(self) -> float: ...  # unix seconds after which Meta rejects it (and its request)
    @property
    def entry(self) -> Unsettled | None: ...  # the stage's settlement state of the event


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One enriched event waiting for delivery on one lane, outside the stage (tests, tools).

    The stage does not make one per event: its windows hold its settlement's events, which
    have the same shape (:class:`Pending`).
    """

    tp: TopicPartition
    offset: int
    lane: LaneKey
    event_json: bytes  # one serialized JSON object, spliced into the body as is
    event_id: str
    event_name: str
    expires_at: float  # unix seconds after which Meta rejects the event (and its request)
    #: the stage's settlement state of the event (None outside the stage: tests, tools)
    entry: Unsettled | None = field(default=None, compare=False, repr=False)

    @property
    def lanes(self) -> tuple[Hashable, ...]:
        """Its one lane."""
        return (self.lane,)


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one request, in arrival order."""

    lane: LaneKey
    items: tuple[Pending, ...]
    size_bytes: int  # of the spliced ``data`` array
    created_at: float  # when the window opened (its first event arrived)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def expires_at(self) -> float:
        """When the first of its events expires; retrying past this is pointless."""
        return min(item.expires_at for item in self.items)


class _Window:
    """One lane's open window; mutable, private to the batcher."""

    __slots__ = ("deadline", "due_at", "expires_at", "items", "opened_at", "size_bytes")

    def __init__(self, opened_at: float, due_at: float) -> None:
        self.items: list[Pending] = []
        self.size_bytes = _BRACKETS
        self.opened_at = opened_at
        self.due_at = due_at  # when linger ends for this window
        self.expires_at = math.inf
        #: when it must be cut: linger's end, or its earliest expiry less the age guard
        self.deadline = due_at


class Batcher:
    """Cuts per-lane windows into batches; pure, time comes in as ``now``."""

    __slots__ = (
        "_age_guard_s", "_head_start", "_linger_s", "_max_bytes", "_max_events", "_windows",
    )  # fmt: skip

    def __init__(
        self,
        max_events: int = MAX_EVENTS_PER_REQUEST,
        max_bytes: int = DEFAULT_MAX_BYTES,
        linger_s: float = 1.0,
        age_guard_s: float = DEFAULT_AGE_GUARD_S,
        head_start: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``head_start()`` is taken off each new window's linger (the stage draws it at random,
        up to a tenth of linger): lanes whose first events arrive in one poll batch would
        otherwise close on the same tick, every time, and hit the receiver as one burst."""
        if not 1 <= max_events <= MAX_EVENTS_PER_REQUEST:
            raise ConfigError(f"max_events must be 1..{MAX_EVENTS_PER_REQUEST}, not {max_events}")
        if max_bytes < _BRACKETS + 2:  # the smallest event is b"{}"
            raise ConfigError(f"max_bytes is too small to hold any event: {max_bytes}")
        if linger_s < 0 or age_guard_s < 0:
            raise ConfigError("linger_s and age_guard_s must not be negative")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._linger_s = linger_s
        self._age_guard_s = age_guard_s
        self._head_start = head_start
        self._windows: dict[LaneKey, _Window] = {}

    def fits(self, item: Pending) -> bool:
        """Whether ``item`` fits a request on its own; one that does not must be dead-lettered."""
        return fits(len(item.event_json), self._max_bytes)

    def add(self, item: Pending, now: float, lane: LaneKey | None = None) -> list[Batch]:
        """Add one event to ``lane`` (by default its only lane); return the batches of the lane
        that became ready (zero, one or two).

        Raises ValueError for an event that :meth:`fits` rejects: no batch could hold it.
        """
        if lane is None:
            (only,) = item.lanes
            if not isinstance(only, LaneKey):
                raise TypeError(f"not a lane: {only!r}")
            lane = only
        size = len(item.event_json)
        if size + _BRACKETS > self._max_bytes:
            raise ValueError(f"event {item.event_id} of {size} bytes fits no batch")
        ready: list[Batch] = []
        window = self._windows.get(lane)
        if window is not None and window.size_bytes + _COMMA + size > self._max_bytes:
            # Cut before adding: the byte limit is never exceeded, not even by one event.
            ready.append(self._cut(lane))
            window = None
        if window is None:
            due_at = now + max(0.0, self._linger_s - self._head_start())
            window = self._windows[lane] = _Window(now, due_at)
            window.size_bytes += size
        else:
            window.size_bytes += size + _COMMA
        items = window.items
        items.append(item)
        expires_at = item.expires_at
        if expires_at < window.expires_at:
            window.expires_at = expires_at
            window.deadline = min(window.deadline, expires_at - self._age_guard_s)
        if len(items) >= self._max_events or window.deadline <= now:
            ready.append(self._cut(lane))
        return ready

    def due(self, now: float) -> list[Batch]:
        """Cut every window whose linger passed or whose oldest-expiring event is near its limit."""
        lanes = [lane for lane, window in self._windows.items() if window.deadline <= now]
        return [self._cut(lane) for lane in lanes]

    def flush(self) -> list[Batch]:
        """Cut every open window (shutdown, or before a final commit)."""
        return [self._cut(lane) for lane in list(self._windows)]

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`due` could return something; None when nothing is pending."""
        return min((w.deadline for w in self._windows.values()), default=None)

    def drop_partitions(self, tps: Iterable[TopicPartition]) -> list[Pending]:
        """Remove and return the pending events of revoked partitions.

        A window that loses events keeps its opening time: flushing a little early is harmless,
        waiting longer than ``linger_s`` promised is not.
        """
        revoked = frozenset(tps)
        dropped: list[Pending] = []
        for lane in list(self._windows):
            old = self._windows[lane]
            keep = [item for item in old.items if item.tp not in revoked]
            if len(keep) == len(old.items):
                continue
            dropped.extend(item for item in old.items if item.tp in revoked)
            if not keep:
                del self._windows[lane]
                continue
            new = self._windows[lane] = _Window(old.opened_at, old.due_at)
            new.size_bytes = _BRACKETS + sum(len(item.event_json) for item in keep) + len(keep) - 1
            new.items = keep
            new.expires_at = min(item.expires_at for item in keep)
            new.deadline = min(new.due_at, new.expires_at - self._age_guard_s)
        return dropped

    def __len__(self) -> int:
        """Events waiting in open windows."""
        return sum(len(w.items) for w in self._windows.values())

    def _cut(self, lane: LaneKey) -> Batch:
        window = self._windows.pop(lane)
        return Batch(lane, tuple(window.items), window.size_bytes, window.opened_at)
