"""The normalize stage on a mixed input: exact enriched and dead-letter counts, hashes only."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from stream import schemas
from stream.core.capi import HASHED_KEYS
from stream.core.codec import AvroCodec
from stream.normalizer import Normalizer
from tests.factories import custom_data, empty_user_data, raw_event
from tests.integration.helpers import produce, read_all, stage_names, stage_settings
from tests.shape import check_event_json

pytestmark = pytest.mark.integration

HEX64 = re.compile(r"^[0-9a-f]{64}$")
EMAIL = "John_Smith@Gmail.com"


def _only(**user_data: Any) -> dict[str, Any]:
    data = empty_user_data()
    data.update(user_data)
    return data


def _rejections(now: int) -> dict[str, dict[str, Any]]:
    """One raw event per rejection reason."""
    return {
        "event_time_too_old": raw_event(event_time=now - 8 * 86_400),
        "event_time_in_future": raw_event(event_time=now + 3_600),
        "missing_event_name": raw_event(event_name="", event_time=now),
        "missing_action_source": raw_event(action_source=None, event_time=now),
        "invalid_action_source": raw_event(action_source="billboard", event_time=now),
        "missing_event_source_url": raw_event(event_source_url=None, event_time=now),
        "missing_client_user_agent": raw_event(
            event_time=now, user_data=_only(em=[EMAIL], client_user_agent=None)
        ),
        "missing_app_data": raw_event(action_source="app", app_data=None, event_time=now),
        "too_broad_match_keys": raw_event(
            event_time=now,
            action_source="email",
            user_data=_only(ge=["f"], ct=["Paris"], country=["fr"]),
        ),
        "no_match_keys": raw_event(event_time=now, action_source="email", user_data=_only()),
        "purchase_without_currency": raw_event(
            event_time=now, custom_data=custom_data(currency="dollars")
        ),
        "purchase_without_value": raw_event(event_time=now, custom_data=custom_data(value=None)),
        "invalid_data_processing_options": raw_event(
            event_time=now, data_processing_options=["GDPR"]
        ),
    }


@pytest.mark.parametrize("processing", ["exactly_once", "at_least_once"])
def test_mixed_input_gives_exact_counts_and_only_hashes(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    processing: str,
) -> None:
    """Valid, pre-hashed, invalid and corrupt records each end where they belong, once."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=2)
    now = int(time.time())
    codec = AvroCodec(schemas.load("conversion_event"))
    prehashed = hashlib.sha256(b"john_smith@gmail.com").hexdigest().upper()
    valid = [raw_event(event_id=f"ok-{i}", event_time=now - i) for i in range(40)]
    valid += [
        raw_event(event_id=f"pre-{i}", event_time=now, user_data=_only(
            em=[prehashed], client_user_agent="UA", ph=[hashlib.sha256(b"16505551212").hexdigest()],
        ))
        for i in range(10)
    ]  # fmt: skip
    rejections = _rejections(now)
    items: list[tuple[bytes | None, bytes]] = [(None, codec.encode(e)) for e in valid]
    items += [(reason.encode(), codec.encode(e)) for reason, e in rejections.items()]
    items += [(b"corrupt-1", b"\x00\x01\x02"), (b"corrupt-2", b"\xff" * 40)]
    produce(kafka_bootstrap, names["raw"], items)

    settings = stage_settings(kafka_bootstrap, names, normalizer={"processing": processing})
    stats = Normalizer(settings).run(max_idle_s=4)

    enriched = read_all(kafka_bootstrap, names["enriched"], expected=len(valid))
    dead = read_all(kafka_bootstrap, names["dlq"], expected=len(rejections) + 2)
    assert stats.consumed == len(items)
    assert len(enriched) == len(valid)
    assert len(dead) == len(rejections) + 2

    dlq_codec = AvroCodec(schemas.load("dead_letter"))
    reasons = Counter()
    for rec in dead:
        letter = dlq_codec.decode(rec.value or b"")
        reasons[letter["reason"]] += 1
        if rec.key and not rec.key.startswith(b"corrupt"):
            assert letter["reason"] == rec.key.decode()  # each event for its own reason
        assert letter["original_value"] is not None  # the original bytes, for a replay
        assert EMAIL.lower() not in letter["message"].lower()
    assert reasons["decode_corrupt"] + reasons["decode_truncated"] == 2
    assert {r for r in reasons if not r.startswith("decode_")} == set(rejections)

    enriched_codec = AvroCodec(schemas.load("capi_event"))
    for rec in enriched:
        record = enriched_codec.decode(rec.value or b"")
        # version 2: the event as its request JSON, of the documented shape (tests/shape.py)
        event = check_event_json(record["event_json"])
        assert (record["event_id"], record["event_name"]) == (
            event["event_id"],
            event["event_name"],
        )
        user_data = {key: [] for key in HASHED_KEYS} | event["user_data"]
        for key in HASHED_KEYS:
            assert all(HEX64.match(v) for v in user_data[key]), key
        assert EMAIL.lower().encode() not in (rec.value or b"").lower()
        if record["event_id"].startswith("pre-"):
            assert user_data["em"] == [prehashed.lower()]  # kept, lowercased, not re-hashed
