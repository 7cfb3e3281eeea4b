"""The simulator's Dataset Quality endpoint: Meta's numbers, made from what it received.

``GET /{version}/dataset_quality?dataset_id=PIXEL&fields=web{...}`` answers, per event name the
pixel received (test events left out, as Meta does), with::

    event_match_quality.composite_score      the simulator's EMQ (formula below)
    event_match_quality.match_key_feedback   [{identifier, coverage{percentage}}] per key seen,
                                             named as Meta names them (email, phone, ip_address...)
    event_match_quality.diagnostics          [] (the simulator has no diagnostics)
    event_coverage{percentage,goal_percentage}
                                             share of events with an event_id (only those can be
                                             deduplicated against the browser pixel: the
                                             simulator's stand-in for Meta's pixel-vs-server
                                             coverage, which needs browser events it never sees);
                                             goal 75, Meta's documented goal
    data_freshness.upload_frequency          from the mean delay between event_time and arrival:
                                             under an hour real_time, under a day hourly, else daily

``acr`` is never answered (the simulator runs no ads), so clients meet a missing field as they
will with Meta. Fields named in :attr:`QualityBook.retired` are refused as Meta refuses a field it
does not know: code 100, ``Tried accessing nonexisting field (acr)``.

**The simulator's EMQ** (its own formula, not Meta's, which is not public and also weighs how
many keys match real accounts): ``round(min(10, 1 + 9 * sum(SIM_WEIGHTS[k] * coverage[k])), 1)``
with the weights below (summing to 1, so an event with every weighted key scores 10 and one with
none scores 1, Meta's lowest). ``ip_ua`` is the share of events carrying both IP and user agent.
Example: every event with em, ph, fn and IP with user agent:
``1 + 9 * (0.25 + 0.20 + 0.03 + 0.10) = 6.22``, answered as 6.2.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from stream.core.match_quality import CUSTOMER_KEYS, IP_UA, META_IDENTIFIERS, keys_of

#: Weights of the simulator's EMQ (see the module docstring); they sum to 1.
SIM_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "em": 0.25,
        "ph": 0.20,
        "external_id": 0.10,
        "fbc": 0.10,
        "fbp": 0.10,
        IP_UA: 0.10,
        "fn": 0.03,
        "ln": 0.03,
        "zp": 0.02,
        "db": 0.02,
        "ge": 0.02,
        "ct": 0.01,
        "st": 0.01,
        "country": 0.01,
    }
)
COVERAGE_GOAL: Final = 75
#: What the endpoint can answer, as a tree of field names (``acr`` is known but never answered).
KNOWN_FIELDS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "event_name": {},
        "event_match_quality": {
            "composite_score": {},
            "match_key_feedback": {"identifier": {}, "coverage": {"percentage": {}}},
            "diagnostics": {"name": {}, "percentage": {}, "description": {}, "solution": {}},
        },
        "event_coverage": {"percentage": {}, "goal_percentage": {}, "description": {}},
        "data_freshness": {"upload_frequency": {}, "description": {}},
        "acr": {"percentage": {}, "description": {}},
        "dedupe_key_feedback": {},
        "event_potential_aly_acr_increase": {},
    }
)
_HOUR, _DAY = 3600.0, 86_400.0


def sim_emq(coverage: Mapping[str, float]) -> float:
    """The simulator's EMQ of per-key coverage ratios (0-1), 1-10 (see the module docstring)."""
    total = sum(w * min(1.0, max(0.0, coverage.get(k, 0.0))) for k, w in SIM_WEIGHTS.items())
    return round(min(10.0, 1.0 + 9.0 * total), 1)


def parse_fields(text: str) -> dict[str, Any]:
    """Graph's field syntax as a tree: ``web{a,b{c}}`` -> ``{"web": {"a": {}, "b": {"c": {}}}}``.

    Raises ValueError on unbalanced braces.
    """
    tree, rest = _parse(text.replace(" ", ""), 0)
    if rest != len(text.replace(" ", "")):
        raise ValueError("unbalanced braces in fields")
    return tree


def _parse(text: str, at: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    name = ""
    while at < len(text):
        char = text[at]
        if char == "{":
            sub, at = _parse(text, at + 1)
            if at >= len(text) or text[at] != "}":
                raise ValueError("unbalanced braces in fields")
            out[name], name = sub, ""
        elif char == "}":
            break
        elif char == ",":
            if name:
                out[name], name = {}, ""
        else:
            name += char
        at += 1
    if name:
        out[name] = {}
    return out, at


def unknown_field(tree: Mapping[str, Any], known: Mapping[str, Any]) -> str | None:
    """The first requested field the endpoint does not know, depth first."""
    for name, sub in tree.items():
        if name not in known:
            return name
        if sub and known[name]:
            deeper = unknown_field(sub, known[name])
            if deeper is not None:
                return deeper
    return None


@dataclass(slots=True)
class _Row:
    events: int = 0
    with_event_id: int = 0
    lag_sum_s: float = 0.0
    #: events per set of keys carried: one count per event, not one per key (the simulator
    #: shares two cores with what it measures); :func:`_key_counts` sums them per key
    key_sets: dict[frozenset[str], int] = field(default_factory=dict)


def _key_counts(row: _Row) -> dict[str, int]:
    counts: dict[str, int] = {}
    for keys, n in row.key_sets.items():
        for key in keys:
            counts[key] = counts.get(key, 0) + n
    return counts


class QualityBook:
    """What the simulator received, per pixel and event name, for the quality endpoint.

    Thread-safe: the server records, tests read. ``retired`` names fields to refuse;
    :meth:`requests` counts the calls per dataset (faulted ones too), so a test can tell how
    politely a client polled.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, _Row]] = {}
        self._requests: dict[str, int] = {}
        self.retired: frozenset[str] = frozenset()

    def asked(self, pixel_id: str) -> None:
        """Count one call for ``pixel_id``."""
        with self._lock:
            self._requests[pixel_id] = self._requests.get(pixel_id, 0) + 1

    def requests(self) -> dict[str, int]:
        """Calls per dataset id so far."""
        with self._lock:
            return dict(self._requests)

    def record(self, pixel_id: str, events: Iterable[Mapping[str, Any]], now: float) -> None:
        """Count the events of one accepted request (not test events: the caller skips them)."""
        with self._lock:
            rows = self._rows.setdefault(pixel_id, {})
            for event in events:
                row = rows.setdefault(str(event.get("event_name", "")), _Row())
                row.events += 1
                if event.get("event_id") not in (None, ""):
                    row.with_event_id += 1
                event_time = event.get("event_time")
                if isinstance(event_time, int | float) and not isinstance(event_time, bool):
                    row.lag_sum_s += max(0.0, now - float(event_time))
                keys = keys_of(event)
                row.key_sets[keys] = row.key_sets.get(keys, 0) + 1

    def known(self) -> dict[str, Any]:
        """The fields the endpoint answers now: :data:`KNOWN_FIELDS` without the retired ones."""
        return {"web": _without(KNOWN_FIELDS, self.retired)}

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()
            self._requests.clear()

    def answer(self, pixel_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON answer for ``pixel_id`` with only the ``web`` subfields asked for."""
        wanted = fields.get("web") or {}
        with self._lock:
            rows = {name: _copy(row) for name, row in self._rows.get(pixel_id, {}).items()}
        return {"web": [_select(_full(name, row), wanted) for name, row in sorted(rows.items())]}


def _without(tree: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {k: _without(v, names) if v else v for k, v in tree.items() if k not in names}


def _copy(row: _Row) -> _Row:
    return _Row(row.events, row.with_event_id, row.lag_sum_s, dict(row.key_sets))


def _full(name: str, row: _Row) -> dict[str, Any]:
    coverage = {k: n / row.events for k, n in _key_counts(row).items()}
    feedback = [
        {"identifier": META_IDENTIFIERS[k], "coverage": {"percentage": round(100 * coverage[k], 1)}}
        for k in CUSTOMER_KEYS
        if k in coverage
    ]
    lag = row.lag_sum_s / row.events
    frequency = "real_time" if lag < _HOUR else "hourly" if lag < _DAY else "daily"
    return {
        "event_name": name,
        "event_match_quality": {
            "composite_score": sim_emq(coverage),
            "match_key_feedback": feedback,
            "diagnostics": [],
        },
        "event_coverage": {
            "percentage": round(100 * row.with_event_id / row.events, 1),
            "goal_percentage": COVERAGE_GOAL,
            "description": "Simulated: the share of events that carry an event_id.",
        },
        "data_freshness": {
            "upload_frequency": frequency,
            "description": "Simulated: from the mean delay between event_time and arrival.",
        },
    }


def _select(value: Any, wanted: Mapping[str, Any]) -> Any:
    """``value`` cut down to the ``wanted`` subfields (all of it when none are named)."""
    if not wanted:
        return value
    if isinstance(value, list):
        return [_select(item, wanted) for item in value]
    if not isinstance(value, dict):
        return value
    return {name: _select(value[name], sub) for name, sub in wanted.items() if name in value}
