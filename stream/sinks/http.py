"""The HTTP seam: POST a prepared body, return what came back as data, never raise on the network.

The one place that imports httpx. Transport failures (timeouts, refused or reset connections,
protocol errors) become a short ``transport_error`` string that :mod:`stream.core.graph_response`
classifies as transient; the request body, which holds the access token, never appears in an
error or a log line, and URLs never carry the token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import httpx

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What one POST produced: a status and body, or the kind of transport failure."""

    status: int | None
    body: bytes | None
    headers: Mapping[str, str] = field(default_factory=dict)
    transport_error: str | None = None
    elapsed_s: float = 0.0


def graph_url(base: str, version: str, pixel_id: str) -> str:
    """``{base}/{version}/{pixel_id}/events`` (docs/capi.md §1.1)."""
    return f"{base.rstrip('/')}/{version}/{pixel_id}/events"


def gateway_url(base: str, pixel_id: str) -> str:
    """``{base}/capi/{pixel_id}/events`` (docs/capi.md §6.4)."""
    return f"{base.rstrip('/')}/capi/{pixel_id}/events"


def build_client(*, max_connections: int, timeout_s: float, user_agent: str) -> httpx.AsyncClient:
    """The one pooled keep-alive client of a deliverer process."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        headers={"User-Agent": user_agent},
    )


class HttpSink:
    """Posts JSON bodies with an injected client (tests and the CLI build the real one)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, url: str, body: bytes) -> HttpAnswer:
        """POST ``body`` to ``url``; any transport failure is returned, not raised."""
        began = time.monotonic()
        try:
            resp = await self._client.post(
                url, content=_Body(body), headers={**_JSON, "Content-Length": str(len(body))}
            )
        except httpx.TimeoutException as exc:
            return HttpAnswer(None, None, transport_error=f"timeout ({type(exc).__name__})",
                              elapsed_s=time.monotonic() - began)  # fmt: skip
        except httpx.TransportError as exc:
            return HttpAnswer(None, None, transport_error=f"connection ({type(exc).__name__})",
                              elapsed_s=time.monotonic() - began)  # fmt: skip
        return HttpAnswer(
            resp.status_code,
            resp.content,
            {k.lower(): v for k, v in resp.headers.items()},
            elapsed_s=time.monotonic() - began,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class _Body(httpx.AsyncByteStream):
    """A request body that is let go once sent.

    httpx leaves every request in reference cycles (about forty objects) that only the cyclic
    collector frees, and a body passed as bytes stays with them: with the stages' raised gen-0
    threshold, tens of MB of sent bodies waited for a collection (the deliverer's peak RSS in a
    broker outage). The Content-Length header goes with it, so the request is sent as before.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body, self._body = self._body, b""
        yield body
