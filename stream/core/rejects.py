"""What ``publish`` tells about each row it did not (or, in a dry run, would not) get through.

A row is refused by the mapper (:class:`~stream.core.csv_map.RowError`, one problem per
field), would be dead-lettered by the normalize stage (a code of
:data:`stream.core.validate.REASONS`), or was not delivered. Each becomes :class:`Reject` rows
of a reject file: the line, the field and a stable reason code, never the value (it is
customer data). A normalize code names no field; :func:`field_of` gives the one it is about,
so a person knows which column to fix. Pure: the caller writes the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from stream.core.row_errors import RowError

HEADER: Final = ("line", "field", "reason")

#: Normalize codes (reasons and warnings) and the field each is about.
_FIELDS: Final = MappingProxyType({
    "missing_pixel_id": "pixel_id",
    "missing_event_name": "event_name",
    "invalid_event_time": "event_time",
    "event_time_too_old": "event_time",
    "event_time_in_future": "event_time",
    "event_time_milliseconds": "event_time",
    "event_time_clamped": "event_time",
    "missing_action_source": "action_source",
    "invalid_action_source": "action_source",
    "missing_event_source_url": "event_source_url",
    "missing_client_user_agent": "user_data.client_user_agent",
    "missing_app_data": "app_data",
    "missing_advertiser_tracking_enabled": "app_data.advertiser_tracking_enabled",
    "missing_extinfo": "app_data.extinfo",
    "invalid_extinfo": "app_data.extinfo",
    "invalid_data_processing_options": "data_processing_options",
    "data_processing_options_geolocated": "data_processing_options",
    "no_match_keys": "user_data",
    "too_broad_match_keys": "user_data",
    "purchase_without_currency": "custom_data.currency",
    "currency_invalid_dropped": "custom_data.currency",
    "purchase_without_value": "custom_data.value",
    "number_non_finite_dropped": "custom_data",
    "custom_property_collision_dropped": "custom_data.custom_properties",
})  # fmt: skip
_KEY_SUFFIXES: Final = ("_invalid_dropped", "_md5_shape")


@dataclass(frozen=True, slots=True)
class Reject:
    """One line of a reject file: where, which field (may be empty), and why (a code)."""

    line: int
    field: str
    reason: str

    def cells(self) -> tuple[str, str, str]:
        """The row of the reject file."""
        return str(self.line), self.field, self.reason


def field_of(code: str) -> str:
    """The field a normalize reason or warning is about: ``purchase_without_currency`` →
    ``custom_data.currency``, ``em_invalid_dropped`` → ``user_data.em``; else ``""``."""
    field = _FIELDS.get(code)
    if field is not None:
        return field
    for suffix in _KEY_SUFFIXES:
        if code.endswith(suffix):
            return f"user_data.{code.removesuffix(suffix)}"
    return ""


def of_row_error(line: int, error: RowError) -> list[Reject]:
    """One reject per field the mapper refused (one without a field for a whole-row fault)."""
    if not error.problems:
        return [Reject(line, "", error.reason)]
    return [Reject(line, p.field, p.reason) for p in error.problems]


def of_verdict(line: int, code: str) -> Reject:
    """The reject of a row the normalize stage would dead-letter with ``code``."""
    return Reject(line, field_of(code), code)
