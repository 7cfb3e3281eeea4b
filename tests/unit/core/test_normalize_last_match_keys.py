"""The matching baseline answers the same for the normalizer's list as for any other iterable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.core.validate import MATCH_KEYS, check_match_keys


@given(st.lists(st.sampled_from(sorted(MATCH_KEYS)), unique=True))
def test_a_list_gets_the_answer_of_the_whole_set(keys: list[str]) -> None:
    """A list (first key looked at alone when it is in no too-broad set) answers as the set."""
    assert check_match_keys(keys) == check_match_keys(iter(keys))


def test_too_broad_lists_are_still_refused_whatever_their_order() -> None:
    """A broad key first still leads to the full subset check, a specific key first to none."""
    broad = check_match_keys(["ge", "ct", "st", "country"])
    assert broad is not None
    assert broad.reason == "too_broad_match_keys"
    assert check_match_keys(["ct", "ge", "em"]) is None
    assert check_match_keys(["em", "ct"]) is None
    empty = check_match_keys([])
    assert empty is not None
    assert empty.reason == "no_match_keys"
