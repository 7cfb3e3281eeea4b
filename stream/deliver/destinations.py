"""Where an event goes and what its request looks like: the Graph API or a CAPI Gateway.

Each enriched event goes to one lane per destination (``graph``; ``gateway``; or both when the
Gateway is not the only one). A request is a URL and a body; the body carries the access token
and ``appsecret_proof`` (Graph) or the access key (Gateway), read from the credentials provider
at each request, so a rotated token file takes effect without a restart. No URL carries a
secret: URLs are logged, bodies never.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from pydantic import SecretStr

from stream.config import Settings
from stream.core import payload
from stream.core.errors import ConfigError
from stream.core.window import Json, LaneKey, Pending
from stream.credentials import Credentials
from stream.sinks.http import gateway_url, graph_url

#: Lane tuples kept for (pixel, test code) pairs before the table starts afresh.
_KNOWN_LANES = 10_000
#: The Gateway filter hook: gets the decoded event, returns whether the Gateway should have it.
Filter = Callable[[dict[str, object]], bool]


@dataclass(frozen=True, slots=True)
class Request:
    """One POST: where, and the body (which holds a secret: never log it)."""

    url: str
    body: bytes


class Destinations:
    """Lanes per event, and the request for a batch of one lane."""

    def __init__(
        self,
        *,
        names: tuple[str, ...],
        credentials: Credentials,
        graph_base: str = "https://graph.facebook.com",
        api_version: str = "v25.0",
        partner_agent: str | None = None,
        gateway_base: str | None = None,
        gateway_access_key: SecretStr | None = None,
        gateway_filter: Filter | None = None,
    ) -> None:
        if "gateway" in names and not gateway_base:
            raise ConfigError("CAPI_STREAM_DELIVERER__GATEWAY_URL is required for the gateway")
        self.names = names
        self._credentials = credentials
        self._graph_base = graph_base
        self._api_version = api_version
        self._partner_agent = partner_agent
        self._gateway_base = gateway_base or ""
        self._access_key = gateway_access_key
        self._filter = gateway_filter
        self._known: dict[tuple[str, str | None], tuple[LaneKey, ...]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Destinations:
        """The destinations the deliverer settings name."""
        d = settings.deliverer
        names: tuple[str, ...] = ("graph",)
        if d.destination == "gateway":
            names = ("gateway",) if d.gateway_only else ("graph", "gateway")
        return cls(
            names=names, credentials=settings.credentials, graph_base=d.graph_url,
            api_version=d.api_version, partner_agent=d.partner_agent, gateway_base=d.gateway_url,
            gateway_access_key=settings.gateway_access_key,
            gateway_filter=load_filter(d.gateway_filter),
        )  # fmt: skip

    def lanes(
        self, pixel_id: str, test_event_code: str | None, event_json: Json
    ) -> tuple[LaneKey, ...]:
        """The lanes of one event; empty when the Gateway filter keeps it from every destination.

        A Gateway lane never has a test code (its body cannot carry one). The filter hook gets
        the decoded event: only then is the event's JSON parsed. Without a filter the lanes of
        a (pixel, test code) are made once: every event of a pixel shares them.
        """
        if self._filter is not None:
            return self._route(pixel_id, test_event_code, event_json)
        lanes = self._known.get((pixel_id, test_event_code))
        if lanes is None:
            if len(self._known) >= _KNOWN_LANES:
                self._known.clear()  # a bound, not a cache policy: pixels are few
            lanes = self._known[pixel_id, test_event_code] = self._route(
                pixel_id, test_event_code, None
            )
        return lanes

    def _route(
        self, pixel_id: str, test_event_code: str | None, event_json: Json | None
    ) -> tuple[LaneKey, ...]:
        lanes = []
        for name in self.names:
            if name == "gateway":
                if not self._passes(event_json):
                    continue
                lanes.append(LaneKey(name, pixel_id, None))
            else:
                lanes.append(LaneKey(name, pixel_id, test_event_code))
        return tuple(lanes)

    def _passes(self, event_json: Json | None) -> bool:
        """Whether the Gateway filter lets the event through (no filter: every event)."""
        if self._filter is None or event_json is None:
            return True
        return bool(self._filter(orjson.loads(event_json)))

    def request(self, lane: LaneKey, items: Sequence[Pending]) -> Request:
        """The POST for ``items``, all of ``lane``."""
        if lane.destination == "gateway":
            access = self._access_key.get_secret_value() if self._access_key else None
            body = payload.gateway_body(lane, items, access_key=access)
            return Request(gateway_url(self._gateway_base, lane.pixel_id), body)
        token = self._credentials.token_for(lane.pixel_id)
        secret = self._credentials.secret() if token is not None else None
        body = payload.graph_body(
            lane, items,
            access_token=token.get_secret_value() if token else None,
            app_secret=secret.get_secret_value() if secret else None,
            partner_agent=self._partner_agent,
        )  # fmt: skip
        return Request(graph_url(self._graph_base, self._api_version, lane.pixel_id), body)


def load_filter(spec: str | None) -> Filter | None:
    """The Gateway filter hook named ``module:function`` in settings."""
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"CAPI_STREAM_DELIVERER__GATEWAY_FILTER: cannot load {spec}") from exc
    if not callable(func):
        raise ConfigError(f"CAPI_STREAM_DELIVERER__GATEWAY_FILTER: {spec} is not callable")
    return func  # type: ignore[no-any-return]
