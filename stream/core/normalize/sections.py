"""An event's optional sections: custom_data, app_data, original_event_data, attribution_data.

Each is copied into the enriched record's shape (every field present, None or ``[]`` when
absent) with the few checks a single field needs: currency is ISO 4217 (lowercase), numbers
are finite, custom properties do not reuse a standard field's name. A bad field is dropped
with a warning; whether the event may be sent at all is :mod:`stream.core.validate`'s call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from math import isfinite as _isfinite
from typing import Any, Final

from stream.core.normalize.geo import currency_code
from stream.core.wire import prune

#: What a copied value is pruned into, and the leaves that need no look (as in ``prune``)
_CONTAINERS: Final = (dict, list)
_SCALARS: Final = frozenset({str, int, float, bool, bytes})
_SEQUENCES: Final = (list, tuple)
_NUMBERS: Final = (int, float)

#: custom_data fields of the schema; a custom property must not reuse one of these names.
STANDARD_CUSTOM_DATA_FIELDS: Final = frozenset(
    {
        "value",
        "currency",
        "net_revenue",
        "content_name",
        "content_category",
        "content_ids",
        "contents",
        "content_type",
        "order_id",
        "predicted_ltv",
        "num_items",
        "search_string",
        "status",
        "delivery_category",
        "item_number",
    }
)
_NON_FINITE: Final = "number_non_finite_dropped"


def text(value: object) -> str | None:
    """A string field, trimmed; blank or not a string is None."""
    if isinstance(value, str):
        return value.strip() or None
    return None


def flag(value: object) -> bool | None:
    """A boolean field; anything but a bool is None."""
    return value if isinstance(value, bool) else None


def _double(value: object, warnings: list[str]) -> float | None:
    if type(value) is float:  # the decoded record's type: no further look
        if math.isfinite(value):
            return value
        warnings.append(_NON_FINITE)
        return None
    if value is None or isinstance(value, bool) or not isinstance(value, _NUMBERS):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN: orjson would send null, which Meta reads as a missing value.
        warnings.append(_NON_FINITE)
        return None
    return float(value)


def _long(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strings(value: object) -> list[str]:
    if isinstance(value, _SEQUENCES):
        return [item for item in value if isinstance(item, str)]
    return []


def _content(item: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    get = item.get
    return {
        "id": get("id"),
        "quantity": _long(get("quantity")),
        "item_price": _double(get("item_price"), warnings),
        "delivery_category": get("delivery_category"),
        "title": get("title"),
        "description": get("description"),
        "brand": get("brand"),
        "category": get("category"),
    }


def _custom_properties(raw: object, warnings: list[str]) -> dict[str, Any]:
    if not raw or not isinstance(raw, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in STANDARD_CUSTOM_DATA_FIELDS:
            # Flattened on the wire, it would overwrite or duplicate the standard field.
            warnings.append("custom_property_collision_dropped")
        elif isinstance(value, float) and not math.isfinite(value):
            warnings.append(_NON_FINITE)
        else:
            out[key] = value
    return out


def _currency(raw: object, warnings: list[str]) -> str | None:
    if raw is None:
        return None
    code = currency_code(raw) if isinstance(raw, str) else None
    if code is None and not (isinstance(raw, str) and not raw.strip()):
        warnings.append("currency_invalid_dropped")
    return code


def custom_data(raw: object, warnings: list[str]) -> dict[str, Any] | None:
    """The ``CustomData`` record: currency ``" USD "`` → ``"usd"``, invalid → None + warning."""
    if raw is None or not (type(raw) is dict or isinstance(raw, Mapping)):
        return None
    get = raw.get
    contents = get("contents")
    return {
        "value": _double(get("value"), warnings),
        "currency": _currency(get("currency"), warnings),
        "net_revenue": _double(get("net_revenue"), warnings),
        "content_name": get("content_name"),
        "content_category": get("content_category"),
        "content_ids": _strings(get("content_ids")),
        "contents": (
            [_content(item, warnings) for item in contents if isinstance(item, Mapping)]
            if isinstance(contents, _SEQUENCES)
            else []
        ),
        "content_type": get("content_type"),
        "order_id": get("order_id"),
        "predicted_ltv": _double(get("predicted_ltv"), warnings),
        "num_items": _long(get("num_items")),
        "search_string": get("search_string"),
        "status": get("status"),
        "delivery_category": get("delivery_category"),
        "item_number": get("item_number"),
        "custom_properties": _custom_properties(get("custom_properties"), warnings),
    }


def _wire_copy(out: dict[str, Any], name: str, value: object) -> None:
    # a field copied as it came (not None, not a str: those the callers put themselves): an
    # exact list or map is pruned, as ``prune`` would, and left out when nothing remains
    if type(value) in _SCALARS or not isinstance(value, _CONTAINERS):
        out[name] = value
    else:
        pruned = prune(value)
        if pruned is not None:
            out[name] = pruned


def _flat_copy(out: dict[str, Any], name: str, value: object) -> None:
    # a custom_data field copied as it came: ``flat_custom_data`` prunes exact lists and maps
    # only (a subclass goes as it is)
    if type(value) is list or type(value) is dict:
        pruned = prune(value)
        if pruned is not None:
            out[name] = pruned
    else:
        out[name] = value


def _wire_double(out: dict[str, Any], name: str, value: object, warnings: list[str]) -> None:
    # _double's answer, when the value is not already a finite float (those go in directly)
    number = _double(value, warnings)
    if number is not None:
        out[name] = number


#: A content item's text fields after ``item_price``, in the record's order (:func:`_content`)
_CONTENT_TEXT: Final = ("delivery_category", "title", "description", "brand", "category")


def _wire_content(item: Mapping[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """``prune(_content(item, warnings))``, made without the record item in between.

    Each field's usual type (a str, an int quantity, a finite float price) goes straight in;
    anything else takes the check :func:`_content` makes of it.
    """
    get = item.get
    out: dict[str, Any] = {}
    value = get("id")
    if value is not None:
        if type(value) is str:
            out["id"] = value
        else:
            _wire_copy(out, "id", value)
    value = get("quantity")
    if value is not None:
        if type(value) is int:
            out["quantity"] = value
        elif (quantity := _long(value)) is not None:
            out["quantity"] = quantity
    value = get("item_price")
    if value is not None:
        if type(value) is float and _isfinite(value):
            out["item_price"] = value
        else:
            _wire_double(out, "item_price", value, warnings)
    for name in _CONTENT_TEXT:
        value = get(name)
        if value is not None:
            if type(value) is str:
                out[name] = value
            else:
                _wire_copy(out, name, value)
    return out or None


def _wire_contents(value: object, warnings: list[str]) -> list[dict[str, Any]] | None:
    # the record's contents list, pruned: every Mapping item through _content, empty ones gone
    if not isinstance(value, _SEQUENCES):
        return None
    items = []
    for item in value:
        if type(item) is dict or isinstance(item, Mapping):
            wire = _wire_content(item, warnings)
            if wire is not None:
                items.append(wire)
    return items or None


#: custom_data's text fields, in the record's order, between the checked ones
_TEXT_AFTER_NET_REVENUE: Final = ("content_name", "content_category")
_TEXT_AFTER_CONTENTS: Final = ("content_type", "order_id")
_TEXT_AFTER_NUM_ITEMS: Final = ("search_string", "status", "delivery_category", "item_number")


def wire_custom_data(raw: object, warnings: list[str]) -> dict[str, Any] | None:  # noqa: PLR0915
    """``custom_data`` as it goes on the wire: the same checks as :func:`custom_data`, absent
    fields left out, custom properties flat beside the standard fields; None when empty.

    Equal to ``flat_custom_data(custom_data(raw, warnings))`` (:mod:`stream.core.wire`; a
    property test pins the two), made without the record in between:
    ``{"value": 5, "currency": " USD ", "custom_properties": {"tier": "a"}}`` →
    ``{"value": 5.0, "currency": "usd", "tier": "a"}``.

    Fields are taken in the record's order, so the warnings and the JSON's keys come in the
    order :func:`custom_data` gives them. Each field's usual type (a finite float amount, an
    int count, a str) goes straight in; anything else takes :func:`custom_data`'s check.
    """
    if raw is None or not (type(raw) is dict or isinstance(raw, Mapping)):
        return None
    get = raw.get
    out: dict[str, Any] = {}
    # each field's check written out in place (amounts: a finite float goes straight in; texts:
    # a str does): a helper's call costs more than its usual work
    value = get("value")
    if value is not None:
        if type(value) is float and _isfinite(value):
            out["value"] = value
        else:
            _wire_double(out, "value", value, warnings)
    value = get("currency")
    if value is not None:
        code = _currency(value, warnings)
        if code is not None:
            out["currency"] = code
    value = get("net_revenue")
    if value is not None:
        if type(value) is float and _isfinite(value):
            out["net_revenue"] = value
        else:
            _wire_double(out, "net_revenue", value, warnings)
    for name in _TEXT_AFTER_NET_REVENUE:
        value = get(name)
        if value is not None:
            if type(value) is str:
                out[name] = value
            else:
                _flat_copy(out, name, value)
    value = get("content_ids")
    if value:
        ids = _strings(value)
        if ids:
            out["content_ids"] = ids
    value = get("contents")
    if value:
        contents = _wire_contents(value, warnings)
        if contents is not None:
            out["contents"] = contents
    for name in _TEXT_AFTER_CONTENTS:
        value = get(name)
        if value is not None:
            if type(value) is str:
                out[name] = value
            else:
                _flat_copy(out, name, value)
    value = get("predicted_ltv")
    if value is not None:
        if type(value) is float and _isfinite(value):
            out["predicted_ltv"] = value
        else:
            _wire_double(out, "predicted_ltv", value, warnings)
    value = get("num_items")
    if value is not None:
        if type(value) is int:
            out["num_items"] = value
        elif (count := _long(value)) is not None:
            out["num_items"] = count
    for name in _TEXT_AFTER_NUM_ITEMS:
        value = get(name)
        if value is not None:
            if type(value) is str:
                out[name] = value
            else:
                _flat_copy(out, name, value)
    properties = get("custom_properties")
    if properties:
        for key, value in _custom_properties(properties, warnings).items():
            if key not in out:
                kept = prune(value) if type(value) is list or type(value) is dict else value
                if kept is not None:
                    out[key] = kept
    return out or None


def app_data(raw: object) -> dict[str, Any] | None:
    """The ``AppData`` record, copied; extinfo keeps every positional slot, ``""`` included."""
    if raw is None or not (type(raw) is dict or isinstance(raw, Mapping)):
        return None
    get = raw.get
    return {
        "advertiser_tracking_enabled": flag(get("advertiser_tracking_enabled")),
        "application_tracking_enabled": flag(get("application_tracking_enabled")),
        "extinfo": _strings(get("extinfo")),
        "campaign_ids": get("campaign_ids"),
        "install_referrer": get("install_referrer"),
        "installer_package": get("installer_package"),
        "url_schemes": _strings(get("url_schemes")),
        "vendor_id": get("vendor_id"),
        "windows_attribution_id": get("windows_attribution_id"),
    }


def original_event_data(raw: object) -> dict[str, Any] | None:
    """The ``OriginalEventData`` record, copied."""
    if raw is None or not (type(raw) is dict or isinstance(raw, Mapping)):
        return None
    get = raw.get
    return {
        "event_name": get("event_name"),
        "event_time": _long(get("event_time")),
        "order_id": get("order_id"),
        "event_id": get("event_id"),
    }


def attribution_data(raw: object, warnings: list[str]) -> dict[str, Any] | None:
    """The ``AttributionData`` record, copied; non-finite numbers dropped with a warning."""
    if raw is None or not (type(raw) is dict or isinstance(raw, Mapping)):
        return None
    get = raw.get
    return {
        "scope": get("scope"),
        "visit_time": _long(get("visit_time")),
        "ad_id": get("ad_id"),
        "adset_id": get("adset_id"),
        "campaign_id": get("campaign_id"),
        "attribution_share": _double(get("attribution_share"), warnings),
        "attribution_model": get("attribution_model"),
        "attr_window": _long(get("attr_window")),
        "attribution_value": _double(get("attribution_value"), warnings),
    }
