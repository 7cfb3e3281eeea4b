"""Invisible Unicode format characters (category Cf) never reach an event name or a hash.

Issue 10 part 7: ``Purchase\\u200b`` was sent as a different event name, and an e-mail with a
zero-width space was hashed with it, so it could never match. The hashes below are docs/capi.md's
test vectors (§3.8): a value with invisible characters must hash exactly like the clean one.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.normalize import DEFAULT_OPTIONS, Normalized, Rejected, normalize_event
from stream.core.normalize.text import _format_bytes, drop_format_chars, without_format_chars
from tests.factories import custom_data, empty_user_data, raw_event

NOW = 1_767_225_600.0 + 60
# docs/capi.md §3.8 SHA-256 test vectors
JOHN = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"  # john_smith@gmail.com
PHONE = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"  # 16505551212
MARY = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"  # mary
VALERY = "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"  # valéry (NFC)
KOREAN = "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"  # 정

#: The characters the issue names: zero-width, word joiner, BOM, bidi marks, soft hyphen.
INVISIBLE = {
    "ZERO WIDTH SPACE": "\u200b",
    "ZERO WIDTH NON-JOINER": "\u200c",
    "ZERO WIDTH JOINER": "\u200d",
    "WORD JOINER": "\u2060",
    "BYTE ORDER MARK": "\ufeff",
    "LEFT-TO-RIGHT MARK": "\u200e",
    "RIGHT-TO-LEFT MARK": "\u200f",
    "LEFT-TO-RIGHT EMBEDDING": "\u202a",
    "RIGHT-TO-LEFT EMBEDDING": "\u202b",
    "POP DIRECTIONAL FORMATTING": "\u202c",
    "LEFT-TO-RIGHT OVERRIDE": "\u202d",
    "RIGHT-TO-LEFT OVERRIDE": "\u202e",
    "LEFT-TO-RIGHT ISOLATE": "\u2066",
    "RIGHT-TO-LEFT ISOLATE": "\u2067",
    "FIRST STRONG ISOLATE": "\u2068",
    "POP DIRECTIONAL ISOLATE": "\u2069",
    "SOFT HYPHEN": "\u00ad",
}
each = pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())


def normalized(raw: dict[str, Any]) -> Normalized:
    result = normalize_event(raw, NOW, DEFAULT_OPTIONS)
    assert isinstance(result, Normalized), result
    return result


def with_user_data(**values: Any) -> dict[str, Any]:
    user_data = empty_user_data()
    user_data.update(client_user_agent="Mozilla/5.0", client_ip_address="203.0.113.7")
    user_data.update(values)
    return raw_event(user_data=user_data)


def test_every_listed_character_is_a_format_character() -> None:
    """The table above holds only category Cf characters (the rule is the category, not a list)."""
    for name, char in INVISIBLE.items():
        assert unicodedata.category(char) == "Cf", name


@each
def test_drop_format_chars_removes_the_character_anywhere(char: str) -> None:
    """``Purchase\\u200b`` → ``Purchase``, wherever the character sits and however often."""
    assert drop_format_chars(f"Purchase{char}") == "Purchase"
    assert drop_format_chars(f"{char}Pur{char}{char}chase{char}") == "Purchase"


@each
def test_event_name_loses_the_character(char: str) -> None:
    """An event name with an invisible character is sent as the clean name."""
    assert normalized(raw_event(event_name=f"Purchase{char}")).event["event_name"] == "Purchase"


@each
def test_an_email_with_the_character_hashes_like_the_clean_one(char: str) -> None:
    """``john_smith@gm<char>ail.com`` hashes to docs/capi.md's vector for john_smith@gmail.com."""
    raw = with_user_data(em=[f" {char}John_Smith@Gm{char}ail.com{char} "])
    assert normalized(raw).event["user_data"]["em"] == [JOHN]


@each
def test_phone_and_name_with_the_character_hash_like_the_clean_ones(char: str) -> None:
    """The character goes before each key's own step: phone digits and names hash as clean."""
    raw = with_user_data(ph=[f"+1 (650) 555{char}-1212"], fn=[f"Ma{char}ry"])
    user_data = normalized(raw).event["user_data"]
    assert user_data["ph"] == [PHONE]
    assert user_data["fn"] == [MARY]


@each
def test_other_values_lose_the_character(char: str) -> None:
    """Every string is cleaned: custom_data, content ids, custom property keys and values."""
    raw = raw_event(
        event_source_url=f"https://shop.example.com/{char}thanks",
        custom_data=custom_data(
            currency=f"US{char}D",
            content_ids=[f"sku{char}-1"],
            custom_properties={f"color{char}": f"{char}red"},
        ),
    )
    event = normalized(raw).event
    assert event["event_source_url"] == "https://shop.example.com/thanks"
    assert event["custom_data"]["currency"] == "usd"
    assert event["custom_data"]["content_ids"] == ["sku-1"]
    assert event["custom_data"]["custom_properties"] == {"color": "red"}


def test_the_derived_event_id_ignores_invisible_characters() -> None:
    """The same event with and without invisible characters gets the same derived event_id."""
    clean = raw_event(event_id=None)
    dirty = raw_event(event_id=None, event_name="Pur\u200bchase\ufeff")
    dirty["user_data"] = dict(dirty["user_data"], em=["John_Smith@\u2060Gmail.com"])
    assert normalized(dirty).event_id == normalized(clean).event_id


def test_an_event_name_of_only_invisible_characters_is_missing() -> None:
    """``\\u200b\\ufeff`` is no event name at all: dead-lettered as missing_event_name."""
    result = normalize_event(raw_event(event_name="\u200b\ufeff"), NOW, DEFAULT_OPTIONS)
    assert isinstance(result, Rejected)
    assert result.reason == "missing_event_name"


def test_an_email_of_only_invisible_characters_is_dropped() -> None:
    """A value that is only invisible characters is blank, dropped like an empty one."""
    raw = with_user_data(em=["\u200b\u200c"], ph=["+1 (650) 555-1212"])
    assert normalized(raw).event["user_data"]["em"] == []


def test_visible_non_ascii_text_is_kept() -> None:
    """Letters of other scripts and accents are not format characters: vectors unchanged."""
    raw = with_user_data(fn=["Valéry"], ln=["\u200b정"], em=["test@example.com"])
    user_data = normalized(raw).event["user_data"]
    assert user_data["fn"] == [VALERY]
    assert user_data["ln"] == [KOREAN]


def test_an_ascii_event_is_returned_as_is() -> None:
    """Nearly every event is ASCII: the fast path hands back the same object, no copy."""
    raw = raw_event()
    assert without_format_chars(raw) is raw


def test_values_json_cannot_hold_are_walked_and_kept() -> None:
    """Bytes and non-string keys take the walk: strings cleaned, everything else unchanged."""
    raw = {"b": b"\xe2\x80\x8b", 7: ["x\u200by", ("\u00adz", 1.5)], "n": None}
    assert without_format_chars(raw) == {"b": b"\xe2\x80\x8b", 7: ["xy", ("z", 1.5)], "n": None}


@given(st.text())
def test_no_format_character_survives_and_nothing_else_changes(text: str) -> None:
    """For any text: no Cf character is left, every other character stays, in order."""
    out = drop_format_chars(text)
    assert all(unicodedata.category(c) != "Cf" for c in out)
    assert out == "".join(c for c in text if unicodedata.category(c) != "Cf")
    assert drop_format_chars(out) == out


#: Every format character of this Python's Unicode database.
FORMAT_CHARS = [
    chr(cp) for cp in range(0x80, sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"
]


def test_orjson_writes_every_format_character_as_its_utf8_bytes() -> None:
    """The fast path looks for format characters in the event's JSON bytes: orjson must never
    escape one (it escapes only quotes, backslashes and control characters)."""
    for char in FORMAT_CHARS:
        assert orjson.dumps(char) == b'"' + char.encode() + b'"', hex(ord(char))


def test_the_byte_finder_finds_each_format_character_and_nothing_next_to_it() -> None:
    """Each format character is found in UTF-8 bytes; its neighbours in the code space are not
    (unless they are format characters too), between ASCII and accented letters alike."""
    finder = _format_bytes()
    neighbours = {chr(ord(c) + step) for c in FORMAT_CHARS for step in (-1, 1)}
    for char in {*FORMAT_CHARS, *neighbours}:
        if 0xD800 <= ord(char) < 0xE000:  # surrogates: no UTF-8 form
            continue
        expected = unicodedata.category(char) == "Cf"
        for text in (f"a{char}b", f"é{char}", f"{char}Ольга"):
            assert finder.found_in(text.encode()) is expected, hex(ord(char))


@given(st.text())
def test_the_byte_finder_agrees_with_the_category(text: str) -> None:
    """For any text, a format character is found in its JSON exactly when it holds one."""
    expected = any(unicodedata.category(c) == "Cf" for c in text)
    assert _format_bytes().found_in(orjson.dumps(text)) is expected


def test_a_non_ascii_event_without_format_characters_is_returned_as_is() -> None:
    """Accented names and other scripts are not format characters: no copy, no walk; one
    format character among them is removed and nothing else changes."""
    raw = with_user_data(fn=["Zoë"], ln=["Ольга"], ct=["São Paulo"])
    raw["custom_data"] = custom_data(content_name="Crème brûlée", currency="EUR")
    assert without_format_chars(raw) is raw
    raw["user_data"]["ln"] = ["Оль\u200bга"]  # noqa: RUF001
    cleaned = without_format_chars(raw)
    assert cleaned["user_data"]["ln"] == ["Ольга"]
    assert cleaned["user_data"]["fn"] == ["Zoë"]
    assert cleaned["custom_data"] == raw["custom_data"]
