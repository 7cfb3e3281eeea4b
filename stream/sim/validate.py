"""Meta's validation of a ``data`` array, as the Graph API applies it (docs/capi.md §1.5, §2, §3).

Written from the contract, not from our normalizer, so a bug there shows up here as Meta would
show it. The first invalid event rejects the whole request (all-or-nothing, docs/capi.md §1.5).

Subcodes: 2804003 ("Event Timestamp Too Old") and 2804050 (insufficient customer information)
are the ones Meta is seen answering; 2804016 is the unhashed-PII subcode of capi.md; 2804004 and
2804019 are the simulator's choice for "in the future" and "missing or invalid parameter", where
no source pins Meta's number. Messages name fields, never values: they may be customer data.

Hot path: 1,000 events per request, so the checks are plain dict lookups and one compiled regex
per hashed value, no schema library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from stream.core.capi import (
    ACTION_SOURCES,
    HASHED_KEYS,
    LEGACY_HASHED_KEYS,
    MAX_EVENTS_PER_REQUEST,
    PLAIN_KEYS,
    TOO_BROAD_KEY_SETS,
    UNHASHED_PII_SUBCODE,
    max_age_s,
)

SUBCODE_TOO_OLD: Final = 2804003
SUBCODE_IN_FUTURE: Final = 2804004
SUBCODE_INVALID: Final = 2804019
SUBCODE_BASELINE: Final = 2804050

# external_id is hashed by our normalizer by default, but Meta only *recommends* hashing it and
# three of its four SDKs send it raw (docs/capi.md §3.2, §8.4), so Meta cannot refuse a raw one.
_HASHED: Final = (frozenset(HASHED_KEYS) | frozenset(LEGACY_HASHED_KEYS)) - {"external_id"}
_CUSTOMER_KEYS: Final = (
    frozenset(HASHED_KEYS) | frozenset(LEGACY_HASHED_KEYS) | frozenset(PLAIN_KEYS)
)
# 64 hex (SHA-256, either case), the parameter builder's `<64 hex>.<appendix>`, or 32 hex (an
# MD5 shape, which Meta lets through although the docs only describe SHA-256).
_looks_hashed: Final = re.compile(r"[0-9a-fA-F]{64}(?:\.[A-Za-z0-9_-]+)?|[0-9a-fA-F]{32}").fullmatch
EXTINFO_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why Meta refuses a request: the offending event's index (None: the envelope itself)."""

    index: int | None
    subcode: int | None
    title: str
    detail: str
    code: int = 100


#: A poison check: given an event, the rule's (subcode, message) when it matches, else None.
PoisonCheck = Callable[[dict[str, Any]], tuple[int, str] | None]
_Problem = tuple[int, str, str]


def _missing(path: str) -> _Problem:
    return (SUBCODE_INVALID, "Missing Parameter", f"The parameter {path} is required.")


def _invalid(path: str, why: str) -> _Problem:
    return (SUBCODE_INVALID, "Invalid Parameter", f"The parameter {path} {why}.")


def _present(value: object) -> bool:
    # docs/capi.md §3.1: empty values count as absent (SDKs drop them; so does the baseline rule).
    if type(value) is list:
        if value and type(value[0]) is str and value[0]:
            return True  # the usual wire shape, answered without the walk
        return any(v not in (None, "") for v in value)
    return value not in (None, "", {})


def _check_hashed(key: str, value: object) -> _Problem | None:
    values = value if isinstance(value, list) else (value,)
    if all(type(item) is str and _looks_hashed(item) for item in values):
        return None  # the usual wire shape: every value hashed
    for item in values:
        if item is None or item == "":
            continue
        if not isinstance(item, str):
            return _invalid(f"user_data.{key}", "must be a string or a list of strings")
        if not _looks_hashed(item):
            return (
                UNHASHED_PII_SUBCODE,
                "Unhashed Customer Information",
                f"The parameter user_data.{key} must be hashed with SHA-256 (64 hexadecimal "
                "characters); the value looks like clear text.",
            )
    return None


def _check_user_data(user_data: object) -> tuple[_Problem | None, str | None]:
    """Check hashing and the matching baseline; also return client_user_agent for website."""
    if not isinstance(user_data, dict):
        return _missing("user_data"), None
    present: set[str] = set()
    for key, value in user_data.items():
        if key in _HASHED:
            problem = _check_hashed(key, value)
            if problem is not None:
                return problem, None
        if key in _CUSTOMER_KEYS and _present(value):
            present.add(key)
    if not present or any(present <= broad for broad in TOO_BROAD_KEY_SETS):
        return (
            SUBCODE_BASELINE,
            "Customer Information Parameters",
            "This event has no customer information parameters, or only a combination too "
            "broad to match (docs/capi.md §3.6).",
        ), None
    agent = user_data.get("client_user_agent")
    return None, agent if isinstance(agent, str) else None


def _check_app(event: dict[str, Any]) -> _Problem | None:
    app_data = event.get("app_data")
    if not isinstance(app_data, dict):
        return _missing("app_data")
    tracking = app_data.get("advertiser_tracking_enabled")
    if tracking is None:
        return _missing("app_data.advertiser_tracking_enabled")
    if tracking not in (True, False, 0, 1, "0", "1"):
        return _invalid("app_data.advertiser_tracking_enabled", "must be a boolean or 0/1")
    extinfo = app_data.get("extinfo")
    if extinfo is None:
        return _missing("app_data.extinfo")
    if not isinstance(extinfo, list) or len(extinfo) != EXTINFO_LENGTH:
        return _invalid("app_data.extinfo", f"must be an array of {EXTINFO_LENGTH} values")
    return None


def _check_purchase(event: dict[str, Any]) -> _Problem | None:
    custom = event.get("custom_data")
    if not isinstance(custom, dict):
        return _missing("custom_data.currency")
    currency = custom.get("currency")
    if not currency:
        return _missing("custom_data.currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        return _invalid("custom_data.currency", "must be a 3-letter ISO 4217 code")
    value = custom.get("value")
    if value is None or value == "":
        return _missing("custom_data.value")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return _invalid("custom_data.value", "must be a number")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return _invalid("custom_data.value", "must be a number")
    return None


def check_event(event: object, now: float, future_tolerance: int) -> _Problem | None:
    """The first rule ``event`` breaks, as (subcode, title, detail), or None when Meta takes it."""
    if not isinstance(event, dict):
        return _invalid("data[]", "must be an object")
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        return _missing("event_name")
    event_time = event.get("event_time")
    if type(event_time) is not int:
        # Graph coerces a string of digits to an integer; floats and ISO dates it refuses.
        if not (isinstance(event_time, str) and event_time.isdigit()):
            if event_time is None:
                return _missing("event_time")
            return _invalid("event_time", "must be an integer of Unix seconds")
        event_time = int(event_time)
    source = event.get("action_source")
    if source is None:
        return _missing("action_source")
    if source not in ACTION_SOURCES:
        return _invalid("action_source", f"must be one of {', '.join(sorted(ACTION_SOURCES))}")
    max_age = max_age_s(source)
    if event_time < now - max_age:
        return (
            SUBCODE_TOO_OLD,
            "Event Timestamp Too Old",
            f"The timestamp for this event is too far in the past: events must be sent within "
            f"{max_age // 86_400} days of when they occurred.",
        )
    if event_time > now + future_tolerance:
        return (
            SUBCODE_IN_FUTURE,
            "Event Timestamp In The Future",
            "The timestamp for this event is in the future; send event_time in Unix seconds.",
        )
    problem, agent = _check_user_data(event.get("user_data"))
    if problem is not None:
        return problem
    if source == "website":
        url = event.get("event_source_url")
        if not isinstance(url, str) or not url:
            return _missing("event_source_url")
        if not agent:
            return _missing("user_data.client_user_agent")
    elif source == "app":
        problem = _check_app(event)
        if problem is not None:
            return problem
    if name == "Purchase":
        return _check_purchase(event)
    return None


def validate_request(
    data: object,
    now: float,
    *,
    future_tolerance: int = 600,
    poison: PoisonCheck | None = None,
) -> list[dict[str, Any]] | Invalid:
    """The events Meta would accept from ``data``, or why it refuses the whole request.

    Items of ``data`` may be objects or JSON strings of one object each (the Python SDK's
    form-encoded shape, docs/capi.md §1.3). A ``poison`` check that matches rejects the request as
    an invalid event would, at that event's index.
    """
    if data is None:
        return Invalid(None, None, "Missing Parameter", "(#100) The parameter data is required")
    if not isinstance(data, list) or not data:
        return Invalid(
            None, None, "Invalid Parameter", "(#100) param data must be a non-empty array"
        )
    if len(data) > MAX_EVENTS_PER_REQUEST:
        return Invalid(
            None,
            None,
            "Too Many Events",
            f"(#100) param data must be an array of at most {MAX_EVENTS_PER_REQUEST} events",
        )
    events: list[dict[str, Any]] = data
    if any(isinstance(item, str | bytes) for item in data):
        events = []
        for index, item in enumerate(data):
            try:
                events.append(orjson.loads(item) if isinstance(item, str | bytes) else item)
            except orjson.JSONDecodeError:
                return Invalid(index, SUBCODE_INVALID, "Invalid Parameter", "Invalid JSON.")
    for index, event in enumerate(events):
        problem = check_event(event, now, future_tolerance)
        if problem is None and poison is not None:
            hit = poison(event)
            if hit is not None:
                problem = (hit[0], "Invalid Parameter", hit[1])
        if problem is not None:
            subcode, title, detail = problem
            return Invalid(index, subcode, title, detail)
    return events
