"""custom_data's wire form takes each field's usual type straight in and answers as the record
form does, for decoded records and for hand-built ones with odd types alike."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from enum import IntEnum
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.normalize.sections import custom_data, wire_custom_data
from stream.core.wire import flat_custom_data


class Count(IntEnum):
    """An int subclass: not the exact type the direct path takes."""

    TWO = 2


class Tagged(dict[str, Any]):
    """A dict subclass: copied as it came in custom_data, pruned inside a content item."""


class Items(list[Any]):
    """A list subclass."""


odd = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([Count.TWO, math.nan, math.inf, -math.inf, 2**70, 0, 0.0, "", " x "]),
    st.builds(Tagged, st.dictionaries(st.sampled_from("ab"), st.one_of(st.none(), st.text()))),
    st.builds(Items, st.lists(st.one_of(st.none(), st.text(max_size=2)), max_size=2)),
    st.lists(st.one_of(st.none(), st.integers(), st.lists(st.none(), max_size=1)), max_size=2),
    st.dictionaries(st.sampled_from("ab"), st.one_of(st.none(), st.integers()), max_size=2),
)
amounts = st.one_of(st.none(), st.floats(), st.integers(-(2**40), 2**40), odd)
texts = st.one_of(st.none(), st.text(max_size=4), odd)
item = st.fixed_dictionaries(
    {
        "id": texts,
        "quantity": st.one_of(st.none(), st.integers(0, 9), odd),
        "item_price": amounts,
        "delivery_category": texts,
        "title": texts,
        "description": texts,
        "brand": texts,
        "category": texts,
    }
)
#: custom_data as fastavro decodes it (every field, in the record's order), odd values mixed in
record = st.fixed_dictionaries(
    {
        "value": amounts,
        "currency": st.one_of(st.none(), st.sampled_from(["USD", " eur ", "xx", "", " "]), odd),
        "net_revenue": amounts,
        "content_name": texts,
        "content_category": texts,
        "content_ids": st.one_of(st.lists(st.one_of(st.text(max_size=3), st.none())), odd),
        "contents": st.one_of(
            st.lists(st.one_of(item, item.map(OrderedDict), item.map(Tagged), odd), max_size=3),
            odd,
        ),
        "content_type": texts,
        "order_id": texts,
        "predicted_ltv": amounts,
        "num_items": st.one_of(st.none(), st.integers(-5, 5), odd),
        "search_string": texts,
        "status": texts,
        "delivery_category": texts,
        "item_number": texts,
        "custom_properties": st.one_of(
            st.dictionaries(st.sampled_from(["tier", "value", "currency", "n"]), amounts),
            odd,
        ),
    }
)


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS)


@settings(max_examples=500, deadline=None)
@given(raw=st.one_of(record, record.map(OrderedDict)))
def test_the_direct_wire_form_is_the_flattened_record(raw: dict[str, Any]) -> None:
    """Any decoded-shaped custom_data, usual or odd types: the wire form is the flattened
    record form, same keys in the same order, same values and types, same warnings in order."""
    record_warnings: list[str] = []
    wire_warnings: list[str] = []
    try:
        expected = custom_data(copy.deepcopy(raw), record_warnings)
        flat = flat_custom_data(expected) if expected is not None else None
    except OverflowError:  # float() of a 70-bit int: the wire form must raise it too
        try:
            wire_custom_data(copy.deepcopy(raw), wire_warnings)
        except OverflowError:
            return
        raise AssertionError("the record form raised OverflowError, the wire form did not")  # noqa: B904
    got = wire_custom_data(copy.deepcopy(raw), wire_warnings)
    assert repr(got) == repr(flat)  # types too: 5 stays an int nowhere it became 5.0
    if got is not None:
        assert list(got) == list(flat or {})
    assert wire_warnings == record_warnings


def test_a_typical_decoded_record_goes_through_unchanged_types() -> None:
    """A Purchase as fastavro decodes it: floats, ints and strings kept as they are, absent
    fields and empty lists left out, a content item's None fields dropped."""
    raw = {
        "value": 303.55, "currency": "EUR", "net_revenue": None, "content_name": None,
        "content_category": None, "content_ids": ["sku-1", "sku-2"],
        "contents": [{"id": "sku-1", "quantity": 1, "item_price": 139.01,
                      "delivery_category": None, "title": None, "description": None,
                      "brand": None, "category": None}],
        "content_type": "product", "order_id": "ord-1", "predicted_ltv": None, "num_items": 2,
        "search_string": None, "status": None, "delivery_category": None, "item_number": None,
        "custom_properties": {},
    }  # fmt: skip
    warnings: list[str] = []
    assert wire_custom_data(raw, warnings) == {
        "value": 303.55, "currency": "eur", "content_ids": ["sku-1", "sku-2"],
        "contents": [{"id": "sku-1", "quantity": 1, "item_price": 139.01}],
        "content_type": "product", "order_id": "ord-1", "num_items": 2,
    }  # fmt: skip
    assert warnings == []
