"""Read-only requests ``capi-stream check`` makes to the destination: nothing is ever sent.

A token is probed with ``GET /{version}/{pixel_id}?fields=id,name`` (the pixel, or dataset,
node): it needs the same token and the same access to the pixel as the events edge, and sends
no event. Like :mod:`stream.sinks.http`, a transport failure is returned as a short string.
The token travels in the ``Authorization`` header, which Graph reads as well as the query, so
it is in no URL: httpx logs each request's URL at INFO, and an error message may quote one.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from stream.core.payload import appsecret_proof


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What one GET produced: a status and body, or the kind of transport failure."""

    status: int | None
    body: bytes | None
    transport_error: str | None = None


class Prober:
    """One short-lived HTTP client for the probes of a check; use it as a context manager."""

    def __init__(self, timeout_s: float) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)))

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def pixel(
        self,
        base_url: str,
        *,
        version: str,
        pixel_id: str,
        token: str,
        app_secret: str | None = None,
    ) -> ProbeAnswer:
        """GET the pixel's id and name with ``token`` (and its ``appsecret_proof`` when set)."""
        params = {"fields": "id,name"}
        if app_secret:  # an HMAC of the token, useless without it
            params["appsecret_proof"] = appsecret_proof(token, app_secret)
        url = f"{base_url.rstrip('/')}/{version}/{pixel_id}"
        return self._get(url, params, {"Authorization": f"Bearer {token}"})

    def reach(self, url: str) -> ProbeAnswer:
        """GET ``url`` with no credentials: does anything answer there (any status will do)."""
        return self._get(url, {}, {})

    def _get(self, url: str, params: dict[str, str], headers: dict[str, str]) -> ProbeAnswer:
        try:
            resp = self._client.get(url, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            return ProbeAnswer(None, None, f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return ProbeAnswer(None, None, f"connection failed ({type(exc).__name__})")
        return ProbeAnswer(resp.status_code, resp.content)
