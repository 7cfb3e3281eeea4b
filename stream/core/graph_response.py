"""What came back from a request, classified into typed data the loop acts on (STYLE point 7).

The sink hands over status, body, headers (or a transport error) and never decides anything;
:func:`classify` maps them onto docs/design.md's failure table::

    Accepted    2xx with events_received           ack every event (alert when short)
    Transient   timeout, 5xx, codes 1/2/negative,  retry the same batch after retry_after_s
                is_transient, 200 without a count
    Throttled   codes 4/17/32/341/613/80000-80014, back off the whole lane
                HTTP 429
    Setup       190/102/10/200-299/3, 368, 803,    halt the lane; commit nothing past it
                100 with subcode 33, bare 401/403/404
    Invalid     100 and other 4xx                  isolate the bad events, dead-letter them

The Graph error code decides when there is one: Meta's HTTP status "is not a reliable
classifier by itself" (docs/capi.md §5.2). Only without a code does the status decide.
Garbage never raises: an unreadable 5xx is Transient, an unreadable 4xx is Invalid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from stream.core.capi import (
    INVALID_PARAMETER_CODE,
    MISSING_OBJECT_CODE,
    MISSING_OBJECT_SUBCODE,
    POLICY_BLOCKED_CODE,
    SETUP_CODES,
    THROTTLE_CODES,
    TRANSIENT_CODES,
)
from stream.core.dead_letter import MetaErrorFields as MetaError
from stream.core.retry import server_hint_s

# Meta's error envelope (capi.md §5.2) has one type in the project: the dead letter keeps the same
# seven fields the classifier reads, so an Invalid's error goes into the letter unchanged.
__all__ = [
    "Accepted", "Invalid", "MetaError", "Outcome", "Setup", "Throttled", "Transient", "classify",
    "event_index",
]  # fmt: skip

_SNIPPET = 200  # characters of an unparseable body kept as evidence
_HTTP_OK, _HTTP_ACCEPTED = 200, 202
_HTTP_TIMEOUT, _HTTP_TOO_MANY = 408, 429
_HTTP_NO_AUTH = frozenset({401, 403, 404})  # bare, these are a wrong token, key or URL
_HTTP_CLIENT, _HTTP_SERVER = 400, 500


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta took the request; ``short`` when it counted fewer events than were sent."""

    events_received: int
    messages: tuple[str, ...]
    fbtrace_id: str | None
    short: bool


@dataclass(frozen=True, slots=True)
class Transient:
    """Retry the same request unchanged, not before ``retry_after_s`` when given."""

    reason: str
    retry_after_s: float | None
    error: MetaError | None = None


@dataclass(frozen=True, slots=True)
class Throttled:
    """The lane is over a rate limit: back off the lane, not just this request."""

    code: int | None
    retry_after_s: float | None
    error: MetaError | None = None


@dataclass(frozen=True, slots=True)
class Setup:
    """Token, permission or pixel is wrong: halt the lane, dead-letter nothing."""

    code: int | None
    subcode: int | None
    message: str
    fbtrace_id: str | None

    @property
    def error(self) -> MetaError:
        """Meta's error as the lane's status shows it."""
        return MetaError(self.code, self.subcode, None, self.message, fbtrace_id=self.fbtrace_id)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Meta rejected the request for its content; ``event_index`` names the culprit if known."""

    meta_error: MetaError
    event_index: int | None


Outcome = Accepted | Transient | Throttled | Setup | Invalid


def classify(
    status: int | None,
    body: bytes | None,
    headers: Mapping[str, str],
    transport_error: str | None,
    sent: int,
    *,
    now: float | None = None,
    gateway: bool = False,
) -> Outcome:
    """Classify one answer to a request of ``sent`` events.

    ``now`` lets an HTTP-date ``Retry-After`` count; ``gateway`` applies the CAPI Gateway's
    contract, where success is a bare HTTP 202 (docs/capi.md §6.4).
    """
    hint = server_hint_s(headers, now)
    if transport_error is not None:
        return Transient(f"transport: {transport_error}", hint)
    if status is None:
        return Transient("no response", hint)
    parsed = _loads(body)
    envelope = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(envelope, dict):
        return _classify_error(status, envelope, sent, hint)
    if _HTTP_OK <= status < _HTTP_OK + 100:
        return _classify_success(status, body or b"", parsed, sent, hint, gateway=gateway)
    if status == _HTTP_TOO_MANY:
        return Throttled(None, hint)
    if status == _HTTP_TIMEOUT or status >= _HTTP_SERVER:
        return Transient(f"HTTP {status}: {_snippet(body)}", hint)
    text = f"HTTP {status}: {_snippet(body)}"
    bare = MetaError(None, None, None, text)
    if status in _HTTP_NO_AUTH:
        return Setup(None, None, text, None)
    if status >= _HTTP_CLIENT:
        return Invalid(bare, None)
    return Transient(f"unexpected HTTP {status}", hint)


def _classify_error(
    status: int, envelope: dict[str, object], sent: int, hint: float | None
) -> Outcome:
    error = _meta_error(envelope)
    code = error.code
    transient = envelope.get("is_transient") is True
    if code in THROTTLE_CODES or status == _HTTP_TOO_MANY:
        # Throttles often say is_transient too; the lane-wide backoff is what they need.
        return Throttled(code, hint, error)
    if (
        code in SETUP_CODES
        or code in (POLICY_BLOCKED_CODE, MISSING_OBJECT_CODE)
        or (code == INVALID_PARAMETER_CODE and error.error_subcode == MISSING_OBJECT_SUBCODE)
        or _bad_appsecret_proof(code, error.message)
    ):
        return Setup(code, error.error_subcode, error.message or "", error.fbtrace_id)
    if transient or code in TRANSIENT_CODES or (code is not None and code < 0):
        return Transient(f"graph code {code}: {error.message}", hint, error)
    if status >= _HTTP_SERVER and code != INVALID_PARAMETER_CODE:
        return Transient(f"HTTP {status}, graph code {code}: {error.message}", hint, error)
    return Invalid(error, event_index(envelope, sent))


def _bad_appsecret_proof(code: int | None, message: str | None) -> bool:
    """Graph answers a wrong app secret with code 100 ("Invalid appsecret_proof ...").

    That is the whole lane's setup, not any event's content: isolating "bad events" would
    dead-letter every good one.
    """
    return code == INVALID_PARAMETER_CODE and "appsecret_proof" in (message or "").lower()


def _classify_success(
    status: int, body: bytes, parsed: object, sent: int, hint: float | None, *, gateway: bool
) -> Outcome:
    received = parsed.get("events_received") if isinstance(parsed, dict) else None
    if gateway and status == _HTTP_ACCEPTED and not isinstance(received, int):
        # The Gateway answers 202 with no count; the SDK treats that as all events taken.
        return Accepted(sent, (), None, short=False)
    if b"Service Unavailable" in body:
        # The Python SDK's rule: a 200 page saying this is an outage, not an acceptance.
        return Transient("HTTP 200 saying Service Unavailable", hint)
    if not isinstance(parsed, dict) or isinstance(received, bool) or not isinstance(received, int):
        return Transient(f"HTTP {status} without events_received: {_snippet(body)}", hint)
    messages = parsed.get("messages")
    return Accepted(
        events_received=received,
        messages=tuple(str(m) for m in messages) if isinstance(messages, list) else (),
        fbtrace_id=_str(parsed.get("fbtrace_id")),
        short=received < sent,
    )


def _meta_error(envelope: Mapping[str, object]) -> MetaError:
    return MetaError(
        code=_int(envelope.get("code")),
        error_subcode=_int(envelope.get("error_subcode")),
        type=_str(envelope.get("type")),
        message=_str(envelope.get("message")) or "",
        error_user_title=_str(envelope.get("error_user_title")),
        error_user_msg=_str(envelope.get("error_user_msg")),
        fbtrace_id=_str(envelope.get("fbtrace_id")),
    )


# Where Meta's text names the failing event. Tried in order, on error_user_msg first.
_INDEX_PATTERNS = (
    re.compile(r"\bevent[ _]index\W{0,3}(\d+)", re.IGNORECASE),  # event_index 17, "event_index":17
    re.compile(r"\b(?:events|data)\s*\[\s*(\d+)\s*\]", re.IGNORECASE),  # events[17], data[17]
    re.compile(r"\bevent\s*#?\s*(\d+)\s*:", re.IGNORECASE),  # Event 17: ...
)
_MAX_DEPTH = 4  # error_data nests a per-event error a level or two down; no deeper search


def event_index(envelope: Mapping[str, object], sent: int) -> int | None:
    """The 0-based index of the event Meta blames, or None; an index outside the batch is None.

    ``error_data.event_index`` wins (error_data may be an object or a JSON string); otherwise
    the text of ``error_user_msg``, ``message``, ``error_user_title`` and ``error_data`` is read.
    """
    data = envelope.get("error_data")
    if isinstance(data, str):
        decoded = _loads(data.encode())
        data = decoded if isinstance(decoded, dict | list) else data
    found = _find_key(data, "event_index", _MAX_DEPTH)
    if found is None:
        texts = [envelope.get(k) for k in ("error_user_msg", "message", "error_user_title")]
        texts.append(data)
        found = next(
            (
                int(match.group(1))
                for text in texts
                if isinstance(text, str)
                for pattern in _INDEX_PATTERNS
                if (match := pattern.search(text)) is not None
            ),
            None,
        )
    return found if found is not None and 0 <= found < sent else None


def _find_key(value: object, key: str, depth: int) -> int | None:
    if depth < 0:
        return None
    if isinstance(value, dict):
        if (found := _int(value.get(key))) is not None:
            return found
        children: list[object] = list(value.values())
    elif isinstance(value, list):
        children = list(value)
    else:
        return None
    return next(
        (f for child in children if (f := _find_key(child, key, depth - 1)) is not None), None
    )


def _loads(body: bytes | None) -> object:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value)
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _snippet(body: bytes | None) -> str:
    if not body:
        return "<empty body>"
    return body[:_SNIPPET].decode("utf-8", errors="replace")
