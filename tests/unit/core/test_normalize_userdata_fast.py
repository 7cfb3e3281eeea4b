"""The shortcuts of the user_data path answer exactly as the general steps they stand in for."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS, PLAIN_KEYS
from stream.core.normalize.keys import (
    _EMAIL,
    NORMALIZERS,
    KeyContext,
    key_context,
    memo_contexts,
)
from stream.core.normalize.phone import (
    _ASCII_SEPARATORS,
    _SEPARATORS,
    _main_region,
    _region,
    _slow,
    normalize_phone,
)
from stream.core.normalize.text import sha256_hex
from stream.core.normalize.user_data import (
    _plain,
    _raw_ids,
    _values,
    event_country,
    normalize_user_data,
)

# Phone-shaped text: digits, the separators people type, the characters parse() interprets and
# a little non-ASCII (full-width digits, no-break spaces). Not tabs or other control whitespace:
# the separator pattern takes them (as it always has) where the library refuses the number.
_PHONE_CHARS = st.sampled_from([*"0123456789 ()-./+x#*extA\u00a0\u2007\uff11\uff12", "ext. ", "00"])
_PHONE_TEXT = st.lists(_PHONE_CHARS, max_size=24).map("".join)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_ascii_separators_are_removed_as_the_pattern_removes_them(text: str) -> None:
    """``bytes.translate`` with the ASCII separators equals the separator pattern on ASCII."""
    assert text.encode().translate(None, _ASCII_SEPARATORS).decode() == _SEPARATORS.sub("", text)


def test_main_region_table_is_the_library_function() -> None:
    """Every 1-3 digit prefix finds the country code and main region the library names."""
    for number in range(1, 1000):
        digits = f"{number}000000000"
        found = _main_region(digits)
        expected = None
        for length in (1, 2, 3):
            main = phonenumbers.region_code_for_country_code(int(digits[:length]))
            if main != phonenumbers.UNKNOWN_REGION:
                info = _region(main)
                expected = None if info is None else (digits[:length], info)
                break
        assert found == expected, digits


_REGIONS = ["US", "GB", "DE", "BR", "IN", "AR", "JP", "FR", "AU", "MX", "JE", "CA"]


@st.composite
def _typed_numbers(draw: st.DrawFn) -> str:
    """A real example number of some region, written as people type it: +CC, 00CC, national
    or bare digits, with separators (ASCII or not) between random digit groups."""
    region = draw(st.sampled_from(_REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.integers(0, 11)))
    if example is None:
        example = phonenumbers.example_number(region)
    assert example is not None
    national = str(example.national_number)
    code = str(example.country_code)
    prefix = draw(st.sampled_from(["+" + code, "00" + code, code, "", "0", "1"]))
    digits = prefix + national
    out = []
    for char in digits:
        out.append(char)
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "/", "(", ")", "\u00a0"])))
    return "".join(out)


def _library(text: str, region: str) -> str | None:
    """normalize_phone's answer through the library path only (no shortcut)."""
    stripped = text.strip()
    if not stripped or len(stripped) > 250:
        return None
    compact = _SEPARATORS.sub("", stripped)
    if compact.startswith("+"):
        return _slow(stripped, compact[1:], True, region)
    if compact.startswith("00"):
        return _slow(stripped, compact[2:], True, region)
    return _slow(stripped, compact, False, region)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_typed_numbers(), _PHONE_TEXT), st.sampled_from(_REGIONS))
def test_the_phone_shortcuts_answer_as_the_library(text: str, region: str) -> None:
    """Any phone-shaped text gets the answer of the library path (parse() and
    is_valid_number(), E.164 digits or None), whichever way normalize_phone takes."""
    assert normalize_phone.__wrapped__(text, region) == _library(text, region)


# -- the hashed keys: memo contexts, the e-mail pattern, the zip's whitespace ------------------

_YEARS = st.sampled_from([2024, 2026])
_COUNTRIES = st.sampled_from([None, "us", "ca", "gb", "de", "fr", "br", "in", "jp"])
# Values each key's step reads: its own sample values and arbitrary short text.
_KEY_VALUES = st.one_of(
    st.sampled_from(
        [
            "John_Smith@Gmail.com", "(650)555-1212", "+44 20 7946 0958", "03/04/1997",
            "1997-02-16", "California", "N.Y.", "Bayern", "94035-1234", "940351234", "M1 1AE",
            "United States", "Female", "Mary-Jane", "2000", "feb", "07", "Québec", "k1a 0b1",
        ]
    ),
    st.text(max_size=20),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_KEY_VALUES, _YEARS, st.sampled_from(_REGIONS), _COUNTRIES)
def test_each_key_answers_in_its_memo_context_as_in_the_events_own(
    value: str, year: int, region: str, country: str | None
) -> None:
    """Every key's step gives the same normal form in the context its memo entries are keyed
    on (memo_contexts) as in the event's own context: the memo never mixes up two events."""
    own = key_context(year, region, country)
    memo = memo_contexts(year, region, country)
    assert set(memo) == set(NORMALIZERS)
    for key, normalizer in NORMALIZERS.items():
        assert normalizer(value, memo[key]) == normalizer(value, own), key


_EMAIL_TEXT = st.text(alphabet="@. \t\u00a0ab.é1-_", max_size=16)
_EMAIL_BACKTRACKING: re.Pattern[str] = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]{2,}")


@settings(max_examples=500)
@given(st.one_of(_EMAIL_TEXT, st.text(max_size=12)))
def test_the_possessive_email_pattern_accepts_what_the_plain_one_accepts(text: str) -> None:
    """The e-mail pattern without backtracking matches exactly the strings the same pattern
    with ordinary quantifiers matches."""
    assert (_EMAIL.fullmatch(text) is None) == (_EMAIL_BACKTRACKING.fullmatch(text) is None)


@given(
    st.text(
        alphabet=st.sampled_from(" \t\n\x0b\x0c\r\x1c\x1d\x85\u00a0\u2003\u3000ab-1"), max_size=16
    )
)
def test_str_split_drops_the_whitespace_the_pattern_drops(text: str) -> None:
    """``"".join(text.split())`` (the zip's step) removes what ``\\s+`` removes, no more."""
    assert "".join(text.split()) == re.sub(r"\s+", "", text)


# -- normalize_user_data: the inline single-value path and memo contexts -----------------------

_HASH_OF_US = hashlib.sha256(b"us").hexdigest()


def _one(key: str, value: object, ctx: KeyContext, warnings: list[str]) -> str | None:
    """hash_value's rules as written in its docstring, with no memo."""
    if type(value) is not str:
        if value is not None:
            warnings.append(f"{key}_invalid_dropped")
        return None
    trimmed = value.strip()
    if not trimmed:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{64}", trimmed):
        return trimmed.lower()
    if re.fullmatch(r"[0-9a-fA-F]{64}\.[A-Za-z0-9_-]+", trimmed):
        return trimmed
    if re.fullmatch(r"[0-9a-fA-F]{32}", trimmed):
        warnings.append(f"{key}_md5_shape")
        return trimmed.lower()
    normalized = NORMALIZERS[key](trimmed, ctx)
    if not normalized:
        warnings.append(f"{key}_invalid_dropped")
        return None
    return sha256_hex(normalized)


def _general(
    raw: dict[str, Any], year: int, region: str, hash_external_id: bool, warnings: list[str]
) -> dict[str, Any]:
    """The user_data rules value by value, in the event's own context: every value of every
    key, de-duplicated, no shortcut and no memo."""
    ctx = key_context(year, region, event_country(raw.get("country")))
    out: dict[str, Any] = {}
    for key, values in raw.items():
        if not values:
            continue
        if key in HASHED_KEYS:
            if key == "external_id" and not hash_external_id:
                hashed = _raw_ids(values)
            else:
                hashed = []
                for value in _values(values):
                    one = _one(key, value, ctx, warnings)
                    if one is not None and one not in hashed:
                        hashed.append(one)
            if hashed:
                out[key] = hashed
        elif key in LEGACY_HASHED_KEYS:
            one = _one(key, values, ctx, warnings)
            if one is not None:
                out[key] = one
        elif key in PLAIN_KEYS:
            text = _plain(values)
            if text is not None:
                out[key] = text
    return out


def _hashed_forms(text: str) -> st.SearchStrategy[str]:
    digest = hashlib.sha256(text.encode()).hexdigest()
    md5 = hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (the shape Meta warns about)
    return st.sampled_from(
        [digest, digest.upper(), f" {digest} ", md5, md5.upper(), digest + ".AbC_1",
         digest + ".", digest[:63] + "g", "g" * 64, digest[:32] + "x"]
    )  # fmt: skip


_VALUE = _KEY_VALUES.flatmap(lambda text: st.one_of(st.just(text), _hashed_forms(text)))
_LIST_VALUE = st.one_of(
    st.lists(_VALUE, max_size=3),
    st.lists(st.one_of(_VALUE, st.none(), st.integers(0, 9)), max_size=2),
    _VALUE,
    st.tuples(_VALUE),
)
_RAW_USER_DATA = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(HASHED_KEYS, _LIST_VALUE),
        "country": st.one_of(
            _LIST_VALUE, st.sampled_from([["US"], ["u.s."], [_HASH_OF_US], ["FRA"], [""]])
        ),
        **{key: st.one_of(_VALUE, st.none(), st.integers(0, 9)) for key in LEGACY_HASHED_KEYS},
        **{key: st.one_of(_VALUE, st.none(), st.integers(0, 99)) for key in PLAIN_KEYS},
        "unknown": st.just(["x"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(_RAW_USER_DATA, _YEARS, st.sampled_from(_REGIONS), st.booleans())
def test_user_data_answers_as_every_value_through_hash_value(
    raw: dict[str, Any], year: int, region: str, hash_external_id: bool
) -> None:
    """normalize_user_data (one value inline, memo contexts, the memo) gives the keys, their
    order, the hashes and the warnings of the plain rules: each value by hash_value's rules in
    the event's own context. Asked twice, so the second answer comes from the memo."""
    expected_warnings: list[str] = []
    expected = _general(raw, year, region, hash_external_id, expected_warnings)
    for _ in range(2):
        warnings: list[str] = []
        out, keys = normalize_user_data(
            raw,
            current_year=year,
            default_region=region,
            hash_external_id=hash_external_id,
            warnings=warnings,
        )
        assert list(out.items()) == list(expected.items())
        assert keys == list(expected)
        assert warnings == expected_warnings
