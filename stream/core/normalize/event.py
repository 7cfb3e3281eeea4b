"""One raw conversion event to a CAPI-ready event, or the reason it must be dead-lettered.

The steps, cheapest refusals first so a doomed event costs no hashing:

0. invisible format characters (Unicode Cf) removed from every string
   (:func:`.text.without_format_chars`);
1. pixel, event_name, event_time (milliseconds converted), action_source, time window;
2. ``user_data`` normalized and hashed (:mod:`.user_data`); ``custom_data`` and the other
   optional sections copied with their field checks (:mod:`.sections`);
3. data processing options, per-source required fields, matching baseline, Purchase rules;
4. event_id kept or derived (:mod:`stream.core.event_id`).

A bad single field is dropped with a warning; only what Meta would refuse for the whole
request makes a :class:`Rejected` (CAPI.md rules table, "bad single field").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from stream.core.event_id import derive_event_id, given_event_id
from stream.core.normalize import sections
from stream.core.normalize.model import DEFAULT_OPTIONS, Normalized, NormalizeOptions, Rejected
from stream.core.normalize.text import without_format_chars
from stream.core.normalize.user_data import normalize_user_data
from stream.core.validate import (
    Problem,
    check_action_source,
    check_data_processing_options,
    check_event_time,
    check_match_keys,
    check_purchase,
    check_required_fields,
    event_time_seconds,
)


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
    custom_data: Mapping[str, Any] | None,
) -> Rejected:
    # The derived id lets the dead letter be matched with a later, corrected publish.
    event_id = given_id or derive_event_id(
        pixel_id, event_name, producer_time, user_data, custom_data, keys=match_keys
    )
    return Rejected(problem.reason, problem.detail, event_id, event_name, pixel_id)


def normalize_event(
    raw: Mapping[str, Any], now: float, options: NormalizeOptions = DEFAULT_OPTIONS
) -> Normalized | Rejected:
    """Normalize, hash and check one raw ``ConversionEvent`` record at time ``now`` (Unix s).

    Never raises on any string content; returns :class:`Normalized` (sendable, with warnings)
    or :class:`Rejected` (a stable reason code for the dead-letter topic).
    """
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

    seconds = event_time_seconds(get("event_time"))
    if isinstance(seconds, Problem):
        return _rejected(seconds, given_id, event_name, pixel_id)
    producer_time, was_milliseconds = seconds
    action_source = check_action_source(get("action_source"))
    if isinstance(action_source, Problem):
        return _rejected(action_source, given_id, event_name, pixel_id)
    event_time = check_event_time(
        producer_time,
        action_source,
        now,
        max_future_skew_s=options.max_future_skew_s,
        age_safety_margin_s=options.age_safety_margin_s,
    )
    if isinstance(event_time, Problem):
        return _rejected(event_time, given_id, event_name, pixel_id)

    warnings: list[str] = []
    if was_milliseconds:
        warnings.append("event_time_milliseconds")
    if event_time != producer_time:
        warnings.append("event_time_clamped")
    user_data, match_keys = normalize_user_data(
        get("user_data"),
        current_year=time.gmtime(now).tm_year,
        default_region=options.default_region,
        hash_external_id=options.hash_external_id,
        warnings=warnings,
    )
    custom_data = sections.custom_data(get("custom_data"), warnings)
    app_data = sections.app_data(get("app_data"))
    event_source_url = sections.text(get("event_source_url"))

    processing = check_data_processing_options(
        get("data_processing_options"),
        get("data_processing_options_country"),
        get("data_processing_options_state"),
    )
    if isinstance(processing, Problem):
        return _rejected_late(
            processing,
            given_id=given_id,
            pixel_id=pixel_id,
            event_name=event_name,
            producer_time=producer_time,
            user_data=user_data,
            match_keys=match_keys,
            custom_data=custom_data,
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
            custom_data=custom_data,
        )
    options_list, dpo_country, dpo_state, geolocated = processing
    if geolocated:
        warnings.append("data_processing_options_geolocated")

    event_id = given_id or derive_event_id(
        pixel_id, event_name, producer_time, user_data, custom_data, keys=match_keys
    )
    event: dict[str, Any] = {
        "event_name": event_name,
        "event_time": event_time,
        "action_source": action_source,
        "event_id": event_id,
        "event_source_url": event_source_url,
        "opt_out": sections.flag(get("opt_out")),
        "referrer_url": sections.text(get("referrer_url")),
        "user_data": user_data,
        "custom_data": custom_data,
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
        warnings=tuple(dict.fromkeys(warnings)) if warnings else (),
    )
