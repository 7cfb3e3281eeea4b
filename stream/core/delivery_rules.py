"""The per-event rules of the deliver stage: what keeps an event out of every request.

One stale, oversized or misdirected event would sink the whole request of up to 1,000 events
(Meta rejects a request for any of its events, docs/capi.md §1.5), so each enriched event is checked
once, before it joins a window, and a failing one becomes a dead letter at once:

==========================  =================================================================
reason                      rule
==========================  =================================================================
test_event_in_production    a ``test_event_code`` (the event's, or the stage's) while the
                            stage runs with ``production=true``: test events must never count
expired                     ``event_time`` + Meta's age limit (:func:`stream.core.capi.max_age_s`)
                            - :data:`EXPIRY_MARGIN_S` is past
event_too_large             the event alone does not fit a request of ``max_bytes``
==========================  =================================================================

Worked example, ``now = 1_000_000_000``, a website event at ``now - 7 days + 200 s``: it expires
at ``event_time + 604_800 - 300 = now - 100``, which is past: dead-lettered as ``expired``. The
same event from a ``physical_store`` has 62 days and is admitted, expiring 55 days later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from stream.core.capi import max_age_s
from stream.core.graph_response import MetaError

#: Dead-letter an event this long before Meta's age limit: clocks differ, requests take time.
EXPIRY_MARGIN_S: Final = 300.0
#: A request's ``data`` array costs two bytes more than its one event: ``[`` and ``]``.
DATA_ARRAY_OVERHEAD: Final = 2


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an event goes to the dead-letter topic instead of Meta, with its identity."""

    reason: str
    message: str
    meta_error: MetaError | None = None
    pixel_id: str | None = None
    event_id: str | None = None
    event_name: str | None = None


class Admitted(NamedTuple):
    """An event that may be sent: its test code (None in production) and when it expires.

    A named tuple, not a dataclass: one is made per event, and a tuple is made in C.
    """

    test_event_code: str | None
    expires_at: float


def expires_at(event_time: float, action_source: str | None) -> float:
    """Unix seconds from which the event must not be sent (Meta would reject its request)."""
    return float(event_time) + max_age_s(action_source) - EXPIRY_MARGIN_S


def fits(event_bytes: int, max_bytes: int) -> bool:
    """Whether an event of ``event_bytes`` fits a request of ``max_bytes`` on its own."""
    return DATA_ARRAY_OVERHEAD + event_bytes <= max_bytes


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    """The settings the rules read, once; checked per event (pure: ``now`` comes in)."""

    production: bool = False
    default_test_event_code: str | None = None
    max_bytes: int = 4 * 1024 * 1024

    def check(
        self,
        *,
        pixel_id: str,
        event_id: str,
        event_name: str,
        event_time: float,
        action_source: str | None,
        test_event_code: str | None,
        event_bytes: int,
        now: float,
    ) -> Admitted | Failure:
        """Admit the event, or say which rule (the module's table) keeps it from Meta."""
        verdict = self.admit(
            pixel_id, event_id, event_name, event_time, action_source, test_event_code,
            event_bytes, now,
        )  # fmt: skip
        return verdict if isinstance(verdict, Failure) else Admitted(*verdict)

    def admit(  # noqa: PLR0917 - positional: the hot path of the stage, once per event
        self,
        pixel_id: str,
        event_id: str,
        event_name: str,
        event_time: float,
        action_source: str | None,
        test_event_code: str | None,
        event_bytes: int,
        now: float,
    ) -> tuple[str | None, float] | Failure:
        """:meth:`check` for the stage's hot path: positional, and a plain tuple (test code,
        expiry) when admitted (no object made per event that passes)."""
        code = test_event_code or self.default_test_event_code
        if code and self.production:
            why = "test_event_code is set and the deliverer runs in production mode"
            return Failure("test_event_in_production", why, None, pixel_id, event_id, event_name)
        expiry = float(event_time) + max_age_s(action_source) - EXPIRY_MARGIN_S
        if expiry <= now:
            why = f"event_time is past Meta's {max_age_s(action_source) // 86_400}-day limit"
            return Failure("expired", why, None, pixel_id, event_id, event_name)
        if event_bytes + DATA_ARRAY_OVERHEAD > self.max_bytes:
            why = f"{event_bytes} bytes exceed max_bytes"
            return Failure("event_too_large", why, None, pixel_id, event_id, event_name)
        return code, expiry
