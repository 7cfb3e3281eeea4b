"""The enriched topic refuses a record mid-run: the normalize stage, real broker.

An operator lowers the enriched topic's ``max.message.bytes`` while the stage runs, below the
enriched record of an event already on its way. The stage read the topics' limits at start, so
it makes that record whole and the broker refuses it (MSG_SIZE_TOO_LARGE). The guarantee: the
stage commits nothing past the event while the record is refused, and gets past it in bounded
time, because a restart reads the lowered limit and dead-letters the event as
``record_too_large`` with its reason; no event is lost, none is written twice in exactly_once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from tests.factories import custom_data
from tests.integration.chaos import Supervised, wait_for
from tests.integration.helpers import produce, stage_names, stage_settings
from tests.integration.refusals import (
    SHRUNK_LIMIT,
    commits_watched,
    committed,
    create_topics,
    letters,
    outputs_per_source,
    padding,
    raw_items,
    set_record_limit,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("processing", ["exactly_once", "at_least_once"])
def test_normalize_an_enriched_record_the_shrunk_topic_refuses_becomes_a_letter(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path, processing: str
) -> None:
    """The enriched topic's max.message.bytes goes down to 100,000 under a running normalizer
    (restarted by a supervisor when it exits); then a valid event with a 250 KB custom property
    arrives between valid ones. The stage does not commit past it while the broker refuses its
    enriched record, and within 18 s gets past it: the event is dead-lettered as
    record_too_large, every other event is enriched, each raw record has exactly one output in
    exactly_once (at most two in at_least_once: one repeat of the batch)."""
    names = stage_names(unique)
    create_topics(kafka_bootstrap, names["raw"], names["enriched"], names["dlq"])
    settings = stage_settings(
        kafka_bootstrap, names,
        normalizer={"processing": processing, "poll_timeout_s": 0.2, "call_timeout_s": 6},
    )  # fmt: skip
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    group, raw = names["normalizer_group"], names["raw"]
    stage = Supervised(["normalize"], settings, tmp_path / "normalizer.log")
    stage.start()
    try:
        produce(kafka_bootstrap, raw, raw_items(codec, [f"a{i}" for i in range(5)], now))
        wait_for(lambda: committed(kafka_bootstrap, group, raw) == 5, 60, "the first batch",
                 tick=stage.ensure)  # fmt: skip
        set_record_limit(kafka_bootstrap, names["enriched"], SHRUNK_LIMIT)
        big = raw_items(codec, ["big"], now,
                        custom_data=custom_data(custom_properties={"pad": padding()}))  # fmt: skip
        items = [*raw_items(codec, ["b0", "b1", "b2"], now), *big,
                 *raw_items(codec, ["b3", "b4", "b5"], now)]  # fmt: skip
        with commits_watched(kafka_bootstrap, group, raw) as seen:
            produce(kafka_bootstrap, raw, items)  # offsets 5..11, the refused one at 8
            wait_for(lambda: any(o > 8 for o in seen) or bool(letters(settings)), 18,
                     "the stage to get past the refused record", tick=stage.ensure)  # fmt: skip
            assert not any(o > 8 for o in seen) or letters(settings), "committed past it"
        wait_for(lambda: committed(kafka_bootstrap, group, raw) == 12, 20, "a commit to the end",
                 tick=stage.ensure)  # fmt: skip
    finally:
        stage.stop()
    per_source, dead = outputs_per_source(settings)
    assert set(per_source) == set(range(12))
    most = 1 if processing == "exactly_once" else 2
    assert max(per_source.values()) <= most, per_source
    assert {(letter["reason"], letter["source"]["offset"]) for _, letter in dead} == {
        ("record_too_large", 8)
    }
    assert stage.exits, "the stage got past the record without the restart that reads the limit"
    # the dead-letter topic kept its own limit: the letter holds the whole raw event, to be
    # republished once the enriched topic takes it
    ((_, letter),) = dead
    assert letter["original_truncated"] is False
