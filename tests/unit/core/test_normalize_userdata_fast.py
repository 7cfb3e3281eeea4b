"""The shortcuts of the user_data path answer exactly as the general steps they stand in for."""

from __future__ import annotations

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.normalize.phone import (
    _ASCII_SEPARATORS,
    _SEPARATORS,
    _main_region,
    _region,
    _slow,
    normalize_phone,
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
