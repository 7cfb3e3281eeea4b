"""The normalize stage's pure core: one raw conversion event in, a CAPI-ready event or a reason out.

Two entry points, the same steps: :func:`normalize_event` answers the event in the shape of
the enriched record's previous version (every field present), :func:`normalize_wire` answers
it directly as the request JSON object (what the stage sends)::

    result = normalize_wire(raw, now=1767225600.0, options=NormalizeOptions(default_region="US"))
    if isinstance(result, WireEvent):
        body_item = orjson.dumps(result.wire)    # == to_wire(normalize_event(...).event)
    else:
        dead_letter(result.reason, result.detail)

Modules, each owning one thing: :mod:`.text` (NFC, trim, lowercase, SHA-256), :mod:`.keys`
(one function per hashed key: the spec table), :mod:`.phone`, :mod:`.geo` (countries, states,
currencies), :mod:`.dates`, :mod:`.user_data`, :mod:`.sections` (custom_data, app_data and
the other optional records), :mod:`.event` (the event-level steps) and :mod:`.model`
(options and results). Reason and warning codes live in :mod:`stream.core.validate`.
"""

from __future__ import annotations

from stream.core.normalize.event import normalize_event, normalize_wire
from stream.core.normalize.model import (
    DEFAULT_OPTIONS,
    Normalized,
    NormalizeOptions,
    Rejected,
    WireEvent,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "NormalizeOptions",
    "Normalized",
    "Rejected",
    "WireEvent",
    "normalize_event",
    "normalize_wire",
]
