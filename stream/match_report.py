"""What the normalize stage tells about match keys: counters of committed events, a score gauge.

Per enriched event the stage does one thing on its hot path, :meth:`MatchReport.add`: it counts
the event in its group (pixel, event name, the customer keys it carries, read by
:func:`stream.core.match_quality.keys_of` once per shape of user_data and remembered). At each
commit the batch's groups join the pending ones; every few seconds (:meth:`MatchReport.report`)
they are added up per pixel and event name and exported:

- ``events_by_name_total{pixel,event_name}``, ``match_key_events_total{pixel,event_name,key}``;
- ``derived_event_id_total{pixel,event_name,action_source}``: events whose event_id the stage
  derived (:mod:`stream.core.event_id`) because the producer gave none;
- a warning, at most once per :data:`WARN_INTERVAL_S` per pixel, when website events arrive
  with a derived event_id: the browser pixel sends its own ``eventID``, a derived id never
  equals it, so Meta cannot deduplicate the two and counts the conversion twice;

and at most once per :data:`SCORE_INTERVAL_S`, ``match_key_score{pixel,event_name}``: the
local match-key score (:func:`stream.core.match_quality.local_score`: 0-10, an estimate, not
Meta's EMQ) of the events committed since the previous score. A row with no events in that
interval keeps its last score. Event names are labels through
:func:`~stream.core.match_quality.event_label` (standard names, else ``custom``), so the series
are bounded by pixels x 20 names x 27 keys.

Only committed batches count: an aborted transaction's records are read and counted again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

from stream.core.match_quality import Coverage, event_label, keys_of
from stream.core.normalize import WireEvent
from stream.core.sensors import Sensor
from stream.logs import get_logger

log = get_logger("capi_stream.normalizer")

#: Seconds between two updates of the ``match_key_score`` gauges.
SCORE_INTERVAL_S: Final = 10.0
#: Seconds between two warnings, per pixel, about website events with a derived event_id.
WARN_INTERVAL_S: Final = 300.0

_Row = tuple[str, str]  # (pixel, event label)
#: Distinct user_data shapes whose keys are remembered before the memory starts over.
_KNOWN_SHAPES: Final = 4096


class MatchReport:
    """Counts one stage's enriched events by pixel, event name and key (see the module doc)."""

    def __init__(
        self,
        sensor: Sensor,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        score_interval_s: float = SCORE_INTERVAL_S,
        warn_interval_s: float = WARN_INTERVAL_S,
    ) -> None:
        self._sensor = sensor
        self._monotonic = monotonic
        self._score_interval_s = score_interval_s
        self._warn_interval_s = warn_interval_s
        # the open batch: events per (pixel, event name, customer keys carried)
        self._batch: dict[tuple[str, str, frozenset[str]], int] = {}
        self._derived: list[tuple[str, str, str]] = []
        # user_data key names → the customer keys they make (the same for every such event)
        self._keys_by_names: dict[tuple[str, ...], frozenset[str]] = {}
        # committed and not yet reported to the sensor (groups as in the batch)
        self._pending: dict[tuple[str, str, frozenset[str]], int] = {}
        self._derived_counts: Counter[tuple[str, str, str]] = Counter()
        # the score's window: events and key counts per row since the last score
        self._window_events: Counter[_Row] = Counter()
        self._window_carrying: dict[_Row, Counter[str]] = {}
        self._next_score = monotonic() + score_interval_s
        # website events with a derived id, per pixel: not yet warned about, last warning
        self._unwarned: Counter[str] = Counter()
        self._warned_at: dict[str, float] = {}

    def add(self, event: WireEvent) -> None:
        """Note one enriched event of the open batch (the only per-event work, ~2 µs).

        The keys an event carries are remembered per tuple of its user_data's key names: that
        is exact for the stage's events, whose wire user_data holds only keys with a value
        (:func:`stream.core.normalize.normalize_wire`), so the names decide.
        """
        user_data = event.wire.get("user_data")
        names = tuple(user_data) if user_data else ()
        keys = self._keys_by_names.get(names)
        if keys is None:
            keys = self._keys(names, event.wire)
        group = (event.pixel_id, event.event_name, keys)
        batch = self._batch
        batch[group] = batch.get(group, 0) + 1
        if event.event_id_derived:
            self._derived.append((event.pixel_id, event.event_name, event.action_source))

    def discard(self) -> None:
        """The open batch was aborted: its records are read again, and counted then."""
        self._batch = {}
        self._derived.clear()

    def committed(self) -> None:
        """The open batch is committed: its groups join what :meth:`report` exports."""
        pending = self._pending
        for group, n in self._batch.items():
            pending[group] = pending.get(group, 0) + n
        for pixel, name, source in self._derived:
            self._derived_counts[(pixel, event_label(name), source)] += 1
            if source == "website":
                self._unwarned[pixel] += 1
        self._batch = {}
        self._derived.clear()
        if self._unwarned:
            self._warn()

    def report(self) -> None:
        """Export what was committed since the last call (the stage calls it every few
        seconds, and at close); the score gauges when :data:`SCORE_INTERVAL_S` has passed."""
        sensor = self._sensor
        events: Counter[_Row] = Counter()
        carrying: dict[_Row, Counter[str]] = {}
        for (pixel, name, keys), n in self._pending.items():
            row = (pixel, event_label(name))
            events[row] += n
            keyed = carrying.get(row)
            if keyed is None:
                keyed = carrying[row] = Counter()
            for key in keys:
                keyed[key] += n
        self._pending = {}
        for (pixel, label), n in events.items():
            sensor.count("events_by_name", n, pixel=pixel, event_name=label)
            for key, carried in carrying[(pixel, label)].items():
                sensor.count("match_key_events", carried, pixel=pixel, event_name=label, key=key)
            self._window_carrying.setdefault((pixel, label), Counter()).update(
                carrying[(pixel, label)]
            )
        self._window_events.update(events)
        for (pixel, label, source), n in self._derived_counts.items():
            sensor.count("derived_event_id", n, pixel=pixel, event_name=label, action_source=source)
        self._derived_counts.clear()
        now = self._monotonic()
        if now < self._next_score:
            return
        self._next_score = now + self._score_interval_s
        for (pixel, label), n in self._window_events.items():
            keyed = self._window_carrying.get((pixel, label), Counter())
            sensor.gauge("match_key_score", Coverage(n, keyed).score(), pixel=pixel,
                         event_name=label)  # fmt: skip
        self._window_events.clear()
        self._window_carrying.clear()

    def _keys(self, names: tuple[str, ...], wire: Mapping[str, Any]) -> frozenset[str]:
        """The customer keys of an event whose user_data has these key names, remembered."""
        known = self._keys_by_names
        if len(known) >= _KNOWN_SHAPES:
            known.clear()  # bounded: a few hundred shapes are usual
        keys = known[names] = keys_of(wire)
        return keys

    def _warn(self) -> None:
        now = self._monotonic()
        if len(self._warned_at) > _KNOWN_SHAPES:
            self._warned_at.clear()  # bounded: a bad mapping can make every event a "pixel"
        for pixel, n in list(self._unwarned.items()):
            last = self._warned_at.get(pixel)
            if last is not None and now - last < self._warn_interval_s:
                continue
            self._warned_at[pixel] = now
            del self._unwarned[pixel]
            log.warning(
                "website events without an event_id: the stage derived one, which never "
                "matches the browser pixel's eventID, so Meta cannot deduplicate them; send "
                "the pixel's eventID as event_id",
                # a pixel id is digits; anything else may be a mis-mapped value: never logged
                pixel=pixel if pixel.isdigit() and len(pixel) <= 32 else "other",
                events=n, since_s=None if last is None else round(now - last),
            )  # fmt: skip
