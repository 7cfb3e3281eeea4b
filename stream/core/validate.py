"""Event-level checks with stable reason codes: what would make Meta refuse the whole request.

Meta rejects a whole batch for one bad event (docs/capi.md §1.5), so anything listed in
:data:`REASONS` dead-letters the event before it is batched. A bad single field is not a
reason: the normalizer drops that field and records one of :data:`WARNINGS` instead.

Every ``detail`` names fields and limits, never values: values may be customer data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from stream.core.capi import (
    ACTION_SOURCES,
    HASHED_KEYS,
    LEGACY_HASHED_KEYS,
    PLAIN_KEYS,
    TOO_BROAD_KEY_SETS,
    max_age_s,
)

#: Dead-letter reason code → one line for the README.
REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "missing_pixel_id": "no pixel_id on the event and no default pixel configured",
        "missing_event_name": "event_name is missing or blank",
        "invalid_event_time": "event_time is missing or not a number of seconds",
        "event_time_too_old": (
            "event_time is older than 7 days (62 for physical_store) minus the safety margin"
        ),
        "event_time_in_future": "event_time is further in the future than the allowed clock skew",
        "missing_action_source": "action_source is missing or blank",
        "invalid_action_source": "action_source is not one of Meta's documented values",
        "missing_event_source_url": "a website event without event_source_url",
        "missing_client_user_agent": "a website event without user_data.client_user_agent",
        "missing_app_data": "an app event without app_data",
        "missing_advertiser_tracking_enabled": (
            "an app event without app_data.advertiser_tracking_enabled"
        ),
        "missing_extinfo": "an app event without app_data.extinfo",
        "invalid_extinfo": "app_data.extinfo does not have exactly 16 entries",
        "invalid_data_processing_options": (
            "data_processing_options holds a value other than LDU, or its country or state "
            "is not a non-negative integer"
        ),
        "no_match_keys": "no customer information key is left after normalization",
        "too_broad_match_keys": (
            "the customer information keys left are only a subset of a combination Meta "
            "refuses as too broad (docs/capi.md §3.6)"
        ),
        "purchase_without_currency": "a Purchase without a valid ISO 4217 currency",
        "purchase_without_value": "a Purchase without a numeric value",
    }
)

_KEY_WARNINGS: Final = (*HASHED_KEYS, *LEGACY_HASHED_KEYS)
_IN_SOME_BROAD_SET: Final = frozenset().union(*TOO_BROAD_KEY_SETS)

#: Warning code → one line for the README. The event is still sent.
WARNINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{
            f"{key}_invalid_dropped": f"a {key} value could not be normalized; it was dropped"
            for key in _KEY_WARNINGS
        },
        **{
            f"{key}_md5_shape": (
                f"a {key} value arrived as 32 hex characters (MD5 shape); kept as it came"
            )
            for key in _KEY_WARNINGS
        },
        "event_time_milliseconds": "event_time was in milliseconds; converted to seconds",
        "event_time_clamped": "event_time was slightly in the future; set to now",
        "currency_invalid_dropped": "custom_data.currency is not an ISO 4217 code; dropped",
        "number_non_finite_dropped": "a NaN or infinite number was dropped",
        "custom_property_collision_dropped": (
            "a custom property named like a standard custom_data field was dropped"
        ),
        "data_processing_options_geolocated": (
            "LDU without country or state: the missing ones set to 0 (Meta geolocates)"
        ),
    }
)

#: Every customer information key; the matching baseline counts those that are present.
MATCH_KEYS: Final = (*HASHED_KEYS, *LEGACY_HASHED_KEYS, *PLAIN_KEYS)
#: Above this, an event_time is milliseconds: 1e11 seconds is the year 5138.
MILLISECONDS_ABOVE: Final = 100_000_000_000
EXTINFO_LENGTH: Final = 16
_LDU: Final = "LDU"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an event is dead-lettered: a code of :data:`REASONS` and a PII-free detail."""

    reason: str
    detail: str


def event_time_seconds(raw: object) -> tuple[int, bool] | Problem:
    """``raw`` event_time as integer seconds, and whether it was milliseconds.

    ``1767225600`` → ``(1767225600, False)``; ``1767225600123`` → ``(1767225600, True)``.
    """
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return Problem("invalid_event_time", "event_time is missing or not a number")
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return Problem("invalid_event_time", "event_time is not a finite number")
        raw = int(raw)
    if raw > MILLISECONDS_ABOVE:
        return raw // 1000, True
    return raw, False


def check_event_time(
    seconds: int,
    action_source: str,
    now: float,
    *,
    max_future_skew_s: int,
    age_safety_margin_s: int,
) -> int | Problem:
    """The event_time to send (clamped to ``now`` within the skew), or why it cannot be sent.

    The window is ``[now - max_age + margin, now + skew]``; max_age is 7 days, or 62 for
    ``physical_store``. The margin leaves room for batching and retries, since an event that
    ages out in flight poisons its whole batch.
    """
    max_age = max_age_s(action_source)
    age = now - seconds
    if age > max_age - age_safety_margin_s:
        return Problem(
            "event_time_too_old",
            f"event_time is {age / 86_400:.2f} days old; {action_source} events may be at most "
            f"{max_age // 86_400} days minus a {age_safety_margin_s} s margin old",
        )
    if age < 0:
        if -age > max_future_skew_s:
            return Problem(
                "event_time_in_future",
                f"event_time is {-age:.0f} s in the future; at most {max_future_skew_s} s "
                "of clock skew is allowed",
            )
        return math.floor(now)
    return seconds


def check_action_source(raw: object) -> str | Problem:
    """The action_source, trimmed and lowercased, or why it is unusable.

    ``" Website"`` → ``"website"``; ``"web"`` → ``invalid_action_source``.
    """
    if not isinstance(raw, str) or not raw.strip():
        return Problem("missing_action_source", "action_source is missing")
    source = raw.strip().lower()
    if source not in ACTION_SOURCES:
        return Problem(
            "invalid_action_source",
            f"action_source must be one of {', '.join(sorted(ACTION_SOURCES))}",
        )
    return source


def check_required_fields(
    action_source: str,
    event_source_url: str | None,
    user_data: Mapping[str, Any],
    app_data: Mapping[str, Any] | None,
) -> Problem | None:
    """The per-source required fields of docs/capi.md §2.3."""
    if action_source == "website":
        if not event_source_url:
            return Problem("missing_event_source_url", "website events need event_source_url")
        if not user_data.get("client_user_agent"):
            return Problem(
                "missing_client_user_agent", "website events need user_data.client_user_agent"
            )
    elif action_source == "app":
        if app_data is None:
            return Problem("missing_app_data", "app events need app_data")
        if app_data.get("advertiser_tracking_enabled") is None:
            return Problem(
                "missing_advertiser_tracking_enabled",
                "app events need app_data.advertiser_tracking_enabled",
            )
        extinfo = app_data.get("extinfo")
        if not extinfo:
            return Problem("missing_extinfo", "app events need app_data.extinfo")
        if len(extinfo) != EXTINFO_LENGTH:
            return Problem(
                "invalid_extinfo",
                f"app_data.extinfo has {len(extinfo)} entries; Meta wants {EXTINFO_LENGTH}",
            )
    return None


def present_match_keys(user_data: Mapping[str, Any]) -> list[str]:
    """The customer information keys of a normalized ``user_data`` that carry a value."""
    return [key for key in MATCH_KEYS if user_data.get(key)]


def check_match_keys(present: Iterable[str]) -> Problem | None:
    """The matching baseline of docs/capi.md §3.6, on the keys left after normalization.

    ``["ge", "ct", "st", "country"]`` is too broad (a subset of the first set);
    ``["em"]`` is fine; ``[]`` has nothing to match on.
    """
    if type(present) is list and present and present[0] not in _IN_SOME_BROAD_SET:
        # the normalizer's list, led by a key outside every too-broad set (nearly every
        # event's first key is em): a subset of none, known without building the set
        return None
    keys = frozenset(present)
    if not keys:
        return Problem("no_match_keys", "no customer information key is left")
    if not keys <= _IN_SOME_BROAD_SET:
        # a key outside every too-broad set (em, ph, external_id, fbp, ...): a subset of none
        return None
    for broad in TOO_BROAD_KEY_SETS:
        if keys <= broad:
            return Problem(
                "too_broad_match_keys",
                f"customer keys {', '.join(sorted(keys))} are a subset of the too-broad set "
                f"{', '.join(sorted(broad))}",
            )
    return None


def check_purchase(event_name: str, custom_data: Mapping[str, Any] | None) -> Problem | None:
    """A Purchase needs a currency and a value (docs/capi.md §4.1); other events need neither."""
    if event_name != "Purchase":
        return None
    if custom_data is None or not custom_data.get("currency"):
        return Problem(
            "purchase_without_currency", "Purchase needs custom_data.currency (ISO 4217)"
        )
    if custom_data.get("value") is None:
        return Problem("purchase_without_value", "Purchase needs custom_data.value")
    return None


def _dpo_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_data_processing_options(
    options: object, country: object, state: object
) -> tuple[list[str] | None, int | None, int | None, bool] | Problem:
    """Limited Data Use, checked: ``(options, country, state, geolocated)`` or a Problem.

    Only ``LDU`` is allowed, in any case: ``[" ldu "]`` → ``["LDU"]``; ``[]`` stays ``[]``
    (explicitly no LDU). Country and state are non-negative integers, zeros kept. LDU with
    country or state missing sets the missing ones to 0, which asks Meta to geolocate, and
    reports ``geolocated`` so the caller records a warning: refusing would dead-letter events
    Meta accepts, and 0 is what Meta documents for "geolocate".
    """
    if country is not None and not _dpo_int(country):
        return Problem(
            "invalid_data_processing_options",
            "data_processing_options_country must be a non-negative integer",
        )
    if state is not None and not _dpo_int(state):
        return Problem(
            "invalid_data_processing_options",
            "data_processing_options_state must be a non-negative integer",
        )
    country_int = country if isinstance(country, int) else None
    state_int = state if isinstance(state, int) else None
    if options is None:
        return None, country_int, state_int, False
    if not isinstance(options, (list, tuple)):
        return Problem("invalid_data_processing_options", "data_processing_options is a list")
    ldu = False
    for option in options:
        if not isinstance(option, str) or option.strip().upper() != _LDU:
            return Problem(
                "invalid_data_processing_options", "data_processing_options allows only LDU"
            )
        ldu = True
    if not ldu:
        return [], country_int, state_int, False
    geolocated = country_int is None or state_int is None
    return (
        [_LDU],
        0 if country_int is None else country_int,
        0 if state_int is None else state_int,
        geolocated,
    )
