"""``user_data``: every hashed key through its normalizer and SHA-256, plain keys as they came.

The output has the shape of ``capi_event.avsc``'s ``HashedUserData``: hashed keys as
de-duplicated lists (``[]`` when nothing is left), legacy keys as one hashed string or None,
plain keys as trimmed strings or None. Plain keys are never hashed and never case-changed
(``fbc`` is case-sensitive, CAPI.md §3.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS, PLAIN_KEYS
from stream.core.normalize.geo import country_code, country_of_hash
from stream.core.normalize.keys import KeyContext, hash_value, key_context
from stream.core.normalize.text import NOT_HASHED, SHA256, hashed_shape, prepare

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _values(raw: object) -> Iterable[object]:
    # A decoded record always has a list; a bare string from a hand-built record is one value.
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list | tuple):
        return raw
    return ()


@lru_cache(maxsize=1024)
def _country_of(trimmed: str) -> str | None:
    shape = hashed_shape(trimmed)
    if shape == SHA256:
        return country_of_hash(trimmed.lower())
    if shape == NOT_HASHED:
        return country_code(prepare(trimmed))
    return None


def event_country(raw: object) -> str | None:
    """The event's country (alpha-2, lowercase): the first value that is a real one.

    A country that arrives already hashed still counts when it is the hash of a code, so the
    ``us`` zip rule applies to pre-hashed events too.
    """
    for value in _values(raw):
        if isinstance(value, str):
            code = _country_of(value.strip())
            if code is not None:
                return code
    return None


def _raw_ids(raw: object) -> list[str]:
    out: list[str] = []
    for value in _values(raw):
        if isinstance(value, str):
            trimmed = value.strip()
            if trimmed and trimmed not in out:
                out.append(trimmed)
    return out


def _plain(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        # Meta's docs type fb_login_id and lead_id as integers; the wire wants strings.
        return str(value)
    return None


_HASHED_LIST: Final = 1
_HASHED_SINGLE: Final = 2
_PLAIN: Final = 3
# Plain dicts, not MappingProxyType: a proxy's get() costs four times as much, per key.
_KIND: Final[dict[str, int]] = {
    **dict.fromkeys(HASHED_KEYS, _HASHED_LIST),
    **dict.fromkeys(LEGACY_HASHED_KEYS, _HASHED_SINGLE),
    **dict.fromkeys(PLAIN_KEYS, _PLAIN),
}
_SINGLE_NONE: Final[dict[str, None]] = dict.fromkeys((*LEGACY_HASHED_KEYS, *PLAIN_KEYS))


def normalize_user_data(
    raw: object,
    *,
    current_year: int,
    default_region: str,
    hash_external_id: bool,
    warnings: list[str],
) -> tuple[dict[str, Any], list[str]]:
    """The ``HashedUserData`` record for a raw ``user_data``, and the keys left with a value.

    Warnings are appended to ``warnings``. The second list feeds the matching baseline
    (:func:`stream.core.validate.check_match_keys`), so it is not computed twice.
    """
    source = raw if type(raw) is dict or isinstance(raw, Mapping) else _EMPTY
    # Every field of the record, empty; only the keys that carry a value are visited below.
    out: dict[str, Any] = {
        "em": [],
        "ph": [],
        "fn": [],
        "ln": [],
        "db": [],
        "ge": [],
        "ct": [],
        "st": [],
        "zp": [],
        "country": [],
        "external_id": [],
    }
    out.update(_SINGLE_NONE)
    present: list[str] = []
    ctx: KeyContext | None = None
    for key, values in source.items():
        if not values:
            continue
        kind = _KIND.get(key)
        if kind == _PLAIN:
            text = _plain(values)
            if text is not None:
                out[key] = text
                present.append(key)
            continue
        if kind is None:
            continue
        if ctx is None:
            ctx = key_context(current_year, default_region, event_country(source.get("country")))
        if kind == _HASHED_SINGLE:
            one = hash_value(key, values, ctx, warnings)
            if one is not None:
                out[key] = one
                present.append(key)
            continue
        if key == "external_id" and not hash_external_id:
            hashed = _raw_ids(values)
        elif type(values) is list and len(values) == 1:
            # The common case: one value, nothing to de-duplicate.
            one = hash_value(key, values[0], ctx, warnings)
            hashed = [one] if one is not None else []
        else:
            hashed = []
            for value in _values(values):
                one = hash_value(key, value, ctx, warnings)
                if one is not None and one not in hashed:
                    hashed.append(one)
        if hashed:
            out[key] = hashed
            present.append(key)
    return out, present
