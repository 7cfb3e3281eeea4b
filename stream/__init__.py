"""capi-stream: deliver conversion events from Kafka to Meta's Conversions API.

The public library API is the normalizer (``normalize_event`` and its types); it is imported on
first use so that ``capi-stream --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.core.normalize import Normalized, NormalizeOptions, Rejected, normalize_event

__all__ = ["NormalizeOptions", "Normalized", "Rejected", "normalize_event"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stream.core import normalize

        return getattr(normalize, name)
    raise AttributeError(f"module 'stream' has no attribute {name!r}")
