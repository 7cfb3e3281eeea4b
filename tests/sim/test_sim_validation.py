"""Meta's validation as the simulator applies it over real HTTP (docs/capi.md §1.5, §2, §3)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from stream.core.capi import (
    ACTION_SOURCES,
    MAX_AGE_PHYSICAL_STORE_SECONDS,
    MAX_AGE_SECONDS,
    UNHASHED_PII_SUBCODE,
)
from stream.sim import Simulator
from tests.sim.conftest import StartSim, default_config
from tests.sim.events import (
    COUNTRY,
    CT,
    DB,
    EM,
    EVENTS_PATH,
    EXTINFO,
    FI,
    FN,
    GE,
    PH,
    PIXEL,
    ST,
    UA,
    ZP,
    error_of,
    event,
    post,
)

SUBCODE_TOO_OLD = 2804003
SUBCODE_IN_FUTURE = 2804004
SUBCODE_INVALID = 2804019
SUBCODE_BASELINE = 2804050


def assert_rejected(response: httpx.Response, subcode: int | None, index: int = 0) -> None:
    """The request was refused as Meta refuses an invalid event, naming ``index``."""
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == 100
    assert error.get("error_subcode") == subcode
    assert error["is_transient"] is False
    if subcode is not None:
        assert error["error_user_msg"].startswith(f"Event {index}: ")
        assert error["error_data"] == {"event_index": index}


def assert_accepted(response: httpx.Response, count: int = 1) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["events_received"] == count


def test_valid_request_answers_graph_success(client: httpx.Client) -> None:
    """A valid request answers 200 with events_received, messages and an fbtrace_id."""
    response = post(client, [event(0), event(1)])
    assert response.status_code == 200
    answer = response.json()
    assert answer["events_received"] == 2
    assert answer["messages"] == []
    assert isinstance(answer["fbtrace_id"], str)
    assert answer["fbtrace_id"]


def test_error_envelope_has_every_graph_field(client: httpx.Client) -> None:
    """An invalid event is answered with Graph's full error envelope."""
    response = post(client, [event(user_data={"em": ["john_smith@gmail.com"]})])
    error = error_of(response)
    expected = {"message", "type", "code", "error_subcode", "is_transient", "error_user_title"}
    assert expected | {"error_user_msg", "fbtrace_id"} <= error.keys()
    assert error["type"] == "OAuthException"
    assert response.headers["x-fb-trace-id"] == error["fbtrace_id"]


def test_thousand_events_are_accepted(client: httpx.Client) -> None:
    """1,000 events, the documented maximum, are accepted in one request."""
    assert_accepted(post(client, [event(i) for i in range(1000)]), 1000)


def test_more_than_thousand_events_are_refused(client: httpx.Client) -> None:
    """1,001 events reject the request with code 100."""
    response = post(client, [event(i) for i in range(1001)])
    assert response.status_code == 400
    assert error_of(response)["code"] == 100


@pytest.mark.parametrize("data", [[], None, {"event_name": "Purchase"}, "not json"])
def test_data_must_be_a_non_empty_array(client: httpx.Client, data: Any) -> None:
    """A missing, empty or non-array data rejects the request with code 100."""
    response = client.post(EVENTS_PATH, json={"data": data, "access_token": "sim-test-token"})
    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_data_items_may_be_json_strings(client: httpx.Client) -> None:
    """Items of data may be JSON strings of one event each (the Python SDK's form shape)."""
    assert_accepted(post(client, [orjson.dumps(event(0)).decode()]))


def test_one_invalid_event_rejects_the_whole_request(client: httpx.Client, sim: Simulator) -> None:
    """All or nothing: one bad event in three rejects all three and records none."""
    bad = event(1, event_name="")
    assert_rejected(post(client, [event(0), bad, event(2)]), SUBCODE_INVALID, index=1)
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.rejected) == (0, 3)
    assert not stats.received


@pytest.mark.parametrize("field", ["event_name", "event_time", "action_source", "user_data"])
def test_required_fields(client: httpx.Client, field: str) -> None:
    """Each required top-level field, when missing, rejects the event."""
    incomplete = event(0)
    del incomplete[field]
    assert_rejected(post(client, [incomplete]), SUBCODE_INVALID)


def test_event_time_as_digit_string_is_accepted(client: httpx.Client) -> None:
    """An event_time string of digits is coerced as Graph does."""
    assert_accepted(post(client, [event(0, event_time=str(int(time.time()) - 60))]))


@pytest.mark.parametrize("value", [time.time() - 60, "2026-01-01T00:00:00Z", True])
def test_event_time_must_be_integer_seconds(client: httpx.Client, value: object) -> None:
    """A float, an ISO date or a boolean event_time rejects the event."""
    assert_rejected(post(client, [event(0, event_time=value)]), SUBCODE_INVALID)


def test_event_time_within_seven_days_is_accepted(client: httpx.Client) -> None:
    """An event just under 7 days old is accepted."""
    stamp = int(time.time()) - MAX_AGE_SECONDS + 120
    assert_accepted(post(client, [event(0, event_time=stamp)]))


def test_event_time_older_than_seven_days_is_refused(client: httpx.Client) -> None:
    """An event over 7 days old rejects the request with subcode 2804003."""
    stamp = int(time.time()) - MAX_AGE_SECONDS - 120
    response = post(client, [event(0), event(1, event_time=stamp)])
    assert_rejected(response, SUBCODE_TOO_OLD, index=1)
    assert error_of(response)["error_user_title"] == "Event Timestamp Too Old"


def test_physical_store_events_may_be_sixty_two_days_old(client: httpx.Client) -> None:
    """physical_store events are accepted up to 62 days old and refused past that."""
    fresh = int(time.time()) - 30 * 86_400
    stale = int(time.time()) - MAX_AGE_PHYSICAL_STORE_SECONDS - 120
    store = {"action_source": "physical_store", "event_source_url": None}
    assert_accepted(post(client, [event(0, event_time=fresh, **store)]))
    assert_rejected(post(client, [event(1, event_time=stale, **store)]), SUBCODE_TOO_OLD)


def test_event_time_in_the_future_is_refused(client: httpx.Client) -> None:
    """An event_time an hour ahead of the server's clock rejects the event."""
    stamp = int(time.time()) + 3600
    assert_rejected(post(client, [event(0, event_time=stamp)]), SUBCODE_IN_FUTURE)


def test_small_clock_skew_is_tolerated(client: httpx.Client) -> None:
    """An event_time a minute ahead of the server's clock is accepted."""
    assert_accepted(post(client, [event(0, event_time=int(time.time()) + 60)]))


def test_event_time_is_checked_against_the_server_clock(start_sim: StartSim) -> None:
    """The age check uses the simulator's clock, so a moved clock ages a fresh event."""
    sim = start_sim(clock=lambda: time.time() + MAX_AGE_SECONDS + 3600)
    with httpx.Client(base_url=sim.url) as http:
        assert_rejected(post(http, [event(0)]), SUBCODE_TOO_OLD)


@pytest.mark.parametrize("source", sorted(ACTION_SOURCES))
def test_every_documented_action_source_is_accepted(client: httpx.Client, source: str) -> None:
    """Each documented action_source is accepted (with app_data for app)."""
    extra: dict[str, Any] = {"action_source": source}
    if source == "app":
        extra["app_data"] = {"advertiser_tracking_enabled": 1, "extinfo": EXTINFO}
    assert_accepted(post(client, [event(0, **extra)]))


@pytest.mark.parametrize("source", ["web", "WEBSITE", "offline", ""])
def test_unknown_action_source_is_refused(client: httpx.Client, source: str) -> None:
    """An action_source outside the documented values rejects the event."""
    assert_rejected(post(client, [event(0, action_source=source)]), SUBCODE_INVALID)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("em", ["john_smith@gmail.com"]),
        ("em", "John_Smith@Gmail.com"),
        ("ph", ["16505551212"]),
        ("fn", ["mary"]),
        ("country", ["us"]),
        ("fi", "a"),
        ("em", [EM, "john_smith@gmail.com"]),
    ],
)
def test_clear_text_pii_is_refused(client: httpx.Client, key: str, value: object) -> None:
    """Any clear-text value of a hashed key answers code 100, subcode 2804016."""
    user_data = {"client_ip_address": "203.0.113.7", "client_user_agent": UA, key: value}
    response = post(client, [event(0, user_data=user_data)])
    assert_rejected(response, UNHASHED_PII_SUBCODE)
    assert "john_smith" not in response.text  # the error never echoes customer data


@pytest.mark.parametrize(
    "value",
    [
        [EM],
        EM,
        [EM.upper()],
        [f"{EM}.AQQCAQIB"],
        ["0123456789abcdef0123456789abcdef"],
    ],
    ids=["list", "single", "uppercase", "appendix", "md5-shape"],
)
def test_hashed_shapes_are_accepted(client: httpx.Client, value: object) -> None:
    """64 hex in either case, the parameter-builder appendix form and 32-hex MD5 pass."""
    assert_accepted(post(client, [event(0, user_data={"em": value, "client_user_agent": UA})]))


def test_legacy_hashed_keys_are_checked(client: httpx.Client) -> None:
    """Legacy offline keys (fi) pass hashed."""
    user_data = {"fi": FI, "em": [EM], "client_user_agent": UA}
    assert_accepted(post(client, [event(0, user_data=user_data)]))


def test_plain_keys_are_never_checked_for_hashing(client: httpx.Client) -> None:
    """Plain keys (fbc, fbp, IP, madid) are accepted in clear text."""
    user_data = {
        "client_ip_address": "203.0.113.7",
        "client_user_agent": UA,
        "fbc": "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQ",
        "fbp": "fb.1.1596403881668.1116446470",
        "madid": "38400000-8cf0-11bd-b23e-10b96e40000d",
    }
    assert_accepted(post(client, [event(0, user_data=user_data)]))


def test_raw_external_id_is_accepted(client: httpx.Client) -> None:
    """external_id may be sent raw: Meta only recommends hashing it (docs/capi.md §3.2)."""
    user_data = {"external_id": ["user-123"], "client_user_agent": UA}
    assert_accepted(post(client, [event(0, user_data=user_data)]))


def test_hashed_key_of_wrong_type_is_refused(client: httpx.Client) -> None:
    """A number where a hashed string belongs rejects the event."""
    user_data = {"zp": [94035], "em": [EM], "client_user_agent": UA}
    assert_rejected(post(client, [event(0, user_data=user_data)]), SUBCODE_INVALID)


@pytest.mark.parametrize(
    "user_data",
    [
        {"ge": [GE], "ct": [CT], "st": [ST], "country": [COUNTRY]},
        {"ct": [CT], "country": [COUNTRY], "st": [ST], "zp": [ZP], "ge": [GE]},
        {"db": [DB], "client_user_agent": UA},
        {"fn": [FN], "ge": [GE]},
        {"client_user_agent": UA},
        {},
        {"em": [], "ph": "", "client_ip_address": None},
        {"email": "not-a-meta-key"},
    ],
    ids=["geo", "geo-zip", "db-ua", "fn-ge", "ua-only", "empty", "empty-values", "unknown"],
)
def test_too_broad_customer_information_is_refused(
    client: httpx.Client, user_data: dict[str, Any]
) -> None:
    """Keys only within a too-broad set (or none) answer subcode 2804050 (docs/capi.md §3.6)."""
    response = post(client, [event(0, action_source="email", user_data=user_data)])
    assert_rejected(response, SUBCODE_BASELINE)


@pytest.mark.parametrize(
    "user_data",
    [
        {"em": [EM]},
        {"ph": [PH]},
        {"client_ip_address": "203.0.113.7"},
        {"fn": [FN], "ge": [GE], "zp": [ZP]},
        {"ct": [CT], "country": [COUNTRY], "st": [ST], "zp": [ZP], "ge": [GE], "fn": [FN]},
    ],
    ids=["em", "ph", "ip", "fn-ge-zp", "geo-fn"],
)
def test_enough_customer_information_is_accepted(
    client: httpx.Client, user_data: dict[str, Any]
) -> None:
    """A key outside every too-broad set makes the event matchable."""
    assert_accepted(post(client, [event(0, action_source="email", user_data=user_data)]))


def test_website_event_needs_event_source_url(client: httpx.Client) -> None:
    """A website event without event_source_url is refused."""
    incomplete = event(0)
    del incomplete["event_source_url"]
    response = post(client, [incomplete])
    assert_rejected(response, SUBCODE_INVALID)
    assert "event_source_url" in error_of(response)["error_user_msg"]


def test_website_event_needs_client_user_agent(client: httpx.Client) -> None:
    """A website event without user_data.client_user_agent is refused."""
    response = post(client, [event(0, user_data={"em": [EM]})])
    assert_rejected(response, SUBCODE_INVALID)
    assert "client_user_agent" in error_of(response)["error_user_msg"]


@pytest.mark.parametrize(
    "app_data",
    [
        None,
        {"extinfo": EXTINFO},
        {"advertiser_tracking_enabled": 1},
        {"advertiser_tracking_enabled": 1, "extinfo": EXTINFO[:5]},
        {"advertiser_tracking_enabled": "yes", "extinfo": EXTINFO},
    ],
    ids=["none", "no-ate", "no-extinfo", "short-extinfo", "bad-ate"],
)
def test_app_event_needs_app_data(client: httpx.Client, app_data: object) -> None:
    """An app event without advertiser_tracking_enabled and a 16-slot extinfo is refused."""
    response = post(client, [event(0, action_source="app", app_data=app_data)])
    assert_rejected(response, SUBCODE_INVALID)


def test_app_event_with_app_data_is_accepted(client: httpx.Client) -> None:
    """An app event with advertiser_tracking_enabled and extinfo is accepted."""
    app_data = {"advertiser_tracking_enabled": False, "extinfo": EXTINFO}
    user_data = {"madid": "38400000-8cf0-11bd-b23e-10b96e40000d", "client_ip_address": "::1"}
    response = post(client, [event(0, action_source="app", app_data=app_data, user_data=user_data)])
    assert_accepted(response)


@pytest.mark.parametrize(
    "custom_data",
    [None, {"value": 10.0}, {"currency": "usd"}, {"currency": "dollars", "value": 1}],
    ids=["none", "no-currency", "no-value", "bad-currency"],
)
def test_purchase_needs_currency_and_value(client: httpx.Client, custom_data: object) -> None:
    """A Purchase without a valid currency and a value is refused."""
    assert_rejected(post(client, [event(0, custom_data=custom_data)]), SUBCODE_INVALID)


def test_other_events_need_no_custom_data(client: httpx.Client) -> None:
    """A Lead without custom_data is accepted."""
    assert_accepted(post(client, [event(0, event_name="Lead", custom_data=None)]))


def test_purchase_value_may_be_a_numeric_string(client: httpx.Client) -> None:
    """A Purchase value sent as "142.52" (as in Meta's docs) is accepted."""
    custom = {"currency": "USD", "value": "142.52"}
    assert_accepted(post(client, [event(0, custom_data=custom)]))


def test_event_index_can_be_left_out(start_sim: StartSim) -> None:
    """With report_event_index off, errors do not name the offending event."""
    sim = start_sim(default_config(report_event_index=False))
    with httpx.Client(base_url=sim.url) as http:
        response = post(http, [event(0), event(1, event_name="")])
    error = error_of(response)
    assert error["code"] == 100
    assert "error_data" not in error
    assert "1" not in error["error_user_msg"]
