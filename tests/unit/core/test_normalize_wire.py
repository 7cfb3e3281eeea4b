"""normalize_wire makes directly what to_wire makes of normalize_event's record: same JSON."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.capi import ACTION_SOURCES
from stream.core.normalize import (
    Normalized,
    NormalizeOptions,
    Rejected,
    WireEvent,
    normalize_event,
    normalize_wire,
)
from stream.core.normalize.keys import key_context
from stream.core.normalize.phone import PHONE_CACHE_SIZE, normalize_phone
from stream.core.normalize.sections import custom_data, wire_custom_data
from stream.core.normalize.user_data import EMPTY_USER_DATA, avro_user_data
from stream.core.validate import (
    Problem,
    check_action_source,
    check_event_time,
    event_time_seconds,
)
from stream.core.wire import flat_custom_data, prune, to_wire
from tests.factories import full_raw_event, raw_event

NOW = 1_767_225_600.0 + 60

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "x", "Valéry", "\u200bUSD", " usd ", "EUR", "zz"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
custom_field_names = st.sampled_from(
    [
        "value", "currency", "net_revenue", "content_name", "content_ids", "contents",
        "predicted_ltv", "num_items", "status", "item_number", "custom_properties",
    ]
)  # fmt: skip
content_items = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.none(), st.text(max_size=3)),
        "quantity": st.one_of(st.none(), st.integers(0, 5), st.booleans()),
        "item_price": st.one_of(st.none(), st.floats(), st.integers(0, 9)),
        "title": st.one_of(st.none(), st.text(max_size=3), values),
        "brand": values,
    },
)
contents = st.lists(
    st.one_of(content_items, content_items.map(OrderedDict), values),
    max_size=3,
)
raw_custom_data = st.one_of(
    st.none(),
    st.dictionaries(custom_field_names, values, max_size=8),
    st.fixed_dictionaries(
        {
            "value": st.one_of(st.none(), st.floats(), st.integers(0, 100)),
            "currency": st.one_of(st.none(), st.sampled_from(["USD", " eur ", "xx", ""])),
            "contents": st.one_of(st.none(), contents),
            "content_ids": st.one_of(
                st.none(), st.lists(st.one_of(st.text(max_size=3), st.none()))
            ),
            "custom_properties": st.one_of(
                st.none(), st.dictionaries(st.sampled_from(["tier", "value", "n", "x"]), values)
            ),
        }
    ),
)


@settings(max_examples=200, deadline=None)
@given(raw=raw_custom_data)
def test_wire_custom_data_is_the_flattened_record(raw: Any) -> None:
    """The direct wire custom_data equals flat_custom_data of the record, warnings alike."""
    record_warnings: list[str] = []
    wire_warnings: list[str] = []
    record = custom_data(copy.deepcopy(raw), record_warnings)
    expected = flat_custom_data(record) if record is not None else None
    got = wire_custom_data(copy.deepcopy(raw), wire_warnings)
    assert orjson.dumps(got, option=orjson.OPT_NON_STR_KEYS) == orjson.dumps(
        expected, option=orjson.OPT_NON_STR_KEYS
    )
    assert wire_warnings == record_warnings


def _mutated(event: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """``event`` with a few fields blanked, changed or given odd values."""
    event = copy.deepcopy(event)
    for name in data.draw(st.lists(st.sampled_from(sorted(event)), max_size=5)):
        event[name] = data.draw(st.one_of(st.none(), values), label=name)
    user = event["user_data"]
    if isinstance(user, dict) and user:
        for name in data.draw(st.lists(st.sampled_from(sorted(user)), max_size=4)):
            user[name] = data.draw(
                st.one_of(st.none(), st.lists(st.sampled_from(["", "Zoë", "a@b.co"]), max_size=2))
            )
    event["custom_data"] = data.draw(st.one_of(st.just(event["custom_data"]), raw_custom_data))
    return event


def _same(raw: dict[str, Any]) -> None:
    record = normalize_event(copy.deepcopy(raw), NOW)
    wire = normalize_wire(copy.deepcopy(raw), NOW)
    if isinstance(record, Rejected):
        assert wire == record
        return
    assert isinstance(record, Normalized)
    assert isinstance(wire, WireEvent)
    assert wire.wire == to_wire(record.event)
    assert orjson.dumps(wire.wire) == orjson.dumps(to_wire(record.event))  # key order too
    assert (wire.event_id, wire.pixel_id, wire.test_event_code, wire.warnings) == (
        record.event_id, record.pixel_id, record.test_event_code, record.warnings,
    )  # fmt: skip
    assert wire.event_name == record.event["event_name"]
    assert wire.event_time == record.event["event_time"]
    assert wire.action_source == record.event["action_source"]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), full=st.booleans())
def test_the_wire_event_is_to_wire_of_the_record(data: st.DataObject, full: bool) -> None:
    """For any mutation of a full or minimal event: same JSON (bytes, key order included),
    same id, pixel, test code and warnings, or the same rejection."""
    _same(_mutated(full_raw_event() if full else raw_event(), data))


def test_every_section_of_a_full_event_goes_on_the_wire_as_to_wire_makes_it() -> None:
    """The full event (every field set, nested sections, LDU, app data) is the same JSON."""
    _same(full_raw_event())
    app = full_raw_event()
    app.update(action_source="app", event_id=None)
    _same(app)


def test_the_derived_flag_says_who_made_the_event_id() -> None:
    """A producer's event_id is kept (not derived); none, blank or not a string is derived, and
    the derived id is the one normalize_event derives (the recipe reads the record's shape)."""
    given = normalize_wire(raw_event(), NOW)
    assert isinstance(given, WireEvent)
    assert (given.event_id, given.event_id_derived) == ("order-100045", False)
    for missing in (None, "  ", 7):
        raw = full_raw_event()
        raw["event_id"] = missing
        derived = normalize_wire(raw, NOW)
        record = normalize_event(raw, NOW)
        assert isinstance(derived, WireEvent)
        assert isinstance(record, Normalized)
        assert derived.event_id_derived
        assert derived.event_id == record.event_id
        assert len(derived.event_id) == 32


def test_user_data_on_the_wire_holds_only_keys_with_values() -> None:
    """The wire user_data has no empty key; the record's shape fills in every field."""
    result = normalize_wire(raw_event(), NOW)
    assert isinstance(result, WireEvent)
    user = result.wire["user_data"]
    assert sorted(user) == ["client_ip_address", "client_user_agent", "em", "ph"]
    assert all(user.values())
    record = avro_user_data(user)
    assert list(record) == list(EMPTY_USER_DATA)
    assert record["fn"] == []
    assert record["fi"] is None
    assert record["em"] == user["em"]


def test_nan_and_infinity_never_reach_the_json() -> None:
    """Non-finite numbers are dropped with a warning, so the JSON has no null for them."""
    raw = raw_event()
    raw["custom_data"]["value"] = math.nan
    raw["custom_data"]["custom_properties"] = {"score": math.inf}
    result = normalize_wire(raw, NOW)
    assert isinstance(result, Rejected)  # a Purchase without its value
    assert result.reason == "purchase_without_value"
    raw = raw_event(event_name="Lead")
    raw["custom_data"]["custom_properties"] = {"score": math.inf, "tier": "a"}
    result = normalize_wire(raw, NOW)
    assert isinstance(result, WireEvent)
    assert result.wire["custom_data"] == {"value": 123.45, "currency": "usd", "tier": "a"}
    assert "number_non_finite_dropped" in result.warnings


def test_a_phone_number_is_parsed_once_per_region() -> None:
    """The same number in events of other countries (other hash-memo keys) parses once: the
    phone cache answers; it is bounded, and another region is another entry."""
    normalize_phone.cache_clear()
    key_context(2026, "US", None)
    assert normalize_phone("(650) 555-0199", "US") == "16505550199"
    assert normalize_phone("(650) 555-0199", "US") == "16505550199"
    info = normalize_phone.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, PHONE_CACHE_SIZE)
    assert normalize_phone("(650) 555-0199", "GB") != "16505550199"
    assert normalize_phone.cache_info().misses == 2


def _plain_prune(value: Any) -> Any:
    """The obvious recursion :func:`prune` must equal (it takes shortcuts for leaves)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            kept = _plain_prune(item) if isinstance(item, dict | list) else item
            if kept is not None:
                out[key] = kept
        return out or None
    if isinstance(value, list):
        items = [_plain_prune(item) if isinstance(item, dict | list) else item for item in value]
        return [item for item in items if item is not None] or None
    return value


nested = st.recursive(
    st.one_of(scalars, st.binary(max_size=2)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3).map(OrderedDict)
        | st.tuples(inner, inner)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(value=nested)
def test_prune_is_the_plain_recursion(value: Any) -> None:
    """prune drops None and empty lists and maps at every depth, walks map and list subclasses,
    keeps tuples, bytes, False, 0 and "" as they are: the same object graph as the obvious
    recursion, compared by value and by type."""
    got, expected = prune(copy.deepcopy(value)), _plain_prune(copy.deepcopy(value))
    assert repr(got) == repr(expected)


_SOURCES = sorted(ACTION_SOURCES)


@settings(max_examples=400, deadline=None)
@given(
    offset=st.one_of(
        st.integers(-100, 100),
        st.integers(-(8 * 86_400), 63 * 86_400),
        st.sampled_from([0, 59, 60, 61, 3600, 7 * 86_400 - 3600, 7 * 86_400 - 3599]),
    ),
    form=st.sampled_from(["int", "float", "ms", "bool", "text", "none", "nan"]),
    source=st.one_of(
        st.sampled_from(_SOURCES),
        st.sampled_from([" Website", "APP", "web", "", None, 7, ["website"], "physical_store "]),
    ),
    margin=st.sampled_from([0, 3600, 86_400]),
    skew=st.sampled_from([0, 60]),
)
def test_event_time_and_source_are_what_the_checks_of_validate_say(
    offset: int, form: str, source: Any, margin: int, skew: int
) -> None:
    """The event's time and source steps answer as event_time_seconds, check_action_source
    and check_event_time do, in that order: the same refusal and detail, or the same time
    (clamped, or converted from milliseconds) with the same warnings."""
    now = NOW + 0.25  # a fraction: a clamped time is floor(now)
    seconds = int(NOW) - offset
    raw_time: Any = {
        "int": seconds, "float": float(seconds), "ms": seconds * 1000 + 7, "bool": True,
        "text": str(seconds), "none": None, "nan": math.nan,
    }[form]  # fmt: skip
    options = NormalizeOptions(max_future_skew_s=skew, age_safety_margin_s=margin)
    app = {"advertiser_tracking_enabled": True, "extinfo": ["i2"] + [""] * 15}  # for "app"
    raw = raw_event(event_time=raw_time, action_source=source, app_data=app)
    got = normalize_wire(raw, now, options)
    expected_time = event_time_seconds(raw_time)
    problem: Problem | None = expected_time if isinstance(expected_time, Problem) else None
    if problem is None:
        assert isinstance(expected_time, tuple)
        checked_source = check_action_source(source)
        if isinstance(checked_source, Problem):
            problem = checked_source
        else:
            clock = check_event_time(
                expected_time[0], checked_source, now,
                max_future_skew_s=skew, age_safety_margin_s=margin,
            )  # fmt: skip
            if isinstance(clock, Problem):
                problem = clock
    if problem is not None:
        assert isinstance(got, Rejected)
        assert (got.reason, got.detail) == (problem.reason, problem.detail)
        return
    assert isinstance(got, WireEvent), got
    assert not isinstance(checked_source, Problem)
    assert not isinstance(clock, Problem)
    assert (got.event_time, got.action_source) == (clock, checked_source)
    assert got.wire["event_time"] == clock
    assert ("event_time_milliseconds" in got.warnings) == expected_time[1]
    assert ("event_time_clamped" in got.warnings) == (clock != expected_time[0])
