"""Read-only requests ``capi-stream check`` makes to the destination: nothing is ever sent.

A token is probed with ``GET /{version}/{pixel_id}?fields=id,name`` (the pixel, or dataset,
node): it needs the same token and the same access to the pixel as the events edge, and sends
no event. Like :mod:`stream.sinks.http`, a transport failure is returned as a short string,
and the token, which rides in the query as Graph documents it, appears in no error or log line
(httpx logs each request's URL at INFO, so its logger is kept at WARNING here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from stream.core.payload import appsecret_proof

# httpx logs "HTTP Request: GET <url>" at INFO, and the probe's URL carries the token
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)


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
        params = {"fields": "id,name", "access_token": token}
        if app_secret:
            params["appsecret_proof"] = appsecret_proof(token, app_secret)
        return self._get(f"{base_url.rstrip('/')}/{version}/{pixel_id}", params)

    def reach(self, url: str) -> ProbeAnswer:
        """GET ``url`` with no credentials: does anything answer there (any status will do)."""
        return self._get(url, {})

    def _get(self, url: str, params: dict[str, str]) -> ProbeAnswer:
        try:
            resp = self._client.get(url, params=params)
        except httpx.TimeoutException as exc:
            return ProbeAnswer(None, None, f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return ProbeAnswer(None, None, f"connection failed ({type(exc).__name__})")
        return ProbeAnswer(resp.status_code, resp.content)
