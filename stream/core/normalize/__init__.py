"""The normalize stage's pure core: one raw conversion event in, a CAPI-ready event or a reason out.

The one entry point is :func:`normalize_event`::

    result = normalize_event(raw, now=1767225600.0, options=NormalizeOptions(default_region="US"))
    if isinstance(result, Normalized):
        body_item = to_wire(result.event)        # stream.core.wire
    else:
        dead_letter(result.reason, result.detail)

Modules, each owning one thing: :mod:`.text` (NFC, trim, lowercase, SHA-256), :mod:`.keys`
(one function per hashed key: the spec table), :mod:`.phone`, :mod:`.geo` (countries, states,
currencies), :mod:`.dates`, :mod:`.user_data`, :mod:`.sections` (custom_data, app_data and
the other optional records), :mod:`.event` (the event-level steps) and :mod:`.model`
(options and results). Reason and warning codes live in :mod:`stream.core.validate`.
"""

from __future__ import annotations

from stream.core.normalize.event import normalize_event
from stream.core.normalize.model import DEFAULT_OPTIONS, Normalized, NormalizeOptions, Rejected

__all__ = ["DEFAULT_OPTIONS", "NormalizeOptions", "Normalized", "Rejected", "normalize_event"]
