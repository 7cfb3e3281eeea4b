"""The enriched topic refuses a record mid-run: the normalize stage, real broker.

An operator lowers the enriched topic's ``max.message.bytes`` while the stage runs, below the
enriched record of an event already on its way. The stage read the topics' limits at start, so
it makes that record whole and the broker refuses it (MSG_SIZE_TOO_LARGE). The guarantee: the
stage commits nothing past the event while the record is refused, and gets past it in bounded
time, because a restart reads the lowered limit and dead-letters the event as
``record_too_large`` with its reason; no event is lost, none is written twice in exactly_once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.refusals import normalize_past_a_shrunk_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("processing", ["exactly_once", "at_least_once"])
def test_normalize_an_enriched_record_the_shrunk_topic_refuses_becomes_a_letter(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path, processing: str
) -> None:
    """The enriched topic's max.message.bytes goes down to 100,000 under a running normalizer
    (restarted by a supervisor when it exits); then a valid event with a 250 KB custom property
    arrives between valid ones. The stage does not commit past it while the broker refuses its
    enriched record, and within 40 s gets past it: the event is dead-lettered as
    record_too_large, every other event is enriched, each raw record has exactly one output in
    exactly_once (at most two in at_least_once: one repeat of the batch)."""
    past = normalize_past_a_shrunk_topic(
        kafka_bootstrap, unique, tmp_path / "normalizer.log", processing=processing,
        shrink="enriched",
    )  # fmt: skip
    assert set(past.per_source) == set(range(12))
    most = 1 if processing == "exactly_once" else 2
    assert max(past.per_source.values()) <= most, past.per_source
    assert {(letter["reason"], letter["source"]["offset"]) for _, letter in past.dead} == {
        ("record_too_large", 8)
    }
    assert past.exits, "it got past the record without the restart that reads the limit"
    # the dead-letter topic kept its own limit: the letter holds the whole raw event, to be
    # republished once the enriched topic takes it
    ((_, letter),) = past.dead
    assert letter["original_truncated"] is False
