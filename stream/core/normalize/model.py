"""What flows in and out of :func:`~stream.core.normalize.normalize_event`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream.core.capi import MAX_AGE_SECONDS
from stream.core.errors import ConfigError
from stream.core.frozen import slot_init
from stream.core.normalize.phone import is_region


@dataclass(frozen=True, slots=True)
class NormalizeOptions:
    """Settings of the normalize stage (``config.Normalizer`` carries the same names).

    ``default_region`` is the phonenumbers region for numbers without a country code, and the
    country assumed for state names and ambiguous dates when the event has none.
    ``hash_external_id`` False sends external_id raw (trimmed), for advertisers whose other
    channels send it raw: Meta needs the same form everywhere (docs/capi.md §3.2).
    """

    default_region: str = "US"
    default_pixel_id: str | None = None
    hash_external_id: bool = True
    max_future_skew_s: int = 60
    age_safety_margin_s: int = 3600

    def __post_init__(self) -> None:
        if not is_region(self.default_region):
            raise ConfigError(
                f"default_region {self.default_region!r} is not a region phonenumbers knows "
                "(an upper-case ISO 3166-1 alpha-2 code such as 'US')"
            )
        if self.max_future_skew_s < 0:
            raise ConfigError("max_future_skew_s must be >= 0")
        if not 0 <= self.age_safety_margin_s < MAX_AGE_SECONDS:
            raise ConfigError(f"age_safety_margin_s must be in [0, {MAX_AGE_SECONDS})")


DEFAULT_OPTIONS = NormalizeOptions()


@dataclass(frozen=True, slots=True)
class Normalized:
    """A CAPI-ready event.

    ``event`` has the shape of ``capi_event.avsc``'s ``event`` record: every field present,
    None for absent optional ones, ``[]`` for empty lists; :func:`stream.core.wire.to_wire`
    turns it into the JSON object Meta gets. ``warnings`` are codes of
    :data:`stream.core.validate.WARNINGS`, each at most once.
    """

    event: dict[str, Any]
    event_id: str
    pixel_id: str
    test_event_code: str | None
    warnings: tuple[str, ...]


@slot_init  # made once per event: half the cost of the frozen dataclass's own __init__
@dataclass(frozen=True, slots=True)
class WireEvent:
    """A CAPI-ready event as the JSON object that goes into a request's ``data`` array.

    ``wire`` is what :func:`stream.core.wire.to_wire` makes of :attr:`Normalized.event` (no
    None, no empty list or map, custom properties flat in ``custom_data``). The routing fields
    ride beside it so nothing reads them back out of ``wire``. ``event_id_derived`` is True
    when the producer gave no event_id and :mod:`stream.core.event_id` derived it.
    """

    wire: dict[str, Any]
    event_id: str
    event_id_derived: bool
    pixel_id: str
    event_name: str
    event_time: int
    action_source: str
    test_event_code: str | None
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event to dead-letter: a code of :data:`stream.core.validate.REASONS` and a detail.

    ``detail`` names fields and limits, never values. ``event_id`` is the producer's, or the
    derived one when the event got far enough to derive it; ``event_name`` and ``pixel_id``
    are set when known.
    """

    reason: str
    detail: str
    event_id: str | None = None
    event_name: str | None = None
    pixel_id: str | None = None
