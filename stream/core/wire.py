"""From the Avro-shaped event to the JSON object that goes into a request's ``data`` array.

The enriched record carries every field of the schema (None for absent ones, ``[]`` for empty
lists, ``custom_properties`` as a nested map, because Avro needs them so). Meta's SDKs send
none of that: unset fields are omitted (docs/capi.md §2.1) and custom properties sit flat in
``custom_data`` (§4.1). Example::

    {"event_name": "Lead", "opt_out": None, "user_data": {"em": ["62a1…"], "ph": []},
     "custom_data": {"value": None, "content_ids": [], "custom_properties": {"tier": "gold"}}}
    →
    {"event_name": "Lead", "user_data": {"em": ["62a1…"]}, "custom_data": {"tier": "gold"}}

``False``, ``0`` and ``""`` are values and stay (``opt_out: false`` and the empty slots of
``extinfo`` mean something); only None, empty lists and empty maps go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: What :func:`prune` walks into (a tuple: ``isinstance`` against ``dict | list`` costs twice as
#: much, the union being built on every call)
_CONTAINERS: Final = (dict, list)
#: Exact types of the leaves a decoded record holds, kept without an ``isinstance`` look
_SCALARS: Final = frozenset({str, int, float, bool, bytes})


def prune(value: Any) -> Any:
    """``value`` without None members and empty lists/maps, recursively; None if it empties.

    ``{"a": None, "b": [], "c": {"d": 0}}`` → ``{"c": {"d": 0}}``; ``{"a": None}`` → None.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if item is None:
                continue
            if type(item) in _SCALARS or not isinstance(item, _CONTAINERS):
                out[key] = item
            else:
                pruned = prune(item)
                if pruned is not None:
                    out[key] = pruned
        return out or None
    if isinstance(value, list):
        if not value:
            return None
        items = []
        for item in value:
            if item is None:
                continue
            if type(item) in _SCALARS or not isinstance(item, _CONTAINERS):
                items.append(item)
            else:
                pruned = prune(item)
                if pruned is not None:
                    items.append(pruned)
        return items or None
    return value


def flat_custom_data(custom_data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``CustomData`` record as Meta reads it: pruned, custom properties beside the fields.

    ``{"value": 5.0, "currency": "usd", "content_ids": [], "custom_properties": {"tier": "a"}}``
    → ``{"value": 5.0, "currency": "usd", "tier": "a"}``; None when nothing is left.
    """
    flat: dict[str, Any] = {}
    extra: Any = None
    for key, value in custom_data.items():
        if key == "custom_properties":
            extra = value
        elif value is None:
            continue
        elif type(value) is list or type(value) is dict:
            pruned = prune(value)
            if pruned is not None:
                flat[key] = pruned
        else:
            flat[key] = value
    if extra:
        for key, value in extra.items():
            # A standard field wins: the normalizer already dropped colliding names, and a
            # hand-built record must not overwrite, say, currency through a custom property.
            if key not in flat:
                pruned = prune(value) if type(value) is list or type(value) is dict else value
                if pruned is not None:
                    flat[key] = pruned
    return flat or None


def _flat_strings(record: Mapping[str, Any]) -> dict[str, Any] | None:
    # user_data: a flat record of strings and string lists, the bulk of every event. The
    # normalizer never leaves "" there, so truthiness drops exactly None and [].
    out = {key: value for key, value in record.items() if value}
    return out or None


def to_wire(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-ready event: None and empty lists/maps dropped, custom properties flattened."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        if value is None:
            continue
        if key == "user_data" and type(value) is dict:
            pruned = _flat_strings(value)
        elif key == "custom_data" and isinstance(value, Mapping):
            pruned = flat_custom_data(value)
        elif type(value) is list or type(value) is dict:
            pruned = prune(value)
        else:
            out[key] = value
            continue
        if pruned is not None:
            out[key] = pruned
    return out
