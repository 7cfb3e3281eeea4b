"""Settings of the CAPI simulator: who may write where, how Meta validates, which faults to inject.

Everything is a frozen dataclass built either in code (tests), from a dict (a JSON or YAML
file, the admin endpoint) or from the ``capi-stream sim`` options (:func:`config_from_options`).
Unknown keys are rejected, so a typo in a fault plan fails loudly instead of silently
injecting nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from stream.core.errors import ConfigError

#: Fault kinds drawn per request, in the fixed order the cumulative draw walks them, so a seed
#: always picks the same kind for the same request whatever order the rates were given in.
FAULT_KINDS: Final = (
    "http_500",
    "http_503",
    "code_1",
    "code_2",
    "throttle_4",
    "throttle_17",
    "throttle_613",
    "throttle_80004",
    "code_190",
    "hang",
    "reset",
    "short_receipt",
)
LATENCY_KINDS: Final = ("none", "fixed", "uniform", "lognormal", "pareto")
HANG_MODES: Final = ("close", "process")
POISON_OPS: Final = ("equals", "in", "gt", "gte", "lt", "lte", "exists", "contains")
#: Pixels a token may write to when it may write to every pixel.
ANY_PIXEL: Final = "*"


def _reject_unknown(cls: type, data: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(known)}")


@dataclass(frozen=True, slots=True)
class Latency:
    """Delay added before every answer of the events edges.

    ``kind`` picks the distribution and the fields it reads: ``fixed`` (``ms``), ``uniform``
    (``min_ms``..``max_ms``), ``lognormal`` (``median_ms``, ``sigma``: a long tail) or ``pareto``
    (``scale_ms``, ``alpha``: a heavier tail). Every draw is capped at ``cap_ms``.
    """

    kind: str = "none"
    ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    median_ms: float = 0.0
    sigma: float = 1.0
    scale_ms: float = 0.0
    alpha: float = 1.5
    cap_ms: float = 60_000.0

    def __post_init__(self) -> None:
        if self.kind not in LATENCY_KINDS:
            raise ConfigError(f"latency kind {self.kind!r} is not one of {LATENCY_KINDS}")
        numbers = (self.ms, self.min_ms, self.max_ms, self.median_ms, self.scale_ms, self.cap_ms)
        if any(not math.isfinite(n) or n < 0 for n in numbers):
            raise ConfigError("latency milliseconds must be finite and not negative")
        if self.kind == "uniform" and self.max_ms < self.min_ms:
            raise ConfigError("uniform latency needs min_ms <= max_ms")
        if self.sigma <= 0 or self.alpha <= 0:
            raise ConfigError("latency sigma and alpha must be positive")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Latency:
        _reject_unknown(cls, data)
        return cls(**data)

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Read the CLI form: ``50``, ``10-100``, ``lognormal:20:1.0`` or ``pareto:5:1.5``."""
        try:
            if text.startswith("lognormal:"):
                _, median, sigma = text.split(":")
                return cls(kind="lognormal", median_ms=float(median), sigma=float(sigma))
            if text.startswith("pareto:"):
                _, scale, alpha = text.split(":")
                return cls(kind="pareto", scale_ms=float(scale), alpha=float(alpha))
            if "-" in text:
                low, high = text.split("-")
                return cls(kind="uniform", min_ms=float(low), max_ms=float(high))
            return cls(kind="fixed", ms=float(text))
        except ValueError as exc:
            raise ConfigError(f"cannot read latency {text!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PoisonRule:
    """Reject any request holding an event that matches, as Meta rejects an invalid event.

    ``field`` is a dotted path into the event (``event_id``, ``custom_data.value``); exactly one
    operator is set: ``{"field": "event_id", "equals": "x"}``, ``{"field": "custom_data.value",
    "gt": 1000}``, ``{"field": "event_id", "in": ["a", "b"]}``, ``{"field": "user_data.fbp",
    "exists": true}``, ``{"field": "event_source_url", "contains": "/bad/"}``.
    """

    field: str
    op: str
    value: Any
    message: str = "This event was rejected by a poison rule of the simulator."
    subcode: int = 2804019

    def __post_init__(self) -> None:
        if self.op not in POISON_OPS:
            raise ConfigError(f"poison op {self.op!r} is not one of {POISON_OPS}")
        if not self.field:
            raise ConfigError("a poison rule needs a field")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PoisonRule:
        ops = [op for op in POISON_OPS if op in data]
        if len(ops) != 1:
            raise ConfigError(f"a poison rule needs exactly one of {POISON_OPS}, got {ops}")
        rest = {k: v for k, v in data.items() if k not in ops}
        allowed = {"field", "message", "subcode"}
        if set(rest) - allowed:
            raise ConfigError(f"poison rule: unknown keys {sorted(set(rest) - allowed)}")
        value = data[ops[0]]
        if ops[0] == "in":
            value = frozenset(value)
        return cls(op=ops[0], value=value, **rest)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What goes wrong, and how often; a ``seed`` makes every draw repeatable.

    ``rates`` maps a kind of :data:`FAULT_KINDS` to the probability that one request gets it;
    the sum is at most 1. ``outage_seconds`` fails everything with 503 for that long from the
    moment the plan is applied. A ``hang`` waits ``hang_seconds`` (longer than the client's
    timeout) and then closes the socket (``hang_mode="close"``) or processes the request after
    all (``"process"``: the events land although the client saw a timeout). Throttles say
    ``Retry-After: retry_after_seconds`` and ``estimated_time_to_regain_access``
    (``regain_access_minutes``), with usage headers at ``throttle_usage_percent`` (at 100 a
    client rightly waits a minute: below it only the other hints count).

    A ``short_receipt`` (drawn at its rate, and for the first ``short_receipts_first`` requests
    after the plan is applied) processes a valid request but records only all except its last
    ``short_receipt_missing`` events and answers 200 with that lower ``events_received``: what
    Meta does when it counts fewer events than were sent (issue 10, part 3). A re-send is
    deduplicated like any repeat.
    """

    seed: int = 0
    latency: Latency = field(default_factory=Latency)
    rates: Mapping[str, float] = field(default_factory=dict)
    outage_seconds: float = 0.0
    hang_seconds: float = 30.0
    hang_mode: str = "close"
    retry_after_seconds: int = 1
    regain_access_minutes: int = 1
    throttle_usage_percent: int = 100
    poison: tuple[PoisonRule, ...] = ()
    short_receipts_first: int = 0
    short_receipt_missing: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rates) - set(FAULT_KINDS))
        if unknown:
            raise ConfigError(f"unknown fault kinds {unknown}; known: {list(FAULT_KINDS)}")
        if any(not 0.0 <= r <= 1.0 for r in self.rates.values()):
            raise ConfigError("fault rates must be within [0, 1]")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ConfigError("fault rates add up to more than 1")
        if self.hang_mode not in HANG_MODES:
            raise ConfigError(f"hang_mode {self.hang_mode!r} is not one of {HANG_MODES}")
        if self.outage_seconds < 0 or self.hang_seconds < 0 or self.retry_after_seconds < 0:
            raise ConfigError("outage_seconds, hang_seconds and retry_after_seconds must be >= 0")
        if not 0 <= self.throttle_usage_percent <= 100:
            raise ConfigError("throttle_usage_percent must be within [0, 100]")
        if self.short_receipts_first < 0 or self.short_receipt_missing < 1:
            raise ConfigError("short_receipts_first must be >= 0 and short_receipt_missing >= 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultConfig:
        _reject_unknown(cls, data)
        values = dict(data)
        if "latency" in values:
            values["latency"] = Latency.from_dict(values["latency"])
        if "rates" in values:
            values["rates"] = {str(k): float(v) for k, v in values["rates"].items()}
        if "poison" in values:
            values["poison"] = tuple(PoisonRule.from_dict(r) for r in values["poison"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"FaultConfig: {exc}") from exc

    def with_rate(self, kind: str, rate: float) -> FaultConfig:
        """The same plan with one more rate (the CLI's ``--fault KIND=RATE``)."""
        return replace(self, rates={**self.rates, kind: rate})


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulator behaves apart from faults.

    ``tokens`` maps an access token to the pixel ids it may write to (``"*"``: all); an empty
    map accepts any non-empty token for any pixel, which is what a quick local try wants.
    ``gateway_keys`` does the same for the CAPI Gateway's ``accessKey``. With ``app_secret``
    set, every Graph request must carry a valid ``appsecret_proof``. ``report_event_index``
    names the offending event in errors; Meta does not always, so turn it off to exercise a
    client's bisection. ``future_tolerance_seconds`` is how far ahead of the server's clock an
    ``event_time`` may be. ``access_log`` logs one line per request: method, path (never the
    query, which may hold a token), pixel, events in the body, status and time taken.
    """

    tokens: Mapping[str, frozenset[str]] = field(default_factory=dict)
    gateway_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    app_secret: str | None = field(default=None, repr=False)
    report_event_index: bool = True
    journal: bool = False
    access_log: bool = False
    future_tolerance_seconds: int = 600
    max_body_bytes: int = 64 * 1024 * 1024
    faults: FaultConfig = field(default_factory=FaultConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimConfig:
        _reject_unknown(cls, data)
        values = dict(data)
        for key in ("tokens", "gateway_keys"):
            if key in values:
                values[key] = {str(t): _pixels(p) for t, p in values[key].items()}
        if "faults" in values:
            values["faults"] = FaultConfig.from_dict(values["faults"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"SimConfig: {exc}") from exc


def _pixels(value: str | Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(p.strip() for p in value.split(",") if p.strip())
    return frozenset(str(p) for p in value)


def config_from_options(
    *,
    tokens: Iterable[str] = (),
    app_secret: str | None = None,
    latency: str | None = None,
    seed: int | None = None,
    faults: Iterable[str] = (),
    base: SimConfig | None = None,
    access_log: bool | None = None,
) -> SimConfig:
    """Build settings from the ``capi-stream sim`` options on top of ``base`` (a config file).

    ``tokens`` are ``TOKEN=PIXEL[,PIXEL]`` (``TOKEN=*`` for every pixel); ``faults`` are
    ``KIND=RATE``; ``latency`` is read by :meth:`Latency.parse`; ``access_log`` None keeps the
    base's choice.
    """
    config = base or SimConfig()
    token_map = dict(config.tokens)
    for item in tokens:
        token, sep, pixels = item.partition("=")
        if not sep or not token or not pixels:
            # the token itself stays out of the message: it is a secret
            raise ConfigError("--token expects TOKEN=PIXEL[,PIXEL] or TOKEN=*")
        token_map[token] = _pixels(pixels)
    plan = config.faults
    if latency is not None:
        plan = replace(plan, latency=Latency.parse(latency))
    if seed is not None:
        plan = replace(plan, seed=seed)
    for item in faults:
        kind, sep, rate = item.partition("=")
        if not sep:
            raise ConfigError(f"--fault expects KIND=RATE, got {item!r}")
        try:
            plan = plan.with_rate(kind, float(rate))
        except ValueError as exc:
            raise ConfigError(f"--fault expects KIND=RATE, got {item!r}") from exc
    secret = app_secret if app_secret is not None else config.app_secret
    logged = config.access_log if access_log is None else access_log
    return replace(config, tokens=token_map, app_secret=secret, faults=plan, access_log=logged)
