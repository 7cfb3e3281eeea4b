"""``capi-stream quality serve``: Meta's quality numbers as Prometheus gauges, polled politely.

Exported (own registry, served on ``--metrics-port`` with ``/healthz`` and ``/readyz``)::

    meta_event_match_quality{pixel,event_name}               Meta's EMQ, 0-10
    meta_match_key_coverage_ratio{pixel,event_name,key}      share of events carrying a key
    meta_event_coverage_ratio{pixel,event_name}              event coverage (0-1)
    meta_event_coverage_goal_ratio{pixel,event_name}         Meta's goal for it (0-1)
    meta_quality_last_success_timestamp_seconds{pixel}       when a poll last succeeded
    meta_quality_poll_errors_total{pixel,kind}               failed polls by kind (and
                                                             missing_field, see below)

Labels are bounded like the stages' (:mod:`stream.metrics`): a pixel that is not digits is
``other``; event names go through :func:`~stream.core.match_quality.event_label` (custom names
are ``custom``; several custom rows of one pixel export the lowest of each value, so an alert on
a drop still fires); keys are the ``user_data`` keys (Meta's identifiers mapped by
:data:`stream.quality.model.IDENTIFIERS`), an unknown one is ``other``.

A failed poll changes no gauge: the last values stay, with the error counted and the last
success time telling how old they are. A successful poll sets what it answered; for the rest:

- an event name Meta no longer reports: its series are removed;
- a value Meta left out of a row (EMQ, event coverage, the whole key feedback): the last value
  stays and the poll counts one ``missing_field`` error (a renamed or retired field shows up
  there, not as a gauge that silently vanished or dropped to zero);
- a key Meta no longer lists in a row's key feedback: 0 (Meta lists only the keys it received,
  so a key that stopped being sent must read 0 for the coverage-drop alert to fire).

Polling: every ``interval_s`` (an hour by default; Meta computes these numbers over days, and
the API shares the app's rate limits with everything else). After a failure the next round comes
sooner, with full-jitter exponential backoff from ``retry_base_s`` up to the interval. A
throttle (codes 4, 17, 32, 613, 80000-80014, HTTP 429) ends the round at once (the limit is the
app's or the user's, so the next pixel would be refused too) and the next round waits at least
what Meta's headers ask and at least :data:`THROTTLE_FLOOR_S`.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.core.match_quality import MATCH_KEYS, event_label
from stream.core.retry import RetryPolicy
from stream.logs import get_logger
from stream.quality.model import DatasetQuality, MetaRow, PollFailure
from stream.quality.report import meta_ratios

log = get_logger("capi_stream.quality")

DEFAULT_INTERVAL_S: Final = 3600.0
DEFAULT_RETRY_BASE_S: Final = 60.0
#: The least a throttled poller waits before its next call, whatever the headers say.
THROTTLE_FLOOR_S: Final = 300.0
OTHER: Final = "other"
_PIXEL = re.compile(r"[0-9]{1,32}")
_KEYS = frozenset(MATCH_KEYS)
_SCALARS: Final = ("emq", "event_coverage", "coverage_goal")
#: A row naming one of these as missing has no key feedback (not: every key at 0).
_NO_FEEDBACK: Final = frozenset({"event_match_quality", "match_key_feedback"})

Fetch = Callable[[str], DatasetQuality | PollFailure]


def pixel_label(pixel: str) -> str:
    """A pixel id as a label value: digits, else ``other`` (never anything unbounded)."""
    return pixel if _PIXEL.fullmatch(pixel) else OTHER


class QualityMetrics:
    """The gauges of Meta's numbers and the poll bookkeeping, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.emq = Gauge(
            "meta_event_match_quality",
            "Meta's Event Match Quality (composite_score, 0-10) per pixel and event name.",
            ("pixel", "event_name"), registry=r,
        )  # fmt: skip
        self.key_coverage = Gauge(
            "meta_match_key_coverage_ratio",
            "Meta's share (0-1) of the events of a pixel and event name carrying a customer key.",
            ("pixel", "event_name", "key"), registry=r,
        )  # fmt: skip
        self.event_coverage = Gauge(
            "meta_event_coverage_ratio",
            "Meta's event coverage (0-1): browser events also sent by the server, 7-day average.",
            ("pixel", "event_name"), registry=r,
        )  # fmt: skip
        self.coverage_goal = Gauge(
            "meta_event_coverage_goal_ratio",
            "Meta's goal for the event coverage (0-1).",
            ("pixel", "event_name"), registry=r,
        )  # fmt: skip
        self.last_success = Gauge(
            "meta_quality_last_success_timestamp_seconds",
            "Unix time of the last successful Dataset Quality poll of a pixel.",
            ("pixel",), registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "meta_quality_poll_errors",
            "Failed Dataset Quality polls, by pixel and kind (throttled, transient, setup, "
            "invalid, malformed); the gauges keep their last values.",
            ("pixel", "kind"), registry=r,
        )  # fmt: skip
        self._series: dict[str, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def record(self, dataset: DatasetQuality, now: float) -> None:
        """A successful poll; see the module docstring for what happens to each series."""
        pixel = pixel_label(dataset.pixel)
        scalars, keys = _merge(dataset.rows)
        missing = False
        with self._lock:
            previous = self._series.get(pixel, set())
            fresh: set[tuple[str, ...]] = set()
            for name, values in scalars.items():
                for what, value in values.items():
                    if value is None:
                        # Meta left it out this time: the last value stays, and says so
                        missing = missing or what != "coverage_goal"
                        fresh |= {(what, name)} & previous
                        continue
                    getattr(self, what).labels(pixel, name).set(value)
                    fresh.add((what, name))
                ratios = keys.get(name)
                old_keys = {s for s in previous if s[0] == "key" and s[1] == name}
                if ratios is None:
                    missing = True
                    fresh |= old_keys
                    continue
                for key, ratio in ratios.items():
                    self.key_coverage.labels(pixel, name, key).set(ratio)
                    fresh.add(("key", name, key))
                for gone in old_keys - fresh:
                    # Meta lists only the keys it received: one it no longer lists is at 0
                    self.key_coverage.labels(pixel, name, gone[2]).set(0.0)
                    fresh.add(gone)
            for stale in previous - fresh:
                self._remove(pixel, stale)
            self._series[pixel] = fresh
            self.last_success.labels(pixel).set(now)
        if missing:
            self.errors.labels(pixel, "missing_field").inc()

    def _remove(self, pixel: str, series: tuple[str, ...]) -> None:
        if series[0] == "key":
            self.key_coverage.remove(pixel, series[1], series[2])
        else:
            getattr(self, series[0]).remove(pixel, series[1])

    def failed(self, failure: PollFailure) -> None:
        """A failed poll: counted; every gauge keeps its value."""
        self.errors.labels(pixel_label(failure.pixel), failure.kind).inc()


@dataclass(slots=True)
class Poller:
    """Polls each pixel once per round; :meth:`poll_round` says when the next round is due."""

    fetch: Fetch
    pixels: Sequence[str]
    metrics: QualityMetrics
    interval_s: float = DEFAULT_INTERVAL_S
    retry_base_s: float = DEFAULT_RETRY_BASE_S
    rnd: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.time
    failures: int = 0  # consecutive rounds with a failure
    rounds: int = 0

    def poll_round(self) -> float:
        """Poll every pixel (a throttle stops the round); seconds until the next round."""
        failed: list[PollFailure] = []
        for pixel in self.pixels:
            result = self.fetch(pixel)
            if isinstance(result, DatasetQuality):
                self.metrics.record(result, self.clock())
                continue
            failed.append(result)
            self.metrics.failed(result)
            log.warning(
                "dataset quality poll failed", pixel=pixel, kind=result.kind, code=result.code,
                problem=result.message,
            )  # fmt: skip
            if result.kind == "throttled":
                break
        self.rounds += 1
        return self._next_delay(failed)

    def _next_delay(self, failed: Sequence[PollFailure]) -> float:
        if not failed:
            self.failures = 0
            return self.interval_s
        self.failures += 1
        policy = RetryPolicy(base_s=min(self.retry_base_s, self.interval_s), max_s=self.interval_s)
        hints = [f.retry_after_s for f in failed if f.retry_after_s is not None]
        throttled = any(f.kind == "throttled" for f in failed)
        floor = max([*hints, THROTTLE_FLOOR_S]) if throttled else (max(hints) if hints else None)
        return policy.backoff(self.failures, self.rnd, floor)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set (a signal handler sets it); the first round at once."""
        while not stop.is_set():
            delay = self.poll_round()
            log.info("dataset quality polled", pixels=len(self.pixels), next_in_s=round(delay))
            stop.wait(delay)


def _merge(
    rows: Sequence[MetaRow],
) -> tuple[dict[str, dict[str, float | None]], dict[str, dict[str, float] | None]]:
    """Rows by event label: EMQ and event coverage (None: missing), key ratios (None: Meta gave
    no key feedback). Several rows of one label (custom names) keep the lowest of each value."""
    scalars: dict[str, dict[str, float | None]] = {}
    keys: dict[str, dict[str, float] | None] = {}
    for row in rows:
        name = event_label(row.event_name)
        into = scalars.setdefault(name, dict.fromkeys(_SCALARS))
        for what, value in zip(
            _SCALARS, (row.emq, row.event_coverage, row.coverage_goal), strict=True
        ):
            if value is not None:
                old = into[what]
                into[what] = value if old is None else min(old, value)
        keys.setdefault(name, None)
        if _NO_FEEDBACK & set(row.missing):
            continue
        ratios: dict[str, float] = keys[name] or {}
        for key, ratio in meta_ratios(row).items():
            label = key if key in _KEYS else OTHER
            ratios[label] = min(ratio, ratios.get(label, ratio))
        keys[name] = ratios
    return scalars, keys
