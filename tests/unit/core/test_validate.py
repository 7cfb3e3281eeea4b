"""Event-level checks: each dead-letter reason, its boundaries, and the code tables."""

from __future__ import annotations

import re

import pytest

from stream.core.capi import HASHED_KEYS, LEGACY_HASHED_KEYS
from stream.core.validate import (
    REASONS,
    WARNINGS,
    Problem,
    check_action_source,
    check_data_processing_options,
    check_event_time,
    check_match_keys,
    check_purchase,
    check_required_fields,
    event_time_seconds,
)

NOW = 1_767_225_600.0
DAY = 86_400
EXTINFO = ["a2", *[""] * 15]


def window(seconds: int, source: str = "website", now: float = NOW) -> int | Problem:
    return check_event_time(seconds, source, now, max_future_skew_s=60, age_safety_margin_s=3600)


def reason(result: object) -> str | None:
    return result.reason if isinstance(result, Problem) else None


def test_reason_and_warning_codes_are_stable_snake_case_with_one_line_each() -> None:
    """Every code is snake_case and documented by exactly one line of text."""
    for table in (REASONS, WARNINGS):
        for code, line in table.items():
            assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", code)
            assert line
            assert "\n" not in line


def test_every_hashed_key_has_its_warning_codes() -> None:
    """WARNINGS lists <key>_invalid_dropped and <key>_md5_shape for every hashed key."""
    for key in (*HASHED_KEYS, *LEGACY_HASHED_KEYS):
        assert f"{key}_invalid_dropped" in WARNINGS
        assert f"{key}_md5_shape" in WARNINGS


def test_the_issue_reason_codes_are_all_present() -> None:
    """The reason codes the issue names exist in REASONS."""
    assert {
        "event_time_too_old",
        "event_time_in_future",
        "missing_event_name",
        "missing_action_source",
        "invalid_action_source",
        "missing_event_source_url",
        "missing_client_user_agent",
        "missing_app_data",
        "missing_advertiser_tracking_enabled",
        "missing_extinfo",
        "too_broad_match_keys",
        "no_match_keys",
        "purchase_without_currency",
        "purchase_without_value",
        "invalid_data_processing_options",
        "missing_pixel_id",
    } <= set(REASONS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1_767_225_600, (1_767_225_600, False)),
        (1_767_225_600_123, (1_767_225_600, True)),
        (1_767_225_600.9, (1_767_225_600, False)),
        (100_000_000_000, (100_000_000_000, False)),
    ],
)
def test_event_time_seconds(raw: float, expected: tuple[int, bool]) -> None:
    """Seconds pass; a value above 1e11 is milliseconds and converted; floats are floored."""
    assert event_time_seconds(raw) == expected


@pytest.mark.parametrize("raw", [None, "1767225600", True, float("nan"), float("inf")])
def test_event_time_that_is_no_number(raw: object) -> None:
    """A missing, textual, boolean or non-finite event_time is invalid_event_time."""
    assert reason(event_time_seconds(raw)) == "invalid_event_time"


def test_event_time_within_the_window_is_kept() -> None:
    """An event an hour old is sent with its own time."""
    assert window(int(NOW) - 3600) == int(NOW) - 3600


def test_event_time_too_old_respects_the_safety_margin() -> None:
    """7 days minus 1 h is the limit: one second past it is event_time_too_old."""
    limit = int(NOW) - (7 * DAY - 3600)
    assert window(limit) == limit
    assert reason(window(limit - 1)) == "event_time_too_old"


def test_physical_store_events_may_be_62_days_old() -> None:
    """physical_store gets 62 days (minus the margin) instead of 7."""
    assert window(int(NOW) - 30 * DAY, "physical_store") == int(NOW) - 30 * DAY
    assert reason(window(int(NOW) - 62 * DAY, "physical_store")) == "event_time_too_old"
    assert reason(window(int(NOW) - 30 * DAY, "website")) == "event_time_too_old"


def test_small_future_skew_is_clamped_to_now() -> None:
    """Up to max_future_skew_s ahead, event_time becomes now (floored to a second)."""
    assert window(int(NOW) + 60, now=NOW + 0.5) == int(NOW)
    assert window(int(NOW) + 30) == int(NOW)


def test_large_future_skew_is_rejected() -> None:
    """More than max_future_skew_s ahead is event_time_in_future."""
    result = window(int(NOW) + 61)
    assert reason(result) == "event_time_in_future"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("website", "website"),
        (" Website ", "website"),
        ("PHYSICAL_STORE", "physical_store"),
        (None, "missing_action_source"),
        ("  ", "missing_action_source"),
        ("web", "invalid_action_source"),
        ("offline", "invalid_action_source"),
    ],
)
def test_action_source(raw: object, expected: str) -> None:
    """action_source is trimmed and lowercased; blank is missing; unknown is invalid."""
    result = check_action_source(raw)
    assert (result if isinstance(result, str) else result.reason) == expected


def test_website_needs_url_and_user_agent() -> None:
    """website events need event_source_url, then user_data.client_user_agent."""
    with_agent = {"client_user_agent": "Mozilla/5.0"}
    assert check_required_fields("website", "https://x.example/", with_agent, None) is None
    assert reason(check_required_fields("website", None, with_agent, None)) == (
        "missing_event_source_url"
    )
    assert reason(check_required_fields("website", "https://x.example/", {}, None)) == (
        "missing_client_user_agent"
    )


@pytest.mark.parametrize(
    ("app_data", "expected"),
    [
        (None, "missing_app_data"),
        ({"extinfo": EXTINFO}, "missing_advertiser_tracking_enabled"),
        ({"advertiser_tracking_enabled": False, "extinfo": []}, "missing_extinfo"),
        ({"advertiser_tracking_enabled": False, "extinfo": ["a2"]}, "invalid_extinfo"),
        ({"advertiser_tracking_enabled": False, "extinfo": EXTINFO}, None),
    ],
)
def test_app_events_need_tracking_flag_and_extinfo(
    app_data: dict[str, object] | None, expected: str | None
) -> None:
    """app events need app_data with advertiser_tracking_enabled and 16 extinfo slots."""
    assert reason(check_required_fields("app", None, {}, app_data)) == expected


def test_other_sources_need_nothing_extra() -> None:
    """physical_store, email and the rest have no per-source required field."""
    for source in ("physical_store", "email", "phone_call", "chat", "other"):
        assert check_required_fields(source, None, {}, None) is None


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], "no_match_keys"),
        (["ge", "ct", "st", "country"], "too_broad_match_keys"),
        (["ct", "country", "st", "zp", "ge", "client_user_agent"], "too_broad_match_keys"),
        (["db", "client_user_agent"], "too_broad_match_keys"),
        (["client_user_agent"], "too_broad_match_keys"),
        (["fn", "ge"], "too_broad_match_keys"),
        (["ln", "ge"], "too_broad_match_keys"),
        (["fn", "ln"], None),
        (["em"], None),
        (["client_ip_address", "client_user_agent"], None),
        (["fbp", "client_user_agent"], None),
        (["ct", "country", "st", "zp", "ge", "client_user_agent", "db"], None),
    ],
)
def test_matching_baseline(keys: list[str], expected: str | None) -> None:
    """docs/capi.md §3.6: none left, or only a subset of a too-broad set, is dead-lettered."""
    assert reason(check_match_keys(keys)) == expected


def test_too_broad_detail_names_keys_not_values() -> None:
    """The detail lists key names, which is all it may say about customer data."""
    result = check_match_keys(["ge", "ct"])
    assert isinstance(result, Problem)
    assert "ct" in result.detail
    assert "ge" in result.detail


@pytest.mark.parametrize(
    ("name", "custom_data", "expected"),
    [
        ("Purchase", {"currency": "usd", "value": 0.0}, None),
        ("Purchase", {"currency": None, "value": 1.0}, "purchase_without_currency"),
        ("Purchase", None, "purchase_without_currency"),
        ("Purchase", {"currency": "usd", "value": None}, "purchase_without_value"),
        ("Lead", None, None),
        ("purchase", None, None),
    ],
)
def test_purchase_needs_currency_and_value(
    name: str, custom_data: dict[str, object] | None, expected: str | None
) -> None:
    """Only the standard 'Purchase' event requires currency, then value (zero is a value)."""
    assert reason(check_purchase(name, custom_data)) == expected


@pytest.mark.parametrize(
    ("options", "country", "state", "expected"),
    [
        (None, None, None, (None, None, None, False)),
        ([], None, None, ([], None, None, False)),
        (["LDU"], 1, 1000, (["LDU"], 1, 1000, False)),
        ([" ldu ", "LDU"], 0, 0, (["LDU"], 0, 0, False)),
        (["LDU"], None, None, (["LDU"], 0, 0, True)),
        (["LDU"], 1, None, (["LDU"], 1, 0, True)),
        (None, 1, 1000, (None, 1, 1000, False)),
    ],
)
def test_data_processing_options_pass_through_checked(
    options: list[str] | None,
    country: int | None,
    state: int | None,
    expected: tuple[object, ...],
) -> None:
    """Only LDU (any case) passes; zeros are kept; LDU without country/state geolocates (0)."""
    assert check_data_processing_options(options, country, state) == expected


@pytest.mark.parametrize(
    ("options", "country", "state"),
    [(["LDU", "GDPR"], None, None), (["ldu"], -1, 0), (["LDU"], 1, True), ("LDU", 1, 1000)],
)
def test_invalid_data_processing_options(options: object, country: object, state: object) -> None:
    """Any option but LDU, or a negative or boolean country/state, is invalid."""
    result = check_data_processing_options(options, country, state)
    assert reason(result) == "invalid_data_processing_options"
