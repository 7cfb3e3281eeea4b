"""One raw conversion event to a CAPI-ready event, or the reason it must be dead-lettered.

The steps, cheapest refusals first so a doomed event costs no hashing:

0. invisible format characters (Unicode Cf) removed from every string
   (:func:`.text.without_format_chars`);
1. pixel, event_name, event_time (milliseconds converted), action_source, time window;
2. ``user_data`` normalized and hashed (:mod:`.user_data`); ``custom_data`` and the other
   optional sections copied with their field checks (:mod:`.sections`);
3. data processing options, per-source required fields, matching baseline, Purchase rules;
4. event_id kept or derived (:mod:`stream.core.event_id`);
5. the event built: in the record's shape (:func:`normalize_event`, the library's answer) or
   directly as the request JSON object (:func:`normalize_wire`, what the stage sends).

A bad single field is dropped with a warning; only what Meta would refuse for the whole
request makes a :class:`Rejected` (docs/capi.md rules table, "bad single field").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

from stream.core.capi import ACTION_SOURCES, max_age_s
from stream.core.event_id import derive_event_id, given_event_id
from stream.core.normalize import sections
from stream.core.normalize.model import (
    DEFAULT_OPTIONS,
    Normalized,
    NormalizeOptions,
    Rejected,
    WireEvent,
)
from stream.core.normalize.text import without_format_chars
from stream.core.normalize.user_data import avro_user_data, normalize_user_data
from stream.core.validate import (
    MILLISECONDS_ABOVE,
    Problem,
    check_action_source,
    check_data_processing_options,
    check_event_time,
    check_match_keys,
    check_purchase,
    check_required_fields,
    event_time_seconds,
)
from stream.core.wire import prune


def _rejected(
    problem: Problem, event_id: str | None, event_name: str | None, pixel_id: str | None
) -> Rejected:
    return Rejected(problem.reason, problem.detail, event_id, event_name, pixel_id)


def _rejected_late(
    problem: Problem,
    *,
    given_id: str | None,
    pixel_id: str,
    event_name: str,
    producer_time: int,
    user_data: Mapping[str, Any],
    match_keys: list[str],
    raw_custom_data: object,
) -> Rejected:
    # The derived id lets the dead letter be matched with a later, corrected publish.
    event_id = given_id or _derive(
        pixel_id, event_name, producer_time, user_data, match_keys, raw_custom_data
    )
    return Rejected(problem.reason, problem.detail, event_id, event_name, pixel_id)


#: What the shared steps (:func:`_check`) leave for the two builders of the event, in this
#: order: the raw event's ``get``, pixel_id, event_name, event_time, action_source, event_id,
#: whether the id was derived, event_source_url, user_data, custom_data as it goes on the wire
#: (flat custom properties, None when empty), app_data, the data processing options
#: ``(options, country, state, geolocated)`` and the warnings so far. A plain tuple: it never
#: leaves this module, and a dataclass made and read per event cost ~1 µs more.
_Checked = tuple[
    Callable[[str], Any], str, str, int, str, str, bool, str | None, dict[str, Any],
    dict[str, Any] | None, dict[str, Any] | None,
    tuple[list[str] | None, int | None, int | None, bool], list[str],
]  # fmt: skip


def _derive(  # noqa: PLR0917 (a private step with the recipe's inputs in their order)
    pixel_id: str,
    event_name: str,
    producer_time: int,
    user_data: Mapping[str, Any],
    match_keys: list[str],
    raw_custom_data: object,
) -> str:
    # The recipe reads custom_data in the record's shape (custom properties nested), as it
    # always has: the wire form must not change a derived id, or a replay would get new ones.
    # Made again here (a fifth of events, in practice) with its warnings already recorded.
    custom_data = sections.custom_data(raw_custom_data, [])
    return derive_event_id(
        pixel_id, event_name, producer_time, user_data, custom_data, keys=match_keys
    )


#: Meta's age limit per action source (:func:`stream.core.capi.max_age_s`), looked up once
_OLDEST: Final = {source: max_age_s(source) for source in ACTION_SOURCES}
#: check_data_processing_options(None, None, None): most events name none of the three
_NO_DPO: Final = (None, None, None, False)


@lru_cache(maxsize=4)
def _year(now: float) -> int:
    # the stage passes one ``now`` per poll batch: gmtime once a batch, not once an event
    return time.gmtime(now).tm_year


def _check(raw: Mapping[str, Any], now: float, options: NormalizeOptions) -> _Checked | Rejected:
    """Steps 0 to 4 of the module docstring: every refusal, user_data, custom_data, event_id."""
    # the one place values enter: invisible format characters go before anything reads them
    get = without_format_chars(raw).get
    given_id = given_event_id(get("event_id"))
    event_name = sections.text(get("event_name"))
    pixel_id = sections.text(get("pixel_id")) or options.default_pixel_id
    if not pixel_id:
        return Rejected(
            "missing_pixel_id",
            "the event has no pixel_id and no default_pixel_id is configured",
            given_id,
            event_name,
        )
    if event_name is None:
        return Rejected("missing_event_name", "event_name is missing", given_id, None, pixel_id)

    raw_time = get("event_time")
    if type(raw_time) is int and raw_time <= MILLISECONDS_ABOVE:
        # seconds, as nearly every producer sends them: event_time_seconds's answer, directly
        producer_time, was_milliseconds = raw_time, False
    else:
        seconds = event_time_seconds(raw_time)
        if isinstance(seconds, Problem):
            return _rejected(seconds, given_id, event_name, pixel_id)
        producer_time, was_milliseconds = seconds
    action_source = get("action_source")
    if type(action_source) is not str or action_source not in ACTION_SOURCES:
        # not already one of the names as Meta spells them: trimmed, lowercased, checked
        action_source = check_action_source(action_source)
        if isinstance(action_source, Problem):
            return _rejected(action_source, given_id, event_name, pixel_id)
    age = now - producer_time
    if 0 <= age <= _OLDEST[action_source] - options.age_safety_margin_s:
        # inside the window, neither too old nor in the future: check_event_time keeps it
        event_time = producer_time
    else:
        checked_time = check_event_time(
            producer_time,
            action_source,
            now,
            max_future_skew_s=options.max_future_skew_s,
            age_safety_margin_s=options.age_safety_margin_s,
        )
        if isinstance(checked_time, Problem):
            return _rejected(checked_time, given_id, event_name, pixel_id)
        event_time = checked_time

    warnings: list[str] = []
    if was_milliseconds:
        warnings.append("event_time_milliseconds")
    if event_time != producer_time:
        warnings.append("event_time_clamped")
    user_data, match_keys = normalize_user_data(
        get("user_data"),
        current_year=_year(now),
        default_region=options.default_region,
        hash_external_id=options.hash_external_id,
        warnings=warnings,
    )
    custom_data = sections.wire_custom_data(get("custom_data"), warnings)
    app_data = sections.app_data(get("app_data"))
    event_source_url = sections.text(get("event_source_url"))

    options_raw = get("data_processing_options")
    country_raw = get("data_processing_options_country")
    state_raw = get("data_processing_options_state")
    if options_raw is None and country_raw is None and state_raw is None:
        processing: tuple[list[str] | None, int | None, int | None, bool] | Problem = _NO_DPO
    else:
        processing = check_data_processing_options(options_raw, country_raw, state_raw)
    if isinstance(processing, Problem):
        return _rejected_late(
            processing,
            given_id=given_id,
            pixel_id=pixel_id,
            event_name=event_name,
            producer_time=producer_time,
            user_data=user_data,
            match_keys=match_keys,
            raw_custom_data=get("custom_data"),
        )
    problem = (
        check_required_fields(action_source, event_source_url, user_data, app_data)
        or check_match_keys(match_keys)
        or check_purchase(event_name, custom_data)
    )
    if problem is not None:
        return _rejected_late(
            problem,
            given_id=given_id,
            pixel_id=pixel_id,
            event_name=event_name,
            producer_time=producer_time,
            user_data=user_data,
            match_keys=match_keys,
            raw_custom_data=get("custom_data"),
        )
    if processing[3]:
        warnings.append("data_processing_options_geolocated")

    event_id = given_id or _derive(
        pixel_id, event_name, producer_time, user_data, match_keys, get("custom_data")
    )
    return (
        get, pixel_id, event_name, event_time, action_source, event_id, given_id is None,
        event_source_url, user_data, custom_data, app_data, processing, warnings,
    )  # fmt: skip


def _warnings(warnings: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(warnings)) if warnings else ()


def normalize_event(
    raw: Mapping[str, Any], now: float, options: NormalizeOptions = DEFAULT_OPTIONS
) -> Normalized | Rejected:
    """Normalize, hash and check one raw ``ConversionEvent`` record at time ``now`` (Unix s).

    Never raises on any string content; returns :class:`Normalized` (sendable, with warnings,
    the event in the shape of ``capi_event.v1.avsc``'s record) or :class:`Rejected` (a stable
    reason code for the dead-letter topic). The normalize stage calls :func:`normalize_wire`,
    which makes the same event directly in its request JSON form.
    """
    checked = _check(raw, now, options)
    if isinstance(checked, Rejected):
        return checked
    (
        get, pixel_id, event_name, event_time, action_source, event_id, _,
        event_source_url, user_data, _, app_data, processing, warnings,
    ) = checked  # fmt: skip
    options_list, dpo_country, dpo_state, _ = processing
    event: dict[str, Any] = {
        "event_name": event_name,
        "event_time": event_time,
        "action_source": action_source,
        "event_id": event_id,
        "event_source_url": event_source_url,
        "opt_out": sections.flag(get("opt_out")),
        "referrer_url": sections.text(get("referrer_url")),
        "user_data": avro_user_data(user_data),
        "custom_data": sections.custom_data(get("custom_data"), []),
        "app_data": app_data,
        "original_event_data": sections.original_event_data(get("original_event_data")),
        "attribution_data": sections.attribution_data(get("attribution_data"), warnings),
        "data_processing_options": options_list,
        "data_processing_options_country": dpo_country,
        "data_processing_options_state": dpo_state,
        "customer_segmentation": sections.text(get("customer_segmentation")),
        "messaging_channel": sections.text(get("messaging_channel")),
        "advanced_measurement_table": sections.text(get("advanced_measurement_table")),
        "advertiser_tracking_enabled": sections.flag(get("advertiser_tracking_enabled")),
    }
    return Normalized(
        event=event,
        event_id=event_id,
        pixel_id=pixel_id,
        test_event_code=sections.text(get("test_event_code")),
        warnings=_warnings(warnings),
    )


# The optional text fields after the data processing options, in the record's order.
_TAIL_TEXT: Final = ("customer_segmentation", "messaging_channel", "advanced_measurement_table")


def normalize_wire(
    raw: Mapping[str, Any], now: float, options: NormalizeOptions = DEFAULT_OPTIONS
) -> WireEvent | Rejected:
    """:func:`normalize_event`, with the event made directly as its request JSON object.

    The object is ``to_wire(normalize_event(raw, now, options).event)`` (:mod:`stream.core.wire`;
    a test pins the two together), built without the intermediate record: absent fields are
    never written, so nothing is pruned after. Keys keep the record's order.
    """
    checked = _check(raw, now, options)
    if isinstance(checked, Rejected):
        return checked
    (
        get, pixel_id, event_name, event_time, action_source, event_id, derived,
        event_source_url, user_data, custom_data, app_data, processing, warnings,
    ) = checked  # fmt: skip
    wire: dict[str, Any] = {
        "event_name": event_name,
        "event_time": event_time,
        "action_source": action_source,
        "event_id": event_id,
    }
    if event_source_url is not None:
        wire["event_source_url"] = event_source_url
    opt_out = get("opt_out")
    if type(opt_out) is bool:
        wire["opt_out"] = opt_out
    referrer_url = sections.text(get("referrer_url"))
    if referrer_url is not None:
        wire["referrer_url"] = referrer_url
    if user_data:
        wire["user_data"] = user_data
    if custom_data is not None:
        wire["custom_data"] = custom_data
    if app_data is not None:
        _put(wire, "app_data", app_data)
    if get("original_event_data") is not None:
        _put(wire, "original_event_data", sections.original_event_data(get("original_event_data")))
    if get("attribution_data") is not None:
        _put(wire, "attribution_data", sections.attribution_data(get("attribution_data"), warnings))
    options_list, dpo_country, dpo_state, _ = processing
    if options_list:
        wire["data_processing_options"] = options_list
    if dpo_country is not None:
        wire["data_processing_options_country"] = dpo_country
    if dpo_state is not None:
        wire["data_processing_options_state"] = dpo_state
    for name in _TAIL_TEXT:
        value = get(name)
        if value is not None:
            text = sections.text(value)
            if text is not None:
                wire[name] = text
    tracking = get("advertiser_tracking_enabled")
    if type(tracking) is bool:
        wire["advertiser_tracking_enabled"] = tracking
    # positional: WireEvent is made once per event, and keywords cost a third more
    return WireEvent(
        wire, event_id, derived, pixel_id, event_name,
        event_time, action_source, sections.text(get("test_event_code")),
        _warnings(warnings),
    )  # fmt: skip


def _put(wire: dict[str, Any], name: str, section: dict[str, Any] | None) -> None:
    pruned = prune(section)
    if pruned is not None:
        wire[name] = pruned
