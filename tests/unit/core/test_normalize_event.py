"""normalize_event end to end, and to_wire: a raw record in, a CAPI-ready event or a reason out."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from stream import schemas
from stream.core.errors import ConfigError
from stream.core.normalize import (
    DEFAULT_OPTIONS,
    Normalized,
    NormalizeOptions,
    Rejected,
    normalize_event,
)
from stream.core.normalize.text import sha256_hex
from stream.core.validate import REASONS, WARNINGS
from stream.core.wire import to_wire
from tests.factories import custom_data, empty_user_data, full_raw_event, raw_event

NOW = 1_767_225_600.0 + 60
EXTINFO = ["a2", "com.example", "1.0", "1.0.0", "14", *[""] * 11]
H = sha256_hex


def normalized(raw: dict[str, Any], options: NormalizeOptions = DEFAULT_OPTIONS) -> Normalized:
    result = normalize_event(raw, NOW, options)
    assert isinstance(result, Normalized), result
    return result


def rejected(raw: dict[str, Any], options: NormalizeOptions = DEFAULT_OPTIONS) -> Rejected:
    result = normalize_event(raw, NOW, options)
    assert isinstance(result, Rejected), result
    assert result.reason in REASONS
    return result


def with_user_data(**values: Any) -> dict[str, Any]:
    user_data = empty_user_data()
    user_data.update(values)
    return user_data


@pytest.fixture(scope="module")
def enriched_schema() -> Any:
    return fastavro.parse_schema(copy.deepcopy(schemas.load("capi_event.v1")))


def fits_enriched_schema(result: Normalized, schema: Any) -> bool:
    record = {
        "event": result.event,
        "event_id": result.event_id,
        "pixel_id": result.pixel_id,
        "test_event_code": result.test_event_code,
        "warnings": list(result.warnings),
        "source": {"topic": "capi.events.raw", "partition": 0, "offset": 1},
        "normalized_at": int(NOW * 1000),
    }
    return bool(validate(record, schema, raise_errors=True))


def test_a_website_purchase_is_normalized_and_hashed() -> None:
    """The factory's Purchase comes out hashed, with its id, pixel and no warnings."""
    result = normalized(raw_event())
    user = result.event["user_data"]
    assert user["em"] == ["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"]
    assert user["ph"] == ["e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"]
    assert user["client_ip_address"] == "203.0.113.7"
    assert result.event["custom_data"]["currency"] == "usd"
    assert result.event["event_time"] == 1_767_225_600
    assert result.event_id == result.event["event_id"] == "order-100045"
    assert result.pixel_id == "1234567890"
    assert result.warnings == ()


def test_the_event_has_exactly_the_fields_of_the_enriched_record(enriched_schema: Any) -> None:
    """Every field of capi_event.v1.avsc's event record (the documented shape) is there; it fits."""
    result = normalized(raw_event())
    event_fields = schemas.load("capi_event.v1")["fields"][0]["type"]["fields"]
    assert list(result.event) == [field["name"] for field in event_fields]
    user_fields = next(f for f in event_fields if f["name"] == "user_data")["type"]["fields"]
    assert list(result.event["user_data"]) == [field["name"] for field in user_fields]
    assert fits_enriched_schema(result, enriched_schema)


def test_every_field_of_a_full_event_is_normalized(enriched_schema: Any) -> None:
    """The factory's event with every field set normalizes per docs/capi.md §3.8 and validates."""
    result = normalized(full_raw_event())
    user = result.event["user_data"]
    assert user["em"] == [H("a@example.com"), H("b@example.com")]
    assert user["fn"] == [H("mary")]
    assert user["ln"] == [H("obrien")]
    assert user["db"] == [H("19970216")]
    assert user["ge"] == [H("f")]
    assert user["ct"] == [H("washingtondc")]
    assert user["st"] == [H("ca")]
    assert user["zp"] == [H("94035")]
    assert user["country"] == [H("us")]
    assert user["external_id"] == [H("user-123")]
    assert (user["f5first"], user["f5last"], user["fi"]) == (H("georg"), H("washi"), H("a"))
    assert (user["dobd"], user["dobm"], user["doby"]) == (H("01"), H("02"), H("2000"))
    assert user["fbc"] == "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQ"
    assert user["madid"] == "gaid"
    assert result.event["data_processing_options"] == ["LDU"]
    assert result.event["data_processing_options_country"] == 0
    assert result.event["data_processing_options_state"] == 0
    assert result.event["app_data"]["extinfo"][8] == ""
    assert result.test_event_code == "TEST123"
    assert result.warnings == ()
    assert fits_enriched_schema(result, enriched_schema)


def test_the_raw_record_is_not_modified() -> None:
    """normalize_event reads its input and never writes to it."""
    raw = full_raw_event()
    before = copy.deepcopy(raw)
    normalize_event(raw, NOW)
    assert raw == before


def test_repeated_values_are_sent_once() -> None:
    """Values that normalize alike are de-duplicated: ' A@x.com' and 'a@x.com' are one."""
    raw = raw_event(user_data=with_user_data(em=[" A@x.com", "a@x.com"], client_user_agent="ua"))
    assert normalized(raw).event["user_data"]["em"] == [H("a@x.com")]


def test_a_bad_field_is_dropped_with_a_warning_and_the_event_is_sent() -> None:
    """An invalid phone and an invalid email are dropped; the event goes out with warnings."""
    raw = raw_event()
    raw["user_data"].update(ph=["not a phone"], em=["nobody@nowhere", "ok@example.com"])
    result = normalized(raw)
    assert result.event["user_data"]["ph"] == []
    assert result.event["user_data"]["em"] == [H("ok@example.com")]
    assert result.warnings == ("em_invalid_dropped", "ph_invalid_dropped")


def test_md5_shaped_values_are_kept_and_counted() -> None:
    """A 32-hex email is sent as it is, with the em_md5_shape warning."""
    raw = raw_event()
    raw["user_data"]["em"] = ["0123456789abcdef0123456789abcdef"]
    result = normalized(raw)
    assert result.event["user_data"]["em"] == ["0123456789abcdef0123456789abcdef"]
    assert result.warnings == ("em_md5_shape",)


def test_milliseconds_are_converted_with_a_warning() -> None:
    """A millisecond event_time is sent in seconds, with event_time_milliseconds."""
    result = normalized(raw_event(event_time=1_767_225_600_123))
    assert result.event["event_time"] == 1_767_225_600
    assert result.warnings == ("event_time_milliseconds",)


def test_small_future_skew_is_clamped_with_a_warning() -> None:
    """An event 30 s ahead is sent at now, with event_time_clamped."""
    result = normalized(raw_event(event_time=int(NOW) + 30))
    assert result.event["event_time"] == int(NOW)
    assert result.warnings == ("event_time_clamped",)


def test_invalid_currency_outside_purchase_is_dropped_with_a_warning() -> None:
    """A Lead with currency 'dollars' is sent without currency, with currency_invalid_dropped."""
    result = normalized(raw_event(event_name="Lead", custom_data=custom_data(currency="dollars")))
    assert result.event["custom_data"]["currency"] is None
    assert result.warnings == ("currency_invalid_dropped",)


def test_non_finite_numbers_are_dropped_with_a_warning() -> None:
    """NaN and infinity cannot be JSON: dropped, with number_non_finite_dropped."""
    result = normalized(
        raw_event(event_name="Lead", custom_data=custom_data(net_revenue=math.inf, value=math.nan))
    )
    assert result.event["custom_data"]["value"] is None
    assert result.event["custom_data"]["net_revenue"] is None
    assert result.warnings == ("number_non_finite_dropped",)


def test_custom_properties_named_like_standard_fields_are_dropped() -> None:
    """A custom property 'currency' would clash on the wire: dropped with a warning."""
    properties = {"currency": "eur", "tier": "gold"}
    result = normalized(raw_event(custom_data=custom_data(custom_properties=properties)))
    assert result.event["custom_data"]["custom_properties"] == {"tier": "gold"}
    assert result.event["custom_data"]["currency"] == "usd"
    assert result.warnings == ("custom_property_collision_dropped",)


def test_ldu_without_country_and_state_geolocates() -> None:
    """LDU alone gets country 0 and state 0 (Meta geolocates) and a warning."""
    result = normalized(raw_event(data_processing_options=["ldu"]))
    event = result.event
    assert event["data_processing_options"] == ["LDU"]
    assert (event["data_processing_options_country"], event["data_processing_options_state"]) == (
        0,
        0,
    )
    assert result.warnings == ("data_processing_options_geolocated",)


def test_plain_keys_are_never_hashed_nor_case_changed() -> None:
    """fbc keeps its case and plain keys go out verbatim (trimmed)."""
    fbc = "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQ"
    raw = raw_event()
    raw["user_data"].update(fbc=f" {fbc} ", fbp="fb.1.1596403881668.1116446470", madid="ABC-def")
    user = normalized(raw).event["user_data"]
    assert (user["fbc"], user["madid"]) == (fbc, "ABC-def")


def test_external_id_can_be_sent_raw() -> None:
    """hash_external_id=False sends external_id trimmed, case kept, not hashed."""
    raw = raw_event()
    raw["user_data"]["external_id"] = [" User-123 ", "User-123"]
    options = NormalizeOptions(hash_external_id=False)
    assert normalized(raw, options).event["user_data"]["external_id"] == ["User-123"]
    assert normalized(raw).event["user_data"]["external_id"] == [H("user-123")]


def test_the_default_pixel_is_used_when_the_event_has_none() -> None:
    """An event without pixel_id goes to options.default_pixel_id."""
    result = normalized(raw_event(pixel_id=None), NormalizeOptions(default_pixel_id="555"))
    assert result.pixel_id == "555"


def test_a_missing_event_id_is_derived_from_content() -> None:
    """Without event_id the id is derived, and the same content always gets the same one."""
    first = normalized(raw_event(event_id=None))
    again = normalized(raw_event(event_id="   "))
    assert first.event_id == again.event_id == first.event["event_id"]
    assert len(first.event_id) == 32


def test_the_derived_id_ignores_clamping() -> None:
    """The id uses the producer's time, so a replay after the clock caught up keeps the id."""
    raw = raw_event(event_id=None, event_time=int(NOW) + 10)
    clamped = normalize_event(raw, NOW)
    later = normalize_event(raw, NOW + 20)
    assert isinstance(clamped, Normalized)
    assert isinstance(later, Normalized)
    assert clamped.event["event_time"] != later.event["event_time"]
    assert clamped.event_id == later.event_id


def test_event_name_is_trimmed_but_keeps_its_case() -> None:
    """' Purchase ' is 'Purchase'; 'purchase' stays a custom event name."""
    assert normalized(raw_event(event_name=" Purchase ")).event["event_name"] == "Purchase"
    custom = raw_event(event_name="purchase", custom_data=None)
    assert normalized(custom).event["event_name"] == "purchase"


def website_without(**changes: Any) -> dict[str, Any]:
    return raw_event(**changes)


def app_event(**app_data: Any) -> dict[str, Any]:
    record = {
        "advertiser_tracking_enabled": True,
        "application_tracking_enabled": True,
        "extinfo": EXTINFO,
        "campaign_ids": None,
        "install_referrer": None,
        "installer_package": None,
        "url_schemes": [],
        "vendor_id": None,
        "windows_attribution_id": None,
    }
    record.update(app_data)
    return raw_event(action_source="app", app_data=record)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (raw_event(pixel_id=None), "missing_pixel_id"),
        (raw_event(event_name="  "), "missing_event_name"),
        (raw_event(event_time=None), "invalid_event_time"),
        (raw_event(event_time=int(NOW) - 8 * 86_400), "event_time_too_old"),
        (raw_event(event_time=int(NOW) + 3600), "event_time_in_future"),
        (raw_event(action_source=None), "missing_action_source"),
        (raw_event(action_source="web"), "invalid_action_source"),
        (raw_event(event_source_url=" "), "missing_event_source_url"),
        (raw_event(user_data=with_user_data(em=["a@b.co"])), "missing_client_user_agent"),
        (raw_event(action_source="app"), "missing_app_data"),
        (app_event(advertiser_tracking_enabled=None), "missing_advertiser_tracking_enabled"),
        (app_event(extinfo=[]), "missing_extinfo"),
        (app_event(extinfo=["a2"]), "invalid_extinfo"),
        (raw_event(action_source="email", user_data=with_user_data()), "no_match_keys"),
        (
            raw_event(action_source="email", user_data=with_user_data(em=["not-an-email"])),
            "no_match_keys",
        ),
        (
            raw_event(user_data=with_user_data(ge=["f"], client_user_agent="ua", ct=["Paris"])),
            "too_broad_match_keys",
        ),
        (raw_event(custom_data=custom_data(currency="dollars")), "purchase_without_currency"),
        (raw_event(custom_data=None), "purchase_without_currency"),
        (raw_event(custom_data=custom_data(value=None)), "purchase_without_value"),
        (raw_event(custom_data=custom_data(value=math.nan)), "purchase_without_value"),
        (raw_event(data_processing_options=["GDPR"]), "invalid_data_processing_options"),
    ],
)
def test_each_reason_dead_letters_the_event(raw: dict[str, Any], reason: str) -> None:
    """What Meta would refuse for the whole request comes back as Rejected with its code."""
    result = rejected(raw)
    assert result.reason == reason
    assert result.detail


def test_an_app_event_with_tracking_and_extinfo_passes() -> None:
    """app_data with the tracking flag and 16 extinfo slots is enough for an app event."""
    assert normalized(app_event()).event["app_data"]["advertiser_tracking_enabled"] is True


def test_a_rejection_carries_what_is_known_of_the_event() -> None:
    """Rejected keeps event_name, pixel_id and the given (or derived) event_id."""
    given = rejected(raw_event(custom_data=None))
    assert (given.event_id, given.event_name, given.pixel_id) == (
        "order-100045",
        "Purchase",
        "1234567890",
    )
    derived = rejected(raw_event(custom_data=None, event_id=None))
    assert derived.event_id is not None
    assert len(derived.event_id) == 32
    early = rejected(raw_event(pixel_id=None, event_id=None))
    assert (early.event_id, early.event_name, early.pixel_id) == (None, "Purchase", None)


SECRETS = {
    "em": "secret.person@example.com",
    "ph": "+1 650 555 0199 secret",
    "fn": "Secretina",
    "ln": "Secretsson",
    "db": "secret-birthday",
    "ge": "secretgender",
    "ct": "Secretville",
    "st": "Secretshire",
    "zp": "SECRET-ZIP",
    "country": "Secretland",
    "external_id": "secret-id-42",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"custom_data": None},
        {"action_source": "secretsource"},
        {"event_source_url": None},
        {"event_time": int(NOW) - 30 * 86_400},
        {"data_processing_options": ["secret-option"]},
    ],
)
def test_no_customer_value_appears_in_reasons_or_warnings(changes: dict[str, Any]) -> None:
    """Rejected.detail and warnings name fields, never the values that were sent."""
    user_data = with_user_data(**{key: [value] for key, value in SECRETS.items()})
    user_data["client_user_agent"] = "ua"
    result = normalize_event(raw_event(user_data=user_data, **changes), NOW)
    texts = (
        [result.reason, result.detail]
        if isinstance(result, Rejected)
        else list(result.warnings) + [str(value) for value in result.event["user_data"].values()]
    )
    for text in texts:
        assert "secret" not in text.lower()
    if isinstance(result, Normalized):
        assert set(result.warnings) <= set(WARNINGS)


def test_options_are_checked() -> None:
    """An unknown region or a negative setting is a ConfigError, raised at construction."""
    with pytest.raises(ConfigError):
        NormalizeOptions(default_region="XX")
    with pytest.raises(ConfigError):
        NormalizeOptions(max_future_skew_s=-1)
    with pytest.raises(ConfigError):
        NormalizeOptions(age_safety_margin_s=7 * 86_400)


def test_results_are_frozen() -> None:
    """Normalized and Rejected are frozen: a stage cannot alter them in flight."""
    result = normalized(raw_event())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.event_id = "other"  # type: ignore[misc]


def test_to_wire_drops_absent_fields_and_flattens_custom_properties() -> None:
    """None and empty lists/maps go; custom properties sit flat in custom_data."""
    raw = full_raw_event()
    raw["user_data"]["ph"] = []
    wire = to_wire(normalized(raw).event)
    assert "ph" not in wire["user_data"]
    assert wire["opt_out"] is False
    assert wire["custom_data"]["coupon"] == "XMAS"
    assert wire["custom_data"]["first_order"] is True
    assert "none" not in wire["custom_data"]
    assert "custom_properties" not in wire["custom_data"]
    assert wire["app_data"]["extinfo"][8] == ""
    assert wire["data_processing_options_country"] == 0


def test_to_wire_of_a_minimal_event() -> None:
    """A minimal event keeps only what is set, as Meta's SDKs send it."""
    wire = to_wire(normalized(raw_event()).event)
    assert set(wire) == {
        "event_name",
        "event_time",
        "action_source",
        "event_id",
        "event_source_url",
        "user_data",
        "custom_data",
    }
    assert wire["custom_data"] == {"value": 123.45, "currency": "usd"}


def test_to_wire_prunes_recursively_and_keeps_falsy_values() -> None:
    """Nested None/empties go, empty maps left behind go too; False, 0 and '' stay."""
    event = {
        "a": {"b": None, "c": [], "d": {}},
        "e": [{"f": None}, {"g": 0}, None],
        "h": "",
        "i": False,
        "user_data": {"em": [], "fbc": None, "fbp": "x"},
    }
    assert to_wire(event) == {"e": [{"g": 0}], "h": "", "i": False, "user_data": {"fbp": "x"}}


def test_to_wire_lets_standard_fields_win() -> None:
    """A custom property never overwrites a standard custom_data field on the wire."""
    event = {"custom_data": {"currency": "usd", "custom_properties": {"currency": "eur", "x": 1}}}
    assert to_wire(event) == {"custom_data": {"currency": "usd", "x": 1}}
