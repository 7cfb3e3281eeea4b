"""The Dataset Quality API's request fields and its answer, as typed data (pure: no I/O).

Meta's endpoint (Conversions API, "Dataset Quality API"; the SDK models a row as
``AdsPixelCAPIIntegrationQuality``)::

    GET /{version}/dataset_quality?dataset_id=PIXEL&agent_name=AGENT&fields=web{...}

    {"web": [{"event_name": "Purchase",
              "event_match_quality": {"composite_score": 7.2,
                                      "match_key_feedback": [{"identifier": "email",
                                                              "coverage": {"percentage": 100}}],
                                      "diagnostics": [{"name": "...", "percentage": 59.5}]},
              "event_coverage": {"percentage": 34.1, "goal_percentage": 75},
              "acr": {"percentage": 37.9},
              "data_freshness": {"upload_frequency": "real_time"}}]}

Meta has renamed and retired fields of this API between versions (it was the "Integration
Quality" API), and leaves out what it has no data for. So nothing here is required: a row
without ``composite_score`` has ``emq=None`` and names ``composite_score`` in ``missing``; a
field Meta refuses as nonexistent is dropped from the request by the client and named in
:attr:`DatasetQuality.unavailable`. Percentages become ratios (0-1), like the local coverage.

Meta names the customer keys of ``match_key_feedback`` in words (``email``, ``phone``,
``ip_address``, ``user_agent``...); :data:`IDENTIFIERS` maps the names its documentation and
examples use to the keys of a request's ``user_data``. A name not in the table is kept as Meta
wrote it, so a new key shows up in the report rather than vanishing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

import orjson

from stream.core import graph_response
from stream.core.capi import INVALID_PARAMETER_CODE
from stream.core.json_values import number
from stream.core.match_quality import CUSTOMER_KEYS, META_IDENTIFIERS

#: The fields requested, as a tree (leaf: empty mapping). Rendered by :func:`fields_param`.
FIELDS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "event_name": {},
        "event_match_quality": {
            "composite_score": {},
            "match_key_feedback": {"identifier": {}, "coverage": {"percentage": {}}},
            "diagnostics": {"name": {}, "percentage": {}},
        },
        "event_coverage": {"percentage": {}, "goal_percentage": {}},
        "acr": {"percentage": {}},
        "data_freshness": {"upload_frequency": {}},
    }
)

#: Meta's ``match_key_feedback`` identifiers -> ``user_data`` keys (see the module docstring):
#: the names of :data:`~stream.core.match_quality.META_IDENTIFIERS`, our own key names, and
#: spellings seen in other integrations.
IDENTIFIERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{key: key for key in CUSTOMER_KEYS},
        **{name: key for key, name in META_IDENTIFIERS.items()},
        "phone_number": "ph",
        "birthday": "db",
        "zip_code": "zp",
        "postal_code": "zp",
        "click_id": "fbc",
        "browser_id": "fbp",
        "login_id": "fb_login_id",
    }
)

#: Graph's answer to a field it does not know: ``(#100) Tried accessing nonexisting field
#: (acr) on node type (...)``.
_NONEXISTING = re.compile(r"nonexist\w*\s+field\s*\(?\s*(\w+)", re.IGNORECASE)
_PERCENT = 100.0


def key_of(identifier: str) -> str:
    """The ``user_data`` key of one of Meta's identifiers (unknown names are kept as they are)."""
    return IDENTIFIERS.get(identifier.strip().lower(), identifier.strip())


def fields_param(tree: Mapping[str, Any] = FIELDS) -> str:
    """The ``fields`` parameter: ``web{event_name,event_match_quality{composite_score,...}}``."""
    return f"web{{{_render(tree)}}}"


def _render(tree: Mapping[str, Any]) -> str:
    return ",".join(f"{name}{{{_render(sub)}}}" if sub else name for name, sub in tree.items())


def without(tree: Mapping[str, Any], field: str) -> dict[str, Any]:
    """``tree`` with every field named ``field`` removed (a parent left empty goes too)."""
    out: dict[str, Any] = {}
    for name, sub in tree.items():
        if name == field:
            continue
        if sub:
            kept = without(sub, field)
            if kept:
                out[name] = kept
        else:
            out[name] = sub
    return out


def nonexisting_field(body: bytes | None) -> str | None:
    """The field Graph refused as nonexistent (code 100), or None for any other answer."""
    try:
        doc = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or error.get("code") != INVALID_PARAMETER_CODE:
        return None
    match = _NONEXISTING.search(str(error.get("message", "")))
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class MetaRow:
    """Meta's numbers for one event name of one dataset; None where Meta gave nothing."""

    event_name: str
    emq: float | None  # composite_score, 0-10
    key_coverage: Mapping[str, float]  # user_data key -> ratio of events carrying it (0-1)
    event_coverage: float | None  # ratio of browser events also sent by the server (0-1)
    coverage_goal: float | None  # Meta's goal for it (0-1; 0.75 in its documentation)
    acr: float | None  # additional conversions reported, as a ratio
    freshness: str | None  # upload_frequency: real_time, hourly, daily...
    diagnostics: tuple[str, ...]  # names of Meta's diagnostics, worst first
    missing: tuple[str, ...]  # requested fields absent from this row


@dataclass(frozen=True, slots=True)
class DatasetQuality:
    """Meta's answer for one dataset (pixel)."""

    pixel: str
    rows: tuple[MetaRow, ...]
    unavailable: tuple[str, ...] = ()  # fields Meta refused as nonexistent, left out


FailureKind = Literal["throttled", "transient", "setup", "invalid", "malformed"]


@dataclass(frozen=True, slots=True)
class PollFailure:
    """Why one dataset's numbers could not be read; the kind decides what the poller does.

    ``throttled``: Meta's rate limits (codes 4, 17, 32, 613, 80000-80014, HTTP 429): wait at
    least ``retry_after_s`` before any further call. ``transient``: a 5xx, a timeout or codes 1/2:
    try again after a backoff. ``setup``: the token is unknown, expired or lacks access to the
    dataset (190, 10, 200-299...): nothing helps until an operator acts. ``invalid``: Graph
    refused the request itself. ``malformed``: a 2xx that is not a JSON object.
    """

    pixel: str
    kind: FailureKind
    message: str
    code: int | None = None
    retry_after_s: float | None = None


def classify_failure(
    pixel: str,
    status: int | None,
    body: bytes | None,
    headers: Mapping[str, str],
    transport_error: str | None,
    *,
    now: float | None = None,
) -> PollFailure | None:
    """The failure an answer represents, or None when it is a usable 2xx JSON object.

    Errors are classified by :func:`stream.core.graph_response.classify`, the deliver stage's
    own table, so a code means the same thing in both places.
    """
    if transport_error is None and status is not None and 200 <= status < 300:
        try:
            doc = orjson.loads(body or b"")
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and not isinstance(doc.get("error"), dict):
            return None
        if not isinstance(doc, dict):
            return PollFailure(pixel, "malformed", f"HTTP {status} without a JSON object")
    outcome = graph_response.classify(status, body, headers, transport_error, 0, now=now)
    if isinstance(outcome, graph_response.Throttled):
        message = (outcome.error.message if outcome.error else None) or "rate limited"
        return PollFailure(pixel, "throttled", message, outcome.code, outcome.retry_after_s)
    if isinstance(outcome, graph_response.Transient):
        code = outcome.error.code if outcome.error else None
        return PollFailure(pixel, "transient", outcome.reason, code, outcome.retry_after_s)
    if isinstance(outcome, graph_response.Setup):
        return PollFailure(pixel, "setup", outcome.message or "refused", outcome.code)
    if isinstance(outcome, graph_response.Invalid):
        error = outcome.meta_error
        return PollFailure(pixel, "invalid", error.message or "refused", error.code)
    return PollFailure(pixel, "malformed", f"HTTP {status}: not a Dataset Quality answer")


def parse(pixel: str, doc: Mapping[str, Any], unavailable: tuple[str, ...] = ()) -> DatasetQuality:
    """Meta's answer for ``pixel`` as typed rows; never raises on a missing or odd field."""
    web = doc.get("web")
    if not isinstance(web, list):
        # an answer without rows: the whole "web" field is what is missing
        return DatasetQuality(pixel, (), (*unavailable, "web") if "web" not in doc else unavailable)
    rows = tuple(_row(item, unavailable) for item in web if isinstance(item, dict))
    return DatasetQuality(pixel, rows, unavailable)


def _row(item: Mapping[str, Any], unavailable: tuple[str, ...]) -> MetaRow:
    missing: list[str] = []

    def get(parent: Mapping[str, Any] | None, name: str) -> Any:
        value = parent.get(name) if isinstance(parent, Mapping) else None
        if value is None and name not in unavailable:
            missing.append(name)
        return value

    emq_node = get(item, "event_match_quality")
    emq = number(get(emq_node, "composite_score")) if emq_node is not None else None
    feedback = get(emq_node, "match_key_feedback") if emq_node is not None else None
    coverage: dict[str, float] = {}
    for entry in feedback if isinstance(feedback, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("identifier"), str):
            continue
        percent = _percent(entry.get("coverage"))
        if percent is not None:
            coverage[key_of(entry["identifier"])] = percent
    diagnostics_node = emq_node.get("diagnostics") if isinstance(emq_node, Mapping) else None
    diagnostics = tuple(
        str(d["name"]) for d in diagnostics_node or () if isinstance(d, dict) and d.get("name")
    )
    event_cov = get(item, "event_coverage")
    freshness_node = get(item, "data_freshness")
    freshness = freshness_node.get("upload_frequency") if isinstance(freshness_node, dict) else None
    name = item.get("event_name")
    return MetaRow(
        event_name=name if isinstance(name, str) else "",
        emq=emq,
        key_coverage=MappingProxyType(coverage),
        event_coverage=_percent(event_cov),
        coverage_goal=_percent(event_cov, "goal_percentage"),
        acr=_percent(get(item, "acr")),
        freshness=freshness if isinstance(freshness, str) else None,
        diagnostics=diagnostics,
        missing=tuple(dict.fromkeys(missing)),
    )


def _percent(node: object, field: str = "percentage") -> float | None:
    value = number(node.get(field)) if isinstance(node, dict) else None
    return None if value is None else value / _PERCENT
