"""The bounded memo of finished hashes: same answers as without it, per context, bounded."""

from __future__ import annotations

import pytest

from stream.core.normalize.keys import (
    HASH_CACHE_SIZE,
    NORMALIZERS,
    KeyContext,
    hash_value,
    key_context,
    normalize_and_hash,
)
from stream.core.normalize.text import sha256_hex

US = key_context(2026, "US", "us")
NONE = key_context(2026, "US", None)
FR = key_context(2026, "FR", "fr")

VALUES = {
    "em": [" John_Smith@Gmail.com ", "foo@bar", "a@b.co"],
    "ph": ["+1 (650) 555-1212", "0044 20 7946 0958", "06 12 34 56 78", "555-1212"],
    "fn": ["Mary-Jane", "Valéry", "!!"],
    "ln": ["O'Brien", "정"],
    "ct": ["Washington D.C.", "Saint-Étienne", "123"],
    "st": ["California", "N.Y.", "Bayern"],
    "zp": ["94035-1234", "940351234", "M1 1AE", "9403"],
    "country": ["United States", "FRA", "xx"],
    "db": ["2/16/1997", "03/04/1997", "1997-02-16", "2199-01-01"],
    "ge": ["Female", "Mr.", "x"],
    "external_id": [" User-123 "],
    "doby": ["2000", "1899"],
}


@pytest.mark.parametrize("ctx", [US, NONE, FR], ids=["us", "no-country", "fr"])
def test_memoized_hashes_equal_the_unmemoized_ones(ctx: KeyContext) -> None:
    """Each value, asked twice, hashes as the key's normalizer and SHA-256 do without a memo."""
    for key, values in VALUES.items():
        for value in values:
            trimmed = value.strip()
            normalized = NORMALIZERS[key](trimmed, ctx)
            expected = sha256_hex(normalized) if normalized else None
            for _ in range(2):  # a miss, then a hit
                warnings: list[str] = []
                assert hash_value(key, value, ctx, warnings) == expected, (key, value)
                # a refused value is reported every time, also when the memo answers
                assert warnings == ([] if expected else [f"{key}_invalid_dropped"])


def test_the_context_is_part_of_the_memo_key() -> None:
    """The same zip is cut to five digits for a US event only, memo or not."""
    assert hash_value("zp", "940351234", US, []) == sha256_hex("94035")
    assert hash_value("zp", "940351234", NONE, []) == sha256_hex("940351234")
    assert hash_value("zp", "940351234", US, []) == sha256_hex("94035")


def test_the_memo_is_bounded_and_keeps_the_recent_values() -> None:
    """Past HASH_CACHE_SIZE distinct values the least recently used go; the size stays put."""
    normalize_and_hash.cache_clear()
    for i in range(HASH_CACHE_SIZE + 500):
        hash_value("em", f"customer{i}@example.com", NONE, [])
    info = normalize_and_hash.cache_info()
    assert info.maxsize == HASH_CACHE_SIZE
    assert info.currsize == HASH_CACHE_SIZE
    hits = info.hits
    hash_value("em", f"customer{HASH_CACHE_SIZE + 499}@example.com", NONE, [])  # recent: kept
    assert normalize_and_hash.cache_info().hits == hits + 1
    hash_value("em", "customer0@example.com", NONE, [])  # the oldest: evicted
    assert normalize_and_hash.cache_info().hits == hits + 1
