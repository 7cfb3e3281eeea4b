"""``event_id``: kept when the producer gave one, otherwise derived from the event's content.

Meta deduplicates on (event_name, event_id) per pixel (docs/capi.md §7), so a replay or a duplicate
publish of the same event must get the same id, and a retry must never mint a new one. The
derived id is therefore a pure function of the event's canonical content::

    sha256(canonical JSON of {"v": 1, "pixel_id", "event_name", "event_time",
                              "user_data" (normalized and hashed), "custom_data"})[:32]

Canonical JSON: keys sorted, None and empty values left out, every list de-duplicated and
sorted, so neither dict order nor a repeated value changes the id. ``event_time`` is the
producer's time in seconds *before* clamping to now, so the id does not depend on when the
event was processed. ``"v"`` versions the recipe: changing it must change the ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

#: Length of a derived id in hex characters (128 bits: collisions are not a concern).
DERIVED_ID_LENGTH: Final = 32
_RECIPE_VERSION: Final = 1
# Types whose empty value means "absent" (0 and False are values).
_EMPTIABLE: Final = (str, list, tuple, dict)
# Exact types whose members are made canonical in turn (a set: one hash look-up per member).
_CONTAINERS: Final = frozenset({dict, list, tuple})


def given_event_id(raw: object) -> str | None:
    """The producer's event_id, trimmed, or None when absent or blank."""
    if not isinstance(raw, str):
        return None
    trimmed = raw.strip()
    return trimmed or None


def _canonical(value: Any) -> Any:
    """``value`` without None/empty members, lists de-duplicated and sorted; None if empty."""
    kind = type(value)
    if kind is list or kind is tuple:  # before the Mapping test: an ABC check costs ~0.5 µs
        if not value:
            return None
        if type(value[0]) is str and all(type(item) is str for item in value):
            # The common case (hashed user data, content_ids): no serialization needed to sort.
            return sorted({item for item in value if item}) or None
        members = [c for c in map(_canonical, value) if c is not None]
        if len(members) < 2:
            # nothing to sort or de-duplicate: no serialization of the member for its sort key
            return members or None
        items = {_dumps(c): c for c in members}
        return [items[key] for key in sorted(items)]
    if kind is dict or (kind is not str and isinstance(value, Mapping)):
        # filter flat first (a content is eight fields, five of them None), recurse only where
        # a member is a container
        out = {key: item for key, item in value.items() if item is not None and item != ""}
        for item in out.values():
            if type(item) in _CONTAINERS:
                return _canonical_members(out)
        return out or None
    if value == "":
        return None
    return value


def _canonical_members(out: dict[Any, Any]) -> dict[Any, Any] | None:
    # ``out``'s containers made canonical in place, the ones left empty removed
    for key, item in list(out.items()):
        if type(item) in _CONTAINERS:
            canonical = _canonical(item)
            if canonical is None:
                del out[key]
            else:
                out[key] = canonical
    return out or None


def _canonical_user_data(
    user_data: Mapping[str, Any], keys: Iterable[str] | None
) -> dict[str, Any]:
    # The hot path: a flat record of string lists and strings.
    if keys is None:
        out = {
            key: value
            for key, value in user_data.items()
            if value and (type(value) is not list or any(value))
        }
    else:
        # The caller vouches that these keys carry values.
        out = {key: user_data[key] for key in keys}
    for key, value in out.items():
        if type(value) is list and len(value) > 1:
            # Order is not content: ["a", "b"] and ["b", "a", "a"] are the same values.
            out[key] = sorted({item for item in value if item})
    return out


def _canonical_custom_data(custom_data: Mapping[str, Any]) -> dict[str, Any] | None:
    # Mostly None fields and a few scalars: filter flat first, recurse only where needed.
    out = {
        key: value
        for key, value in custom_data.items()
        if value is not None and (value or type(value) not in _EMPTIABLE)
    }
    return _canonical_members(out)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # Only lone surrogates or non-finite numbers get here (no decoded Avro record holds
        # the former; the normalizer drops the latter); stdlib JSON still gives stable bytes.
        try:
            return _stdlib_dumps(value)
        except TypeError:
            # keys of mixed types (a hand-built record: Avro map keys are strings) cannot be
            # sorted; as strings they can, and the id stays a function of the content
            return _stdlib_dumps(_string_keys(value))


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str
    ).encode()


def _string_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(item) for item in value]
    return value


def derive_event_id(
    pixel_id: str | None,
    event_name: str,
    event_time: int,
    user_data: Mapping[str, Any],
    custom_data: Mapping[str, Any] | None,
    *,
    keys: Iterable[str] | None = None,
) -> str:
    """32 hex characters that depend only on the event's canonical content.

    ``keys`` may name the user_data keys that carry a value, when the caller knows them
    (the normalizer does); it only saves looking at the empty ones.

    >>> derive_event_id("1", "Lead", 1767225600, {"em": ["a", "a"]}, None) == \\
    ...     derive_event_id("1", "Lead", 1767225600, {"em": ["a"]}, {})
    True
    """
    content = {
        "v": _RECIPE_VERSION,
        "pixel_id": pixel_id,
        "event_name": event_name,
        "event_time": event_time,
        "user_data": _canonical_user_data(user_data, keys),
        "custom_data": _canonical_custom_data(custom_data) if custom_data is not None else None,
    }
    return hashlib.sha256(_dumps(content)).hexdigest()[:DERIVED_ID_LENGTH]
