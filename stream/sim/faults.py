"""Deciding, per request, what goes wrong: latency, an error kind, an outage, a poisoned event.

Determinism: one ``random.Random(seed)`` per plan yields one 64-bit number per request in
arrival order; that number seeds the request's own draws (the kind, then the latency). So the
n-th request after a plan is applied always meets the same fate, however many random numbers a
latency distribution happens to consume.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from stream.core.json_values import number
from stream.sim.config import FAULT_KINDS, FaultConfig, Latency, PoisonRule
from stream.sim.validate import PoisonCheck

#: The kind a request gets while an outage lasts (not drawn: everything fails).
OUTAGE: Final = "outage"
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Plan:
    """The fate of one request: a fault kind (None: behave) and the latency before answering."""

    kind: str | None
    delay: float
    arrived_at: float = 0.0  # set by SimApp.admit: when the request arrived (its journal entry)


NO_FAULT: Final = Plan(None, 0.0)


def draw_latency(latency: Latency, rng: random.Random) -> float:
    """Seconds to wait, drawn from ``latency``'s distribution and capped."""
    kind = latency.kind
    if kind == "none":
        return 0.0
    if kind == "fixed":
        ms = latency.ms
    elif kind == "uniform":
        ms = rng.uniform(latency.min_ms, latency.max_ms)
    elif kind == "lognormal":
        ms = rng.lognormvariate(math.log(max(latency.median_ms, 1e-3)), latency.sigma)
    else:
        ms = latency.scale_ms * rng.paretovariate(latency.alpha)
    return min(ms, latency.cap_ms) / 1000.0


class FaultInjector:
    """Holds the current :class:`FaultConfig` and draws a :class:`Plan` per request.

    Thread-safe: the server draws from its loop thread while a test swaps the plan from its own.
    """

    def __init__(self, config: FaultConfig, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._config = config
        self._rng = random.Random(config.seed)  # noqa: S311 - repeatable faults, not secrets
        self._outage_until = 0.0
        self._bounds: list[tuple[float, str]] = []
        self._poison: PoisonCheck | None = None
        self._shorts_left = 0
        self.apply(config)

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def poison(self) -> PoisonCheck | None:
        return self._poison

    def apply(self, config: FaultConfig) -> None:
        """Replace the plan; the outage clock and the random sequence start again now."""
        bounds: list[tuple[float, str]] = []
        total = 0.0
        for kind in FAULT_KINDS:
            rate = config.rates.get(kind, 0.0)
            if rate > 0:
                total += rate
                bounds.append((total, kind))
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)  # noqa: S311 - repeatable, not secret
            self._bounds = bounds
            self._outage_until = self._clock() + config.outage_seconds
            self._poison = compile_poison(config.poison)
            self._shorts_left = config.short_receipts_first

    def draw(self) -> Plan:
        """The fate of the next request in arrival order."""
        with self._lock:
            config = self._config
            if config.outage_seconds and self._clock() < self._outage_until:
                return Plan(OUTAGE, 0.0)
            short = self._shorts_left > 0
            if short:
                self._shorts_left -= 1
            if not self._bounds and config.latency.kind == "none":
                return Plan("short_receipt", 0.0) if short else NO_FAULT
            rng = random.Random(self._rng.getrandbits(64))  # noqa: S311 - see module doc
            bounds = self._bounds
        point = rng.random()
        kind = next((k for bound, k in bounds if point < bound), None)
        # the first-N short receipts take the place of any drawn kind; the draw still happens,
        # so the seeded sequence of the requests after them does not shift
        return Plan("short_receipt" if short else kind, draw_latency(config.latency, rng))


def _lookup(event: dict[str, Any], path: Sequence[str]) -> object:
    value: object = event
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def matches(rule: PoisonRule, event: dict[str, Any]) -> bool:
    """Whether ``event`` is poisoned by ``rule``."""
    value = _lookup(event, rule.field.split("."))
    op = rule.op
    if op == "exists":
        return (value is not _MISSING) == bool(rule.value)
    if value is _MISSING:
        return False
    if op == "equals":
        return bool(value == rule.value)
    if op == "in":
        try:
            return value in rule.value
        except TypeError:  # an unhashable value (a list) is in no set
            return False
    if op == "contains":
        if isinstance(value, list):
            return rule.value in value
        return isinstance(value, str) and str(rule.value) in value
    left, right = number(value), number(rule.value)
    if left is None or right is None:
        return False
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    return left <= right


def compile_poison(rules: Sequence[PoisonRule]) -> PoisonCheck | None:
    """One check for all rules: the first matching rule's (subcode, message), else None."""
    if not rules:
        return None
    frozen = tuple(rules)

    def check(event: dict[str, Any]) -> tuple[int, str] | None:
        for rule in frozen:
            if matches(rule, event):
                return rule.subcode, rule.message
        return None

    return check
