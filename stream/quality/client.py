"""The Dataset Quality API client: one GET per dataset, answers as data, never raises.

The token is the deliver stage's for that pixel (:meth:`stream.config.Settings.token_for`: its
own, else the default), read from the same :class:`~stream.credentials.Credentials`, so a
rotated tokens file is picked up here too. It travels in the ``Authorization`` header, which
Graph accepts as ``Bearer <token>``, never in the URL: httpx logs request URLs, and an error
message may quote one. With an app secret configured, ``appsecret_proof`` (an HMAC of the token,
useless without it) goes in the query as Graph requires.

A field Graph refuses as nonexistent (renamed or retired in this API version) is dropped from
the request and the request made again, at most once per requested field; the client remembers
the dropped fields for its later polls and reports them (:attr:`DatasetQuality.unavailable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from stream.core.payload import appsecret_proof
from stream.quality.model import (
    FIELDS,
    DatasetQuality,
    PollFailure,
    classify_failure,
    fields_param,
    nonexisting_field,
    parse,
    without,
)

TokenFor = Callable[[str], SecretStr | None]
Secret = Callable[[], SecretStr | None]


def agent_name(partner_agent: str | None) -> str | None:
    """Meta's ``agent_name`` for a ``partner_agent``: lowercase, before the first ``_``.

    Meta's documentation: a partner_agent ``[partner_name]_[major]_[minor]`` is normalized to
    ``partner_name`` in lowercase. None (or empty) asks for every event of the dataset.

    >>> agent_name("capi-stream"), agent_name("MyPlatform_2_1"), agent_name(None)
    ('capi-stream', 'myplatform', None)
    """
    if not partner_agent or not partner_agent.strip():
        return None
    return partner_agent.strip().split("_", 1)[0].lower() or None


class DatasetQualityClient:
    """Reads Meta's quality numbers of datasets with an injected ``httpx.Client``."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        base_url: str,
        version: str,
        token_for: TokenFor,
        app_secret: Secret = lambda: None,
        agent: str | None = None,
    ) -> None:
        self._client = client
        self._url = f"{base_url.rstrip('/')}/{version}/dataset_quality"
        self._token_for = token_for
        self._app_secret = app_secret
        self._agent = agent
        self._fields: dict[str, Any] = dict(FIELDS)
        self._unavailable: list[str] = []

    @property
    def unavailable(self) -> tuple[str, ...]:
        """Fields Graph refused as nonexistent so far (no longer requested)."""
        return tuple(self._unavailable)

    def fetch(self, pixel: str, *, now: float | None = None) -> DatasetQuality | PollFailure:
        """Meta's numbers for ``pixel``, or why there are none (see :class:`PollFailure`)."""
        token = self._token_for(pixel)
        if token is None:
            return PollFailure(pixel, "setup", "no access token for this pixel")
        secret = self._app_secret()
        for _ in range(_count_fields(FIELDS) + 1):
            params = {"dataset_id": pixel, "fields": fields_param(self._fields)}
            if self._agent:
                params["agent_name"] = self._agent
            if secret is not None:
                params["appsecret_proof"] = appsecret_proof(
                    token.get_secret_value(), secret.get_secret_value()
                )
            status, body, headers, transport_error = self._get(params, token)
            refused = nonexisting_field(body) if status is not None and status >= 400 else None
            if refused is not None and refused in _field_names(self._fields):
                self._fields = without(self._fields, refused)
                self._unavailable.append(refused)
                continue
            failure = classify_failure(pixel, status, body, headers, transport_error, now=now)
            if failure is not None:
                return failure
            return parse(pixel, orjson.loads(body or b"{}"), self.unavailable)
        return PollFailure(pixel, "invalid", "Graph refused every requested field")

    def _get(
        self, params: Mapping[str, str], token: SecretStr
    ) -> tuple[int | None, bytes | None, dict[str, str], str | None]:
        headers = {
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Accept": "application/json",
        }
        try:
            resp = self._client.get(self._url, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            return None, None, {}, f"timeout ({type(exc).__name__})"
        except httpx.TransportError as exc:
            return None, None, {}, f"connection ({type(exc).__name__})"
        return resp.status_code, resp.content, {k.lower(): v for k, v in resp.headers.items()}, None


def build_client(timeout_s: float, user_agent: str = "capi-stream quality") -> httpx.Client:
    """The HTTP client of ``capi-stream quality`` (one per process)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        headers={"User-Agent": user_agent},
    )


def _field_names(tree: Mapping[str, Any]) -> set[str]:
    names = set(tree)
    for sub in tree.values():
        if sub:
            names |= _field_names(sub)
    return names


def _count_fields(tree: Mapping[str, Any]) -> int:
    return len(_field_names(tree))
