"""The Graph API's wire shapes: bodies in, success and error envelopes out (docs/capi.md §1.3, §5).

Bodies come as JSON, form-encoded or multipart (curl ``-F``); ``data`` may be an array or a JSON
string of one. Errors use Graph's envelope, and the fault kinds answer as Meta's edge does:
throttles with HTTP 429 and usage headers, token errors with ``WWW-Authenticate``, bare
load-balancer pages for plain 500/503.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from stream.sim.config import FaultConfig

JSON_TYPE: Final = "application/json; charset=UTF-8"
_BOUNDARY: Final = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_FIELD_NAME: Final = re.compile(rb'name="([^"]*)"')

#: (code, subcode, message) of each throttle kind (docs/capi.md §5.3).
THROTTLES: Final = {
    "throttle_4": (4, 1504022, "(#4) Application request limit reached"),
    "throttle_17": (17, 2446079, "(#17) User request limit reached"),
    "throttle_613": (613, 1487742, "(#613) Calls to this api have exceeded the rate limit."),
    "throttle_80004": (
        80004,
        2446079,
        "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
    ),
}


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer, independent of the server that writes it."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON_TYPE


class BodyError(ValueError):
    """Raised when a request body cannot be read as Graph reads bodies."""


def fbtrace_id() -> str:
    """A fresh, opaque trace id shaped like Meta's (URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(payload), headers)


def graph_error(
    status: int,
    code: int,
    message: str,
    *,
    error_type: str = "OAuthException",
    subcode: int | None = None,
    transient: bool = False,
    title: str = "",
    user_msg: str = "",
    error_data: Mapping[str, Any] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """Graph's error envelope (capi.md §5.2); ``error_subcode`` is left out when there is none."""
    trace = fbtrace_id()
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = transient
    error["error_user_title"] = title
    error["error_user_msg"] = user_msg
    if error_data is not None:
        error["error_data"] = dict(error_data)
    error["fbtrace_id"] = trace
    return json_response(status, {"error": error}, (("x-fb-trace-id", trace), *headers))


def _page(status: int, text: str) -> Response:
    # What a load balancer in front of the Graph API answers: not JSON at all.
    body = f"<html><body><h1>{status} {text}</h1></body></html>".encode()
    return Response(status, body, (), "text/html; charset=utf-8")


def token_error(message: str, subcode: int | None = None) -> Response:
    """Code 190: the token is unknown, expired or revoked."""
    return graph_error(
        400,
        190,
        message,
        subcode=subcode,
        title="Invalid Access Token",
        user_msg="The access token could not be validated.",
        headers=(("WWW-Authenticate", 'OAuth "Facebook Platform" "invalid_token"'),),
    )


def _usage_headers(pixel_id: str, faults: FaultConfig) -> tuple[tuple[str, str], ...]:
    pct = faults.throttle_usage_percent
    usage = {"call_count": pct, "total_cputime": pct, "total_time": pct}
    business = {
        pixel_id: [
            {
                "type": "ads_management",
                **usage,
                "estimated_time_to_regain_access": faults.regain_access_minutes,
            }
        ]
    }
    return (
        ("Retry-After", str(faults.retry_after_seconds)),
        ("X-App-Usage", orjson.dumps(usage).decode()),
        ("X-Business-Use-Case-Usage", orjson.dumps(business).decode()),
    )


def fault_response(kind: str, pixel_id: str, faults: FaultConfig) -> Response:
    """The answer of an injected fault ``kind`` (not ``hang`` or ``reset``: those never answer)."""
    if kind == "http_500":
        return _page(500, "Internal Server Error")
    if kind in ("http_503", "outage"):
        return _page(503, "Service Unavailable")
    if kind == "code_1":
        return graph_error(
            500, 1, "An unknown error occurred", transient=True, title="Unknown Error"
        )
    if kind == "code_2":
        return graph_error(
            503,
            2,
            "An unexpected error has occurred. Please retry your request later.",
            transient=True,
            title="Service Temporarily Unavailable",
        )
    if kind == "code_190":
        return token_error("Error validating access token: Session has expired.", 463)
    code, subcode, message = THROTTLES[kind]
    return graph_error(
        429,
        code,
        message,
        subcode=subcode,
        transient=True,
        title="Rate Limit Reached",
        user_msg="Too many calls; wait and try again.",
        headers=_usage_headers(pixel_id, faults),
    )


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise BodyError("multipart body without a boundary")
    fields: dict[str, Any] = {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        name = _FIELD_NAME.search(head)
        if name is not None:
            fields[name.group(1).decode()] = content.removesuffix(b"\r\n").decode()
    return fields


def decode_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The request's top-level parameters, with a ``data`` JSON string decoded.

    Raises :class:`BodyError` when the body is not JSON, form or multipart, or does not parse.
    """
    media = content_type.partition(";")[0].strip().lower()
    try:
        if media == "application/json" or (not media and body[:1] == b"{"):
            params = orjson.loads(body) if body else {}
            if not isinstance(params, dict):
                raise BodyError("a JSON body must be an object")
        elif media == "application/x-www-form-urlencoded":
            params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        elif media == "multipart/form-data":
            params = _multipart(content_type, body)
        elif not body:
            params = {}
        else:
            raise BodyError(f"unsupported content type {media!r}")
        data = params.get("data")
        if isinstance(data, str):
            params["data"] = orjson.loads(data)
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(f"cannot parse the body: {exc}") from exc
    return params
