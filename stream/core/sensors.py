"""Metrics as hooks: the stages report through :class:`Sensor`; Prometheus is one implementation.

Label values are reason codes, stages, pixel ids and outcome classes, never tokens or customer data.
"""

from __future__ import annotations

from typing import Protocol


class Sensor(Protocol):
    """What a stage reports; every method must be cheap and must never raise."""

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to the counter ``name``."""

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Set the gauge ``name``."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation (a latency in seconds, a batch size) of ``name``."""


class NullSensor:
    """A sensor that records nothing."""

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Record nothing."""

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Record nothing."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record nothing."""


class MemorySensor:
    """Keeps totals in memory: for tests and for the demo's summary."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.observations: dict[str, list[float]] = {}

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0.0) + value

    def gauge(self, name: str, value: float, **labels: str) -> None:
        self.gauges[(name, tuple(sorted(labels.items())))] = value

    def observe(self, name: str, value: float, **labels: str) -> None:  # noqa: ARG002
        self.observations.setdefault(name, []).append(value)

    def total(self, name: str, **labels: str) -> float:
        """Sum of counter ``name`` over every label set that includes ``labels``."""
        want = set(labels.items())
        return sum(v for (n, lbl), v in self.counters.items() if n == name and want <= set(lbl))
