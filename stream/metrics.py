"""Prometheus metrics: :class:`PrometheusSensor` turns the stages' sensor calls into series.

The stages call ``sensor.count("dead_lettered", stage="deliver", reason="expired")``; this module
owns what that becomes on ``/metrics``: ``capi_stream_dead_lettered_total{reason="expired",
stage="deliver"}``. :data:`METRICS` is the table of known names (type, help, labels); a name not
in it is created on first use, typed by the call that made it, as ``capi_stream_<name>``.

Labels are a closed set (:data:`LABELS`) and their values are checked, because a label is
exported verbatim to every scraper and kept for weeks: a token or an e-mail address in one would
leak far beyond the process. A value that does not look like a code (lowercase snake case) or,
for ``pixel``, like a pixel id (digits) is exported as ``other``. Each metric also caps its number
of series, so a bug that labels by something unbounded cannot exhaust memory.

Each sensor has its own :class:`~prometheus_client.CollectorRegistry`, so tests and several
stages in one process never collide in the library's global registry.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from stream.core.capi import MAX_AGE_PHYSICAL_STORE_SECONDS, MAX_AGE_SECONDS
from stream.core.match_quality import CUSTOM, MATCH_KEYS, STANDARD_EVENTS
from stream.core.sensors import Sensor
from stream.logs import get_logger

log = get_logger("capi_stream.metrics")

PREFIX: Final = "capi_stream_"
#: The only label names ever exported; any other label a caller passes is dropped.
LABELS: Final = frozenset(
    {"stage", "reason", "pixel", "outcome", "kind", "warning", "event_name", "key", "action_source"}
)
#: What an unacceptable label value, or a series past the cap, is exported as.
OTHER: Final = "other"
#: Series per metric before new label sets collapse into ``other``.
DEFAULT_MAX_SERIES: Final = 2000

# codes are what the stages put in labels: reasons, outcomes, kinds, warnings, stages
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PIXEL = re.compile(r"[0-9]{1,32}")
_NAME_JUNK = re.compile(r"[^a-zA-Z0-9_]")

#: Seconds: from a fast loopback answer to the 30 s request timeout and past it.
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Events per request, up to Meta's 1,000.
BATCH_BUCKETS: Final = (1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 750.0, 1000.0)

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One known metric: its type, help text, label names and (histograms) buckets."""

    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


#: Sensor name → what it is exported as (``capi_stream_<name>``, counters with ``_total``).
METRICS: Final[Mapping[str, MetricSpec]] = {
    # both stages
    "consumed": MetricSpec("counter", "Records read from the stage's input topic.", ("stage",)),
    "dead_lettered": MetricSpec(
        "counter",
        "Records written to the dead-letter topic, by stage and reason.",
        ("stage", "reason"),
    ),
    "consumer_lag": MetricSpec(
        "gauge",
        "Records on the broker not yet read: high watermark minus position, summed over the "
        "assigned partitions.",
        ("stage",),
    ),
    "commit_lag": MetricSpec(
        "gauge",
        "Records read but not yet covered by a committed offset, summed over the assigned "
        "partitions.",
        ("stage",),
    ),
    "assigned_partitions": MetricSpec("gauge", "Partitions assigned to this process.", ("stage",)),
    # normalize
    "enriched": MetricSpec("counter", "Records written to the enriched topic."),
    "normalize_warnings": MetricSpec(
        "counter", "Fields dropped or repaired during normalization, by warning.", ("warning",)
    ),
    "transactions": MetricSpec(
        "counter", "Kafka transactions of the normalize stage, by outcome.", ("outcome",)
    ),
    # normalize: match keys (stream.core.match_quality), counted per committed batch
    "events_by_name": MetricSpec(
        "counter",
        "Events written to the enriched topic, per pixel and event name (standard names; "
        "every other name is custom).",
        ("pixel", "event_name"),
    ),
    "match_key_events": MetricSpec(
        "counter",
        "Enriched events carrying a customer key after normalization, per pixel, event name "
        "and key (ip_ua: IP address with user agent); divide by events_by_name for coverage.",
        ("pixel", "event_name", "key"),
    ),
    "derived_event_id": MetricSpec(
        "counter",
        "Enriched events whose event_id the stage derived from their content (the producer "
        "gave none), per pixel, event name and action_source. A website event's derived id "
        "never matches the browser pixel's eventID, so Meta counts both.",
        ("pixel", "event_name", "action_source"),
    ),
    "match_key_score": MetricSpec(
        "gauge",
        "Local match-key score (0-10) of the events enriched in the last report interval, per "
        "pixel and event name: an estimate from key coverage with documented weights, not "
        "Meta's Event Match Quality.",
        ("pixel", "event_name"),
    ),
    # deliver
    "batches": MetricSpec("counter", "Batches handed to a lane for sending.", ("pixel",)),
    "requests": MetricSpec(
        "counter", "HTTP requests to the Graph API or Gateway, by outcome.", ("pixel", "outcome")
    ),
    "events_posted": MetricSpec("counter", "Events in requests Meta accepted.", ("pixel",)),
    "events_received": MetricSpec(
        "counter", "The events_received Meta reported for accepted requests.", ("pixel",)
    ),
    "short_receipts": MetricSpec(
        "counter",
        "2xx answers counting fewer events than sent (re-sent, then dead-lettered).",
        ("pixel",),
    ),
    "retries": MetricSpec("counter", "Requests retried, by failure class.", ("kind",)),
    "commits": MetricSpec("counter", "Offset commits of the deliver stage."),
    "request_seconds": MetricSpec(
        "histogram", "Latency of one HTTP request to Meta, in seconds.", buckets=REQUEST_BUCKETS
    ),
    "batch_events": MetricSpec("histogram", "Events per request.", buckets=BATCH_BUCKETS),
    "in_flight": MetricSpec("gauge", "HTTP requests in flight."),
    "pending": MetricSpec(
        "gauge",
        "Events read and not yet accepted by Meta or dead-lettered (consumer pauses "
        "past deliverer.max_pending).",
    ),
    "lanes_halted": MetricSpec(
        "gauge", "Lanes halted by a setup error (bad token, missing permission)."
    ),
    "oldest_pending_age_seconds": MetricSpec(
        "gauge",
        "The EVENT's age (now minus its event_time) of the oldest pending event per pixel: "
        "what Meta's age limit reads; compare with capi_stream_event_age_limit_seconds, Meta "
        "rejects events past it. An event 6 days old when published shows 6 days at once.",
        ("pixel",),
    ),
    "oldest_pending_wait_seconds": MetricSpec(
        "gauge",
        "How long the oldest pending event per pixel has waited in the deliver stage (now "
        "minus when the stage read it): a stuck or throttled lane, whatever the events' age.",
        ("pixel",),
    ),
    "event_age_limit_seconds": MetricSpec(
        "gauge", "Meta's limit on event age, by kind (default, physical_store).", ("kind",)
    ),
}


class PrometheusSensor:
    """A :class:`~stream.core.sensors.Sensor` that exports to Prometheus; never raises.

    >>> sensor = PrometheusSensor()
    >>> sensor.count("dead_lettered", stage="deliver", reason="expired")
    >>> 'capi_stream_dead_lettered_total{reason="expired",stage="deliver"} 1.0' in sensor.text()
    True
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        max_series: int = DEFAULT_MAX_SERIES,
        process_metrics: bool = True,
    ) -> None:
        # prometheus_client exports a `_created` sample beside every counter and histogram
        # (the time the series was made): a second series per series that no dashboard or
        # alert reads. Off for the whole process, which exports only through this class.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.max_series = max_series
        self._lock = threading.Lock()
        self._metrics: dict[str, tuple[MetricSpec, Any]] = {}
        self._series: dict[str, set[tuple[str, ...]]] = {}
        self._complained: set[tuple[str, str]] = set()
        if process_metrics:
            # CPU, memory, open files and GC of this process: what a stuck worker shows first
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        limits = self._metric("event_age_limit_seconds", "gauge")
        if limits is not None:
            limits[1].labels(kind="default").set(MAX_AGE_SECONDS)
            limits[1].labels(kind="physical_store").set(MAX_AGE_PHYSICAL_STORE_SECONDS)

    # -- the Sensor protocol -----------------------------------------------------------------

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to the counter ``capi_stream_<name>_total``."""
        try:
            child = self._child(name, "counter", labels)
            if child is not None:
                child.inc(value)
        except Exception as exc:  # noqa: BLE001 - a sensor must never break the stage it observes
            self._complain(name, "failed", exc)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Set the gauge ``capi_stream_<name>``."""
        try:
            child = self._child(name, "gauge", labels)
            if child is not None:
                child.set(value)
        except Exception as exc:  # noqa: BLE001 - as in count
            self._complain(name, "failed", exc)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation in the histogram ``capi_stream_<name>``."""
        try:
            child = self._child(name, "histogram", labels)
            if child is not None:
                child.observe(value)
        except Exception as exc:  # noqa: BLE001 - as in count
            self._complain(name, "failed", exc)

    # -- exposition --------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition text and its content type (OpenMetrics when ``accept`` asks for it)."""
        if not accept:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def text(self) -> str:
        """The Prometheus text format, for tests and debugging."""
        return generate_latest(self.registry).decode()

    # -- internals ---------------------------------------------------------------------------

    def _child(self, name: str, kind: Kind, labels: Mapping[str, str]) -> Any:
        entry = self._metric(name, kind, labels)
        if entry is None:
            return None
        spec, metric = entry
        if not spec.labels:
            if labels:
                self._complain(name, "labels", f"unexpected labels {sorted(labels)}")
            return metric
        extra = set(labels) - set(spec.labels)
        if extra:
            self._complain(name, "labels", f"labels {sorted(extra)} are not exported")
        values = tuple(_clean(label, labels.get(label, "")) for label in spec.labels)
        values = self._capped(name, values)
        return metric.labels(*values)

    def _metric(
        self, name: str, kind: Kind, labels: Mapping[str, str] | None = None
    ) -> tuple[MetricSpec, Any] | None:
        entry = self._metrics.get(name)
        if entry is None:
            with self._lock:
                entry = self._metrics.get(name)
                if entry is None:
                    entry = self._create(name, kind, labels or {})
                    self._metrics[name] = entry
        if entry[0].kind != kind:
            self._complain(name, "kind", f"{name} is a {entry[0].kind}, not a {kind}")
            return None
        return entry

    def _create(self, name: str, kind: Kind, labels: Mapping[str, str]) -> tuple[MetricSpec, Any]:
        spec = METRICS.get(name)
        if spec is None:
            # not in the table: the first call fixes the type and the (allowed) label names
            help_text = f"{name}: reported by a stage, not described in stream.metrics.METRICS."
            spec = MetricSpec(kind, help_text, tuple(sorted(set(labels) & LABELS)))
        full = PREFIX + _NAME_JUNK.sub("_", name)
        args: dict[str, Any] = {"registry": self.registry, "labelnames": spec.labels}
        if spec.kind == "counter":
            metric: Any = Counter(full, spec.help, **args)
        elif spec.kind == "gauge":
            metric = Gauge(full, spec.help, **args)
        else:
            buckets = spec.buckets or Histogram.DEFAULT_BUCKETS
            metric = Histogram(full, spec.help, buckets=buckets, **args)
        self._series[name] = set()
        return spec, metric

    def _capped(self, name: str, values: tuple[str, ...]) -> tuple[str, ...]:
        seen = self._series[name]
        if values in seen:
            return values
        with self._lock:
            if len(seen) >= self.max_series:
                self._complain(name, "cap", f"more than {self.max_series} series")
                values = tuple(OTHER for _ in values)
            seen.add(values)
        return values

    def _complain(self, name: str, what: str, detail: object) -> None:
        """Log a misuse once per metric and kind of misuse (a hot path must not flood the log)."""
        if (name, what) in self._complained:
            return
        self._complained.add((name, what))
        # the detail names labels and types, never label values: those are what we refuse
        text = type(detail).__name__ if isinstance(detail, BaseException) else str(detail)
        log.warning("sensor call ignored", metric=name, problem=what, detail=text)


#: Labels whose values form a closed set: anything else is exported as ``other``.
_CLOSED: Final[Mapping[str, frozenset[str]]] = {
    "event_name": STANDARD_EVENTS | {CUSTOM},
    "key": frozenset(MATCH_KEYS),
}


def _clean(label: str, value: str) -> str:
    """``value`` when it is safe to export as ``label``, else :data:`OTHER`; missing is empty.

    ``pixel`` must be digits; ``event_name`` a standard event name or ``custom``
    (:func:`stream.core.match_quality.event_label` makes it so); ``key`` a match key; every
    other label a code (lowercase snake case).
    """
    if not isinstance(value, str):
        value = str(value)  # a pixel id passed as an int is still a pixel id
    if value == "":
        return ""
    closed = _CLOSED.get(label)
    if closed is not None:
        return value if value in closed else OTHER
    pattern = _PIXEL if label == "pixel" else _CODE
    return value if pattern.fullmatch(value) else OTHER


class TeeSensor:
    """Reports every call to several sensors (Prometheus and a :class:`MemorySensor` summary)."""

    def __init__(self, *sensors: Sensor) -> None:
        self.sensors = sensors

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        for sensor in self.sensors:
            sensor.count(name, value, **labels)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        for sensor in self.sensors:
            sensor.gauge(name, value, **labels)

    def observe(self, name: str, value: float, **labels: str) -> None:
        for sensor in self.sensors:
            sensor.observe(name, value, **labels)
