"""Meta's Dataset Quality answer as typed data: fields, parsing, missing fields, failures."""

from __future__ import annotations

import orjson
import pytest

from stream.core.match_quality import CUSTOMER_KEYS, META_IDENTIFIERS
from stream.quality.client import agent_name
from stream.quality.model import (
    FIELDS,
    DatasetQuality,
    classify_failure,
    fields_param,
    key_of,
    nonexisting_field,
    parse,
    without,
)

#: The answer of Meta's documentation examples, merged into one row (plus one sparse row).
META_DOC = {
    "web": [
        {
            "event_name": "Purchase",
            "event_match_quality": {
                "composite_score": 7.2,
                "match_key_feedback": [
                    {"identifier": "email", "coverage": {"percentage": 100}},
                    {"identifier": "ip_address", "coverage": {"percentage": 99.9}},
                    {"identifier": "user_agent", "coverage": {"percentage": 100}},
                    {"identifier": "phone", "coverage": {"percentage": 62}},
                    {"identifier": "brand_new_key", "coverage": {"percentage": 5}},
                ],
                "diagnostics": [
                    {"name": "Server sending mismatched IP addresses", "percentage": 61.5}
                ],
            },
            "event_coverage": {"percentage": 34.1, "goal_percentage": 75},
            "acr": {"percentage": 37.9},
            "data_freshness": {"upload_frequency": "real_time"},
        },
        {"event_name": "Lead", "event_match_quality": {"match_key_feedback": []}},
    ]
}


def test_fields_param_is_the_documented_request() -> None:
    """The fields parameter asks for EMQ with key feedback and diagnostics, event coverage with
    its goal, ACR and freshness, in Graph's nested syntax."""
    assert fields_param() == (
        "web{event_name,event_match_quality{composite_score,match_key_feedback{identifier,"
        "coverage{percentage}},diagnostics{name,percentage}},event_coverage{percentage,"
        "goal_percentage},acr{percentage},data_freshness{upload_frequency}}"
    )


def test_without_drops_a_field_and_an_emptied_parent() -> None:
    """Removing acr's only child removes acr; removing a leaf keeps its siblings."""
    assert "acr" not in without(FIELDS, "percentage")
    assert without(FIELDS, "percentage")["event_coverage"] == {"goal_percentage": {}}
    assert "acr" not in fields_param(without(FIELDS, "acr"))


def test_nonexisting_field_is_read_from_graphs_error() -> None:
    """Code 100 naming a nonexisting field gives the field; other errors give None."""
    error = {"error": {"code": 100, "message": "(#100) Tried accessing nonexisting field (acr) "
                       "on node type (AdsPixelCAPIIntegrationQuality)"}}  # fmt: skip
    assert nonexisting_field(orjson.dumps(error)) == "acr"
    assert nonexisting_field(orjson.dumps({"error": {"code": 190, "message": "x"}})) is None
    assert nonexisting_field(b"<html>500</html>") is None


def test_parse_the_documented_answer() -> None:
    """Percentages become ratios, identifiers our keys, an unknown identifier is kept."""
    result = parse("111", META_DOC)
    purchase, lead = result.rows
    assert purchase.event_name == "Purchase"
    assert purchase.emq == 7.2
    assert purchase.key_coverage == pytest.approx({
        "em": 1.0, "client_ip_address": 0.999, "client_user_agent": 1.0, "ph": 0.62,
        "brand_new_key": 0.05,
    })  # fmt: skip
    assert purchase.event_coverage == pytest.approx(0.341)
    assert purchase.coverage_goal == 0.75
    assert purchase.acr == pytest.approx(0.379)
    assert purchase.freshness == "real_time"
    assert purchase.diagnostics == ("Server sending mismatched IP addresses",)
    assert purchase.missing == ()
    assert lead.emq is None
    assert set(lead.missing) == {"composite_score", "event_coverage", "acr", "data_freshness"}


def test_missing_and_odd_values_are_none_not_errors() -> None:
    """Strings, booleans and absent nodes never raise; an answer without web is reported."""
    odd = {"web": [{"event_name": "X", "event_match_quality": {"composite_score": "8.1"},
                    "event_coverage": {"percentage": True}, "acr": "n/a"}, "junk"]}  # fmt: skip
    (row,) = parse("111", odd).rows
    assert row.emq == 8.1
    assert row.event_coverage is None
    assert row.acr is None
    assert parse("111", {}) == DatasetQuality("111", (), ("web",))
    assert parse("111", {"web": []}).rows == ()


def test_retired_fields_are_not_reported_missing_per_row() -> None:
    """A field dropped from the request is named once, in unavailable, not in every row."""
    emq = {"composite_score": 9, "match_key_feedback": []}
    doc = {"web": [{"event_name": "Purchase", "event_match_quality": emq,
                    "event_coverage": {"percentage": 80, "goal_percentage": 75},
                    "data_freshness": {"upload_frequency": "hourly"}}]}  # fmt: skip
    result = parse("111", doc, ("acr",))
    assert result.unavailable == ("acr",)
    assert result.rows[0].missing == ()


def test_every_customer_key_has_a_meta_identifier_that_maps_back() -> None:
    """Our key -> Meta's name -> our key, for all 25 keys; other spellings map too."""
    assert set(META_IDENTIFIERS) == set(CUSTOMER_KEYS)
    for key, name in META_IDENTIFIERS.items():
        assert key_of(name) == key
        assert key_of(key) == key
    assert key_of("Email ") == "em"
    assert key_of("zip_code") == "zp"


def test_failures_are_classified_like_the_deliver_stage() -> None:
    """2xx JSON: none; throttle codes and 429: throttled with Retry-After; 5xx and code 2:
    transient; 190: setup; a 200 that is not JSON: malformed; no answer: transient."""

    def err(code: int) -> bytes:
        return orjson.dumps({"error": {"code": code, "message": f"code {code}"}})

    assert classify_failure("1", 200, orjson.dumps(META_DOC), {}, None) is None
    throttled = classify_failure("1", 400, err(17), {"retry-after": "120"}, None)
    assert throttled is not None
    assert (throttled.kind, throttled.code, throttled.retry_after_s) == ("throttled", 17, 120.0)
    for code in (4, 32, 613, 80004):
        failure = classify_failure("1", 400, err(code), {}, None)
        assert failure is not None
        assert failure.kind == "throttled"
    for status, body in ((500, b"<html>oops</html>"), (503, err(2))):
        failure = classify_failure("1", status, body, {}, None)
        assert failure is not None
        assert failure.kind == "transient"
    setup = classify_failure("1", 400, err(190), {}, None)
    assert setup is not None
    assert setup.kind == "setup"
    malformed = classify_failure("1", 200, b"<html>", {}, None)
    assert malformed is not None
    assert malformed.kind == "malformed"
    lost = classify_failure("1", None, None, {}, "timeout (ReadTimeout)")
    assert lost is not None
    assert lost.kind == "transient"


def test_agent_name_is_the_normalized_partner_agent() -> None:
    """Lowercase, up to the first underscore (Meta's documented normalization)."""
    assert agent_name("capi-stream") == "capi-stream"
    assert agent_name("Acme_3_1") == "acme"
    assert agent_name(" ") is None
    assert agent_name(None) is None
