"""``user_data``: every hashed key through its normalizer and SHA-256, plain keys as they came.

The output is what goes on the wire: only the keys left with a value, hashed keys as
de-duplicated non-empty lists, legacy keys as one hashed string, plain keys as trimmed strings.
:func:`avro_user_data` gives it the shape of ``capi_event.v1.avsc``'s ``HashedUserData`` (every
field, ``[]`` or None when absent). Plain keys are never hashed and never case-changed (``fbc``
is case-sensitive, docs/capi.md §3.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS, PLAIN_KEYS
from stream.core.normalize.geo import country_code, country_of_hash
from stream.core.normalize.keys import (
    KeyContext,
    hash_value,
    memo_contexts,
    normalize_and_hash,
)
from stream.core.normalize.text import NOT_HASHED, SHA256, hashed_shape, prepare

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _values(raw: object) -> Iterable[object]:
    # A decoded record always has a list; a bare string from a hand-built record is one value.
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, (list, tuple)):
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


#: The ``HashedUserData`` record with nothing in it, in the schema's field order.
EMPTY_USER_DATA: Final[Mapping[str, Any]] = MappingProxyType(
    {**{key: [] for key in HASHED_KEYS}, **_SINGLE_NONE}
)


def avro_user_data(compact: Mapping[str, Any]) -> dict[str, Any]:
    """``compact`` (what :func:`normalize_user_data` returns) with every field of the record.

    ``{"em": ["62a1…"]}`` → ``{"em": ["62a1…"], "ph": [], …, "client_ip_address": None, …}``.
    """
    out = {key: [] if type(value) is list else value for key, value in EMPTY_USER_DATA.items()}
    out.update(compact)
    return out


def normalize_user_data(
    raw: object,
    *,
    current_year: int,
    default_region: str,
    hash_external_id: bool,
    warnings: list[str],
) -> tuple[dict[str, Any], list[str]]:
    """The wire ``user_data`` for a raw one (only keys with a value), and those keys.

    Keys come in the raw record's order (the schema's, for a decoded record). Warnings are
    appended to ``warnings``. The second list feeds the matching baseline
    (:func:`stream.core.validate.check_match_keys`), so it is not computed twice.
    """
    source = raw if type(raw) is dict or isinstance(raw, Mapping) else _EMPTY
    out: dict[str, Any] = {}
    # key -> the context its values are hashed in (keys.memo_contexts), made at the first
    # hashed key: the event's country is looked at only when there is something to hash
    contexts: dict[str, KeyContext] | None = None
    for key, values in source.items():
        if not values:
            continue
        kind = _KIND.get(key)
        if kind == _HASHED_LIST:  # the most common kind first: one comparison for most keys
            if contexts is None:
                country = source.get("country")
                contexts = memo_contexts(
                    current_year, default_region, event_country(country) if country else None
                )
            ctx = contexts[key]
            if (
                type(values) is list
                and len(values) == 1
                and (hash_external_id or key != "external_id")
            ):
                # The common case: one value, nothing to de-duplicate; hash_value, inline.
                value = values[0]
                if type(value) is str:
                    answer = normalize_and_hash(key, value, ctx)
                    if isinstance(answer, str):
                        out[key] = [answer]
                        continue
                    one, warning = answer
                    if warning is not None:
                        warnings.append(warning)
                    if one is not None:
                        out[key] = [one]
                    continue
                one = hash_value(key, value, ctx, warnings)  # not a string
                if one is not None:
                    out[key] = [one]
                continue
            if key == "external_id" and not hash_external_id:
                hashed = _raw_ids(values)
            else:
                hashed = []
                for value in _values(values):
                    one = hash_value(key, value, ctx, warnings)
                    if one is not None and one not in hashed:
                        hashed.append(one)
            if hashed:
                out[key] = hashed
        elif kind == _PLAIN:
            # _plain, with the decoded record's type looked at first
            text = (values.strip() or None) if type(values) is str else _plain(values)
            if text is not None:
                out[key] = text
        elif kind == _HASHED_SINGLE:
            if contexts is None:
                country = source.get("country")
                contexts = memo_contexts(
                    current_year, default_region, event_country(country) if country else None
                )
            one = hash_value(key, values, contexts[key], warnings)
            if one is not None:
                out[key] = one
    return out, list(out)
