"""Match keys of wire events, their counts, and the local match-key score's formula."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.capi import HASHED_KEYS, PLAIN_KEYS
from stream.core.match_quality import (
    ADVISED_KEYS,
    CUSTOM,
    CUSTOMER_KEYS,
    IP_UA,
    MATCH_KEYS,
    STANDARD_EVENTS,
    WEIGHTS,
    Coverage,
    Fix,
    MatchKeyCounts,
    best_fix,
    event_label,
    keys_of,
    keys_of_json,
    local_score,
)

HASH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def wire(name: str = "Purchase", **user_data: object) -> dict[str, object]:
    """A wire event (the JSON object of a request's data array) with this user_data."""
    return {"event_name": name, "event_time": 1767225540, "user_data": user_data}


def test_customer_keys_are_the_25_documented_keys() -> None:
    """Meta's Customer Information Parameters page lists 25 keys; all are counted, once."""
    assert len(CUSTOMER_KEYS) == 25
    assert set(CUSTOMER_KEYS) == set(HASHED_KEYS) | set(PLAIN_KEYS)
    assert {"madid", "anon_id", "ctwa_clid", "ig_sid", "page_scoped_user_id"} <= set(CUSTOMER_KEYS)
    assert (*CUSTOMER_KEYS, IP_UA) == MATCH_KEYS


def test_every_key_has_a_weight() -> None:
    """No counted key is silently left out of the score."""
    assert set(WEIGHTS) == set(MATCH_KEYS)


def test_keys_of_counts_non_empty_values_only() -> None:
    """Empty lists, empty strings and nulls are not carried; hashed lists and plain strings are."""
    event = wire(em=[HASH], ph=[], fn=[""], ln=None, fbp="fb.1.1558571054389.1098115397", fbc="")
    assert keys_of(event) == {"em", "fbp"}


def test_ip_and_user_agent_together_make_ip_ua() -> None:
    """The pair counts as one more key; either alone does not."""
    both = wire(client_ip_address="203.0.113.7", client_user_agent="Mozilla/5.0")
    assert keys_of(both) == {"client_ip_address", "client_user_agent", IP_UA}
    assert IP_UA not in keys_of(wire(client_ip_address="203.0.113.7"))
    assert IP_UA not in keys_of(wire(client_user_agent="Mozilla/5.0"))


def test_keys_of_ignores_unknown_and_legacy_keys() -> None:
    """Keys that are not documented customer keys are not counted."""
    assert keys_of(wire(f5first=HASH, app_user_id="x", em=[HASH])) == {"em"}


def test_an_event_without_user_data_carries_nothing() -> None:
    """A missing or malformed user_data gives no keys rather than an error."""
    assert keys_of({"event_name": "Purchase"}) == frozenset()
    assert keys_of({"event_name": "Purchase", "user_data": ["em"]}) == frozenset()


def test_keys_of_json_reads_the_enriched_event_bytes() -> None:
    """The enriched record's event_json gives the same keys; bytes that are not an object none."""
    event = wire(em=[HASH], ph=[HASH], external_id=["u-1"])
    assert keys_of_json(orjson.dumps(event)) == keys_of(event) == {"em", "ph", "external_id"}
    assert keys_of_json(b"not json") == frozenset()
    assert keys_of_json(b"[1, 2]") == frozenset()


def test_event_label_bounds_names() -> None:
    """Standard names are kept exactly (case matters to Meta); anything else is custom."""
    assert event_label("Purchase") == "Purchase"
    assert event_label("PageView") == "PageView"
    assert event_label("purchase") == CUSTOM
    assert event_label("checkout_step_3") == CUSTOM
    assert len(STANDARD_EVENTS) == 19


def test_score_formula_pinned() -> None:
    """min(10, sum of weight x coverage), one decimal: the documented worked examples."""
    assert local_score({}) == 0.0
    assert local_score({"em": 1.0}) == 2.0
    assert local_score({"em": 1.0, "ph": 1.0, "external_id": 1.0}) == 4.5
    # 2.0 + 1.5 * 0.62 + 1.0 + 0.75 = 4.68
    assert local_score({"em": 1.0, "ph": 0.62, IP_UA: 1.0, "fbp": 1.0}) == 4.7
    # every advised web key at full coverage: 9.75, shown as 9.8
    assert local_score(dict.fromkeys(ADVISED_KEYS, 1.0)) == 9.8
    # everything: capped
    assert local_score(dict.fromkeys(MATCH_KEYS, 1.0)) == 10.0


def test_ip_and_user_agent_score_only_as_a_pair() -> None:
    """IP alone and user agent alone add nothing; the pair adds one point."""
    assert local_score({"client_ip_address": 1.0, "client_user_agent": 1.0}) == 0.0
    assert local_score({"client_ip_address": 1.0, "client_user_agent": 1.0, IP_UA: 1.0}) == 1.0


def test_score_clamps_ratios() -> None:
    """Ratios outside 0-1 (a caller's bug) cannot push the score outside 0-10."""
    assert local_score({"em": 5.0}) == 2.0
    assert local_score({"em": -1.0}) == 0.0


@given(st.dictionaries(st.sampled_from(MATCH_KEYS), st.floats(0.0, 1.0)))
def test_score_is_within_bounds_and_monotonic(coverage: dict[str, float]) -> None:
    """Any coverage scores 0-10, and adding coverage of a key never lowers the score."""
    score = local_score(coverage)
    assert 0.0 <= score <= 10.0
    for key in MATCH_KEYS:
        assert local_score({**coverage, key: 1.0}) >= score


def test_best_fix_names_the_costliest_missing_key() -> None:
    """The fix is the advised key with the largest weight x missing share."""
    fix = best_fix({"em": 1.0, "ph": 0.62, "external_id": 1.0, "fbc": 1.0, "fbp": 1.0, IP_UA: 1.0})
    # ph: 1.5 * 0.38 = 0.57 beats fn/ln: 0.5 * 1.0
    assert fix == Fix("ph", 0.38, 0.57)
    assert fix.advice("Purchase") == "add ph: 38 % of Purchase events carry no phone"


def test_best_fix_ties_go_to_the_more_important_key() -> None:
    """external_id and fbc weigh the same; external_id comes first in Meta's order."""
    fix = best_fix({"em": 1.0, "ph": 1.0})
    assert fix is not None
    assert fix.key == "external_id"


def test_best_fix_skips_platform_ids_unless_asked() -> None:
    """lead_id is only advised when the caller includes it in the candidates."""
    full_web = dict.fromkeys(ADVISED_KEYS, 1.0)
    assert best_fix(full_web) is None
    fix = best_fix(full_web, keys=("lead_id",))
    assert fix is not None
    assert fix.key == "lead_id"


def test_counts_per_pixel_and_label() -> None:
    """Events and per-key carriers are counted per pixel and bounded event label."""
    counts = MatchKeyCounts()
    for i in range(8):
        user_data: dict[str, object] = {"em": [HASH]}
        if i < 5:
            user_data["ph"] = [HASH]
        counts.add("111", wire("Purchase", **user_data))
    counts.add("111", wire("my_step", em=[HASH]))
    counts.add("111", wire("other_step"))
    counts.add("222", wire("Purchase", fbp="fb.1.1.1"))
    cov = counts.coverage()
    assert set(cov) == {("111", "Purchase"), ("111", CUSTOM), ("222", "Purchase")}
    purchase = cov[("111", "Purchase")]
    assert purchase.events == 8
    assert purchase.ratio("em") == 1.0
    assert purchase.ratio("ph") == pytest.approx(5 / 8)
    assert purchase.ratio("fbp") == 0.0
    assert cov[("111", CUSTOM)].events == 2
    assert cov[("111", CUSTOM)].ratio("em") == 0.5
    assert cov[("222", "Purchase")].ratios()["fbp"] == 1.0
    assert purchase.score() == local_score({"em": 1.0, "ph": 5 / 8}) == 2.9


def test_coverage_snapshot_does_not_move() -> None:
    """A snapshot keeps its numbers while the counts go on."""
    counts = MatchKeyCounts()
    counts.add("111", wire(em=[HASH]))
    before = counts.coverage()[("111", "Purchase")]
    counts.add("111", wire())
    assert before.events == 1
    assert before.ratio("em") == 1.0
    assert counts.coverage()[("111", "Purchase")].ratio("em") == 0.5


def test_add_keys_for_callers_that_have_the_keys() -> None:
    """The normalize stage can count keys it already knows without re-reading the event."""
    counts = MatchKeyCounts()
    counts.add_keys("111", "Lead", {"em", IP_UA})
    assert counts.coverage()[("111", "Lead")] == Coverage(1, {"em": 1, IP_UA: 1})


def test_an_empty_coverage_has_zero_ratios() -> None:
    """No events: every ratio is 0, not a division error."""
    assert Coverage(0, {}).ratio("em") == 0.0
    assert Coverage(0, {}).score() == 0.0


def test_numbers_count_and_odd_values_do_not() -> None:
    """An id sent as a number (fb_login_id: 42) is carried; true, objects and 0 are not."""
    event = wire(fb_login_id=42, lead_id=0, madid=True, anon_id={"x": 1}, em=["", HASH])
    assert keys_of(event) == {"fb_login_id", "em"}


def test_an_avro_shaped_user_data_counts_the_same() -> None:
    """Empty lists and None, as a decoded Avro record holds them, are not carried."""
    from tests.factories import empty_user_data

    user_data = empty_user_data()
    user_data.update(em=[HASH], fbp="fb.1.1.1")
    assert keys_of({"user_data": user_data}) == {"em", "fbp"}
