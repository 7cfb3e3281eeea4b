"""The memo's answers: a bare string for a value that records no warning, a pair otherwise."""

from __future__ import annotations

import gc

from stream.core.normalize.keys import hash_value, key_context, normalize_and_hash
from stream.core.normalize.text import sha256_hex

US = key_context(2026, "US", "us")


def test_a_plain_answer_is_a_string_the_collector_never_tracks() -> None:
    """A hashed value with no warning is memoized as its hex string alone (no pair to walk)."""
    normalize_and_hash.cache_clear()
    answer = normalize_and_hash("em", " John@Example.com ", US)
    assert answer == sha256_hex("john@example.com")
    assert not gc.is_tracked(answer)
    already = "A" * 64
    assert normalize_and_hash("em", already, US) == already.lower()


def test_the_answers_with_a_warning_still_record_it() -> None:
    """Refused, MD5-shaped and blank values give the same wire form and warning as before."""
    normalize_and_hash.cache_clear()
    md5 = "0123456789ABCDEF0123456789ABCDEF"
    for _ in range(2):  # the second time from the memo
        warnings: list[str] = []
        assert hash_value("em", md5, US, warnings) == md5.lower()
        assert hash_value("ge", "x", US, warnings) is None
        assert hash_value("em", "   ", US, warnings) is None
        assert warnings == ["em_md5_shape", "ge_invalid_dropped"]
    assert normalize_and_hash("ge", "x", US) == (None, "ge_invalid_dropped")
