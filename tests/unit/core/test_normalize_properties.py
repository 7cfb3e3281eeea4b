"""Properties of normalization that must hold for every input string (hypothesis)."""

from __future__ import annotations

import copy
import random
import re
import unicodedata
from typing import Any

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS, PLAIN_KEYS
from stream.core.event_id import derive_event_id
from stream.core.normalize import Normalized, NormalizeOptions, Rejected, dates, normalize_event
from stream.core.normalize.keys import NORMALIZERS, KeyContext, hash_value
from stream.core.normalize.phone import _SEPARATORS, _slow, normalize_phone
from stream.core.validate import REASONS, WARNINGS
from tests.factories import full_raw_event

NOW = 1_767_225_600.0 + 60
US = KeyContext(current_year=2026)
# What may go on the wire for a hashed key (docs/capi.md rules table, "already hashed").
SHA256 = re.compile(r"[0-9a-f]{64}")
APPENDIX = re.compile(r"[0-9a-fA-F]{64}\.[A-Za-z0-9_-]+")
MD5 = re.compile(r"[0-9a-f]{32}")

# Any text, including lone surrogates and control characters, plus shapes that reach the
# interesting branches: hex of hash lengths, emails, digit runs, dates.
any_text = st.one_of(
    st.text(),
    st.text(st.characters(exclude_categories=())),
    st.text("0123456789abcdefABCDEF", min_size=30, max_size=70),
    st.from_regex(r"[0-9a-f]{64}\.[A-Za-z0-9_-]{1,8}", fullmatch=True),
    st.emails(),
    st.text("0123456789 +-().", max_size=20),
    st.from_regex(r"\d{1,4}[-/. ]\d{1,2}[-/. ]\d{1,4}", fullmatch=True),
)
hashed_keys = st.sampled_from(sorted(NORMALIZERS))
lists_of_text = st.lists(any_text, max_size=3)


def wire_shape_ok(value: str, key: str, warnings: list[str]) -> bool:
    if SHA256.fullmatch(value) or APPENDIX.fullmatch(value):
        return True
    return MD5.fullmatch(value) is not None and f"{key}_md5_shape" in warnings


@settings(max_examples=400, deadline=None)
@given(key=hashed_keys, value=any_text)
@example(key="fn", value="\ud800")
@example(key="db", value="9" * 5000)
@example(key="ph", value="+" + "1" * 300)
def test_no_string_makes_a_key_raise_and_hashed_output_has_a_wire_shape(
    key: str, value: str
) -> None:
    """Every value of every hashed key is dropped or comes out as a hash shape Meta accepts."""
    warnings: list[str] = []
    result = hash_value(key, value, US, warnings)
    if result is not None:
        assert wire_shape_ok(result, key, warnings)
    assert set(warnings) <= set(WARNINGS)


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(["fn", "ln", "ct", "st", "em", "country", "ge", "external_id"]),
    value=st.text(),
)
def test_nfd_and_nfc_inputs_hash_alike(key: str, value: str) -> None:
    """Canonically equivalent strings (NFC vs NFD) give the same hash."""
    nfc = hash_value(key, unicodedata.normalize("NFC", value), US, [])
    nfd = hash_value(key, unicodedata.normalize("NFD", value), US, [])
    assert nfc == nfd


def _raw_with(data: st.DataObject) -> dict[str, Any]:
    raw = full_raw_event()
    # Mostly valid options and times, so that most drawn events get through to be normalized.
    options = data.draw(st.sampled_from([None, [], ["LDU"], [" ldu "], "any"]))
    raw["data_processing_options"] = (
        data.draw(st.lists(any_text, max_size=2)) if options == "any" else options
    )
    user = raw["user_data"]
    for key in data.draw(st.sets(st.sampled_from(HASHED_KEYS), max_size=4)):
        user[key] = data.draw(lists_of_text)
    for key in data.draw(st.sets(st.sampled_from((*LEGACY_HASHED_KEYS, *PLAIN_KEYS)), max_size=4)):
        user[key] = data.draw(st.one_of(st.none(), any_text))
    for field in data.draw(
        st.sets(
            st.sampled_from(
                [
                    "event_name",
                    "action_source",
                    "event_id",
                    "event_source_url",
                    "pixel_id",
                    "test_event_code",
                    "referrer_url",
                    "customer_segmentation",
                ]
            ),
            max_size=2,
        )
    ):
        raw[field] = data.draw(st.one_of(st.none(), any_text))
    if data.draw(st.booleans()):
        raw["custom_data"]["currency"] = data.draw(
            st.one_of(st.sampled_from(["usd", " EUR ", "jpy"]), st.none(), any_text)
        )
        raw["custom_data"]["custom_properties"] = data.draw(
            st.dictionaries(any_text, st.one_of(st.none(), any_text, st.floats()), max_size=3)
        )
    if data.draw(st.sampled_from([False, False, False, True])):
        raw["event_time"] = data.draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
    return raw


@settings(max_examples=300, deadline=None)
@given(data=st.data(), hash_external_id=st.booleans())
def test_no_string_makes_normalize_event_raise(data: st.DataObject, hash_external_id: bool) -> None:
    """Any strings anywhere give Normalized (hash-shaped user data) or Rejected (a known code)."""
    raw = _raw_with(data)
    result = normalize_event(raw, NOW, NormalizeOptions(hash_external_id=hash_external_id))
    if isinstance(result, Rejected):
        assert result.reason in REASONS
        return
    assert set(result.warnings) <= set(WARNINGS)
    warnings = list(result.warnings)
    for key in HASHED_KEYS:
        if key == "external_id" and not hash_external_id:
            continue
        for value in result.event["user_data"][key]:
            assert wire_shape_ok(value, key, warnings)
    for key in LEGACY_HASHED_KEYS:
        value = result.event["user_data"][key]
        assert value is None or wire_shape_ok(value, key, warnings)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), hash_external_id=st.booleans())
def test_normalizing_a_normalized_event_changes_nothing(
    data: st.DataObject, hash_external_id: bool
) -> None:
    """normalize(normalize(x)) == normalize(x): hashes stay, every other step is stable."""
    options = NormalizeOptions(hash_external_id=hash_external_id)
    first = normalize_event(_raw_with(data), NOW, options)
    if not isinstance(first, Normalized):
        return
    again = {**copy.deepcopy(first.event), "pixel_id": first.pixel_id}
    again["test_event_code"] = first.test_event_code
    second = normalize_event(again, NOW, options)
    assert isinstance(second, Normalized)
    assert second.event == first.event
    assert (second.event_id, second.pixel_id, second.test_event_code) == (
        first.event_id,
        first.pixel_id,
        first.test_event_code,
    )


def _country_code_prefixes(region: str) -> list[str]:
    code = str(phonenumbers.country_code_for_region(region))
    return ["", "+", "00", "0", code, "+" + code, "00" + code, "+" + code + "0"]


@settings(max_examples=400, deadline=None)
@given(
    region=st.sampled_from(
        ["US", "GB", "DE", "FR", "IN", "CA", "IT", "JP", "AU", "MX", "BR", "AR"]
    ),
    digits=st.text("0123456789", min_size=1, max_size=14),
    data=st.data(),
)
def test_the_phone_fast_path_answers_like_the_library(
    region: str, digits: str, data: st.DataObject
) -> None:
    """Whatever the digits, the fast path gives the full phonenumbers answer or defers to it."""
    text = data.draw(st.sampled_from(_country_code_prefixes(region))) + digits
    compact = _SEPARATORS.sub("", text)
    international = compact.startswith(("+", "00"))
    bare = compact[1:] if compact.startswith("+") else compact
    bare = bare[2:] if compact.startswith("00") else bare
    assert normalize_phone(text, region) == _slow(text, bare, international, region)


HASHES = [f"{i:064x}" for i in range(1, 6)]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.sampled_from(HASHES), min_size=1, max_size=5),
    content_ids=st.lists(st.sampled_from(["a", "b", "c"]), max_size=4),
    seed=st.integers(),
)
def test_the_derived_id_ignores_order_and_repeats(
    values: list[str], content_ids: list[str], seed: int
) -> None:
    """Shuffled and repeated list values, and reordered dicts, derive the same event_id."""
    shuffler = random.Random(seed)
    shuffled = [*values, *shuffler.sample(values, k=len(values))]
    shuffler.shuffle(shuffled)
    shuffled_ids = content_ids + content_ids
    shuffler.shuffle(shuffled_ids)
    user = {"em": values, "ph": [], "fbp": None}
    reordered_user = {"fbp": None, "ph": [], "em": shuffled}
    assert derive_event_id(
        "1", "Lead", 1, user, {"content_ids": content_ids, "value": 1.0}
    ) == derive_event_id(
        "1", "Lead", 1, reordered_user, {"value": 1.0, "content_ids": shuffled_ids}
    )


_NEVER = re.compile(r"(?!)")


@settings(max_examples=400, deadline=None)
@given(
    numbers=st.tuples(st.integers(0, 3000), st.integers(0, 40), st.integers(0, 3000)).map(
        lambda t: [str(n) for n in t]
    ),
    padded=st.booleans(),
    separators=st.tuples(st.sampled_from("-/. "), st.sampled_from("-/.:")),
    joined=st.booleans(),
    day_first=st.booleans(),
)
def test_the_date_shapes_taken_directly_answer_like_the_general_path(
    numbers: list[str], padded: bool, separators: tuple[str, str], joined: bool, day_first: bool
) -> None:
    """Three numbers with separators, or eight digits, parsed directly, give what the token
    walk gives (the same text with the shortcuts turned off)."""
    if padded:
        numbers = [n.zfill(2) for n in numbers]
    text = (
        "".join(numbers)
        if joined
        else f"{numbers[0]}{separators[0]}{numbers[1]}{separators[1]}{numbers[2]}"
    )
    shortcuts = dates._THREE_NUMBERS, dates._EIGHT_DIGITS
    direct = dates.parse_birth_date(text, 2026, day_first=day_first)
    try:
        dates._THREE_NUMBERS, dates._EIGHT_DIGITS = _NEVER, _NEVER  # type: ignore[misc]
        walked = dates.parse_birth_date(text, 2026, day_first=day_first)
    finally:
        dates._THREE_NUMBERS, dates._EIGHT_DIGITS = shortcuts  # type: ignore[misc]
    assert direct == walked
