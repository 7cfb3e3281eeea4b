"""Request bodies for a batch: the events' JSON is spliced, never parsed and re-serialized.

Each pending event (:class:`~stream.core.window.Pending`) already holds its event as one
serialized JSON object, so the ``data`` array is ``b"[" + b",".join(events) + b"]"`` and only
the few envelope strings go through orjson. Example, two events, one test code::

    {"data":[{"event_name":"Purchase",...},{"event_name":"Lead",...}],"test_event_code":"TEST1"}

Secrets (access token, app secret, Gateway access key) come in as plain ``str`` arguments,
go into the returned bytes and nowhere else: this module defines no object that holds one,
and no error it raises quotes one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import orjson

from stream.core.capi import MAX_EVENTS_PER_REQUEST
from stream.core.window import LaneKey, Pending

_OPEN, _CLOSE = ord("{"), ord("}")


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the token keyed by the app secret, lowercase hex (docs/capi.md §1.2)."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def data_array(lane: LaneKey, items: Sequence[Pending]) -> bytes:
    """The ``data`` JSON array of ``items``, which must all belong to ``lane``.

    Its length is the ``size_bytes`` the batcher counted for the same items.
    """
    if not 1 <= len(items) <= MAX_EVENTS_PER_REQUEST:
        raise ValueError(f"a request carries 1..{MAX_EVENTS_PER_REQUEST} events, not {len(items)}")
    jsons = [item.event_json for item in items]
    for item, json in zip(items, jsons, strict=True):
        if lane not in item.lanes:
            # Mixing lanes would post one pixel's events to another, or test events to production.
            raise ValueError(f"event {item.event_id} belongs to another lane")
        # by index, not slice: a slice of a view is another view, made twice per event
        if not json or json[0] != _OPEN or json[-1] != _CLOSE:
            raise ValueError(f"event {item.event_id} is not a serialized JSON object")
    return b"[" + b",".join(jsons) + b"]"


def graph_body(
    lane: LaneKey,
    items: Sequence[Pending],
    *,
    access_token: str | None = None,
    app_secret: str | None = None,
    partner_agent: str | None = None,
) -> bytes:
    """The JSON body for ``POST /{version}/{pixel_id}/events``.

    ``test_event_code`` comes from the lane, so it cannot be forgotten or leak into production.
    ``access_token`` None means the caller sends it another way (query string); then an
    ``app_secret`` must also be handled by the caller, so passing one alone is an error.
    """
    if app_secret is not None and access_token is None:
        raise ValueError("appsecret_proof needs the access token in the same body")
    parts = [b'{"data":', data_array(lane, items)]
    fields = (
        ("test_event_code", lane.test_event_code),
        ("partner_agent", partner_agent),
        ("access_token", access_token),
        (
            "appsecret_proof",
            appsecret_proof(access_token, app_secret) if access_token and app_secret else None,
        ),
    )
    for name, value in fields:
        if value is not None:
            parts += (b',"', name.encode(), b'":', orjson.dumps(value))
    parts.append(b"}")
    return b"".join(parts)


def gateway_body(
    lane: LaneKey, items: Sequence[Pending], *, access_key: str | None = None
) -> bytes:
    """The JSON body for a CAPI Gateway's ``POST /capi/{pixel_id}/events`` (docs/capi.md §6.4).

    The Gateway body has no ``test_event_code``; a test lane cannot go there, because its
    events would be counted as production ones.
    """
    if lane.test_event_code is not None:
        raise ValueError("a CAPI Gateway body cannot carry test_event_code")
    data = data_array(lane, items)
    if access_key is None:
        return b'{"data":' + data + b"}"
    return b'{"accessKey":' + orjson.dumps(access_key) + b',"data":' + data + b"}"
