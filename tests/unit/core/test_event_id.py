"""event_id: the producer's when given, otherwise a pure function of the canonical content."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from stream.core.event_id import derive_event_id, given_event_id

EM = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
PH = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


def user_data(**values: object) -> dict[str, object]:
    base: dict[str, object] = {"em": [EM], "ph": [], "fn": [], "client_user_agent": None}
    base.update(values)
    return base


def derive(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "pixel_id": "1234567890",
        "event_name": "Purchase",
        "event_time": 1_767_225_600,
        "user_data": user_data(),
        "custom_data": {"value": 12.5, "currency": "usd", "content_ids": ["a", "b"]},
    }
    arguments.update(overrides)
    return derive_event_id(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("order-1", "order-1"), ("  order-1 ", "order-1"), ("", None), ("   ", None), (None, None)],
)
def test_given_event_id_is_kept_trimmed(raw: object, expected: str | None) -> None:
    """A non-blank producer id is kept (trimmed); blank or absent means none was given."""
    assert given_event_id(raw) == expected


def test_derived_id_is_32_lowercase_hex() -> None:
    """A derived id is 32 lowercase hex characters."""
    assert re.fullmatch(r"[0-9a-f]{32}", derive())


def test_derived_id_recipe_is_pinned() -> None:
    """The recipe is versioned: this value changes only if the recipe (and its version) does.

    It equals sha256 of the compact, key-sorted JSON of the canonical content, first 32 hex.
    """
    assert derive() == derive_event_id(
        "1234567890",
        "Purchase",
        1_767_225_600,
        {"em": [EM]},
        {"content_ids": ["b", "a"], "currency": "usd", "value": 12.5},
    )
    content = {
        "v": 1,
        "pixel_id": "1234567890",
        "event_name": "Purchase",
        "event_time": 1_767_225_600,
        "user_data": {"em": [EM]},
        "custom_data": {"value": 12.5, "currency": "usd", "content_ids": ["a", "b"]},
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    assert derive() == hashlib.sha256(canonical).hexdigest()[:32]
    assert derive() == "879d42a427460c4505347364481a48d7"


def test_same_content_same_id_whatever_the_dict_order() -> None:
    """Dict key order, at any depth, does not change the id."""
    reordered_user = dict(reversed(list(user_data().items())))
    reordered_custom = {"content_ids": ["a", "b"], "currency": "usd", "value": 12.5}
    assert derive(user_data=reordered_user, custom_data=reordered_custom) == derive()


def test_duplicate_and_reordered_list_values_do_not_change_the_id() -> None:
    """Lists are sets for the id: repeats and order are not content."""
    assert derive(user_data=user_data(em=[EM, EM])) == derive()
    assert derive(
        custom_data={"value": 12.5, "currency": "usd", "content_ids": ["b", "a", "b"]}
    ) == (derive())
    assert derive(user_data=user_data(em=[EM], ph=[PH, EM])) == derive(
        user_data=user_data(em=[EM], ph=[EM, PH])
    )


def test_absent_none_and_empty_are_the_same() -> None:
    """A field that is None, [] , '' or missing is the same absence."""
    assert derive(user_data={"em": [EM], "fn": None, "ln": [], "fbp": ""}) == derive()
    assert derive(custom_data=None) == derive(custom_data={}) == derive(custom_data={"value": None})


def test_nested_contents_are_order_insensitive() -> None:
    """contents items (dicts in a list) are compared as a set of canonical items."""
    one = {"id": "a", "quantity": 1, "title": None}
    two = {"id": "b", "quantity": 2}
    first = derive(custom_data={"contents": [one, two]})
    assert first == derive(custom_data={"contents": [two, {"quantity": 1, "id": "a"}]})


@pytest.mark.parametrize(
    "change",
    [
        {"pixel_id": "999"},
        {"event_name": "Lead"},
        {"event_time": 1_767_225_601},
        {"user_data": user_data(em=[PH])},
        {"custom_data": {"value": 12.6, "currency": "usd", "content_ids": ["a", "b"]}},
        {"pixel_id": None},
    ],
)
def test_any_content_change_changes_the_id(change: dict[str, object]) -> None:
    """Pixel, name, time, hashed user data and custom data all feed the id."""
    assert derive(**change) != derive()


def test_zero_and_false_are_values() -> None:
    """A value of 0 or False is content, unlike None."""
    assert derive(custom_data={"value": 0.0}) != derive(custom_data={})
    assert derive(custom_data={"first": False}) != derive(custom_data={})


def test_keys_hint_gives_the_same_id() -> None:
    """Passing the keys that carry values (as the normalizer does) only saves work."""
    data = user_data(ph=[PH, EM])
    assert derive_event_id("1", "Lead", 1, data, None, keys=["em", "ph"]) == derive_event_id(
        "1", "Lead", 1, data, None
    )


def test_unencodable_text_still_gives_a_stable_id() -> None:
    """A lone surrogate (impossible in decoded Avro) falls back to stdlib JSON, not an error."""
    odd = derive(custom_data={"content_name": "\ud800"})
    assert odd == derive(custom_data={"content_name": "\ud800"})
    assert odd != derive()


def test_custom_properties_with_keys_of_mixed_types_still_give_a_stable_id() -> None:
    """Keys of mixed types (only a hand-built record has them) cannot be sorted as they are:
    the id is still made, stable, and tells the content apart."""
    mixed = derive(custom_data={"custom_properties": {1: "a", "b": 2}})
    assert mixed == derive(custom_data={"custom_properties": {"b": 2, 1: "a"}})
    assert mixed != derive(custom_data={"custom_properties": {1: "a", "b": 3}})
    assert re.fullmatch(r"[0-9a-f]{32}", mixed)
