"""What the simulator answers, independent of the HTTP server that carries it.

Routes::

    POST /{vNN.N}/{pixel_id}/events   the Graph API events edge (docs/capi.md §1)
    POST /capi/{pixel_id}/events      the CAPI Gateway's server endpoint, answers 202 (§6.4)
    GET  /{vNN.N}/dataset_quality?dataset_id=P&fields=web{...}
                                      Meta's Dataset Quality API, answered from what the pixel
                                      received (:mod:`stream.sim.quality`); faulted like the
                                      events edges, token in the query or Authorization header
    GET  /{vNN.N}/{pixel_id}[?fields=id,name]
                                      the pixel (dataset) node: ``capi-stream check``'s probe of
                                      a token, answered like Graph (190 unknown token, 200 no
                                      permission on the pixel, 100/33 unknown pixel); never faulted
    GET  /_sim/healthz                liveness
    GET  /_sim/stats[?pixel_id=P][&ids=1]
    POST /_sim/faults                 a FaultConfig as JSON; DELETE /_sim/faults clears it
    POST /_sim/reset                  forget every recorded event and count

A request to an events edge goes: fault draw (:meth:`SimApp.admit`, in arrival order) →
latency and hangs (the server's part) → :meth:`SimApp.respond`: injected answer, or body,
token, ``appsecret_proof``, pixel permission, Meta's validation and poison rules, record.
Tokens and secrets never appear in an answer or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from stream.core.errors import ConfigError
from stream.sim.config import ANY_PIXEL, FaultConfig, SimConfig
from stream.sim.faults import NO_FAULT, FaultInjector, Plan
from stream.sim.graph import (
    BodyError,
    Response,
    decode_body,
    fault_response,
    fbtrace_id,
    graph_error,
    json_response,
    token_error,
)
from stream.sim.quality import QualityBook, parse_fields, unknown_field
from stream.sim.state import JournalEntry, Recorder, Stats
from stream.sim.validate import Invalid, validate_request

_GRAPH_PATH: Final = re.compile(r"/(v\d+\.\d+)/([^/]+)/events/?")
_GATEWAY_PATH: Final = re.compile(r"/capi/([^/]+)/events/?")
_NODE_PATH: Final = re.compile(r"/(v\d+\.\d+)/([^/]+)/?")
_QUALITY_PATH: Final = re.compile(r"/v\d+\.\d+/dataset_quality/?")
#: The fields of a pixel node the simulator knows (Graph's AdsPixel has many more).
_NODE_FIELDS: Final = ("id", "name")
ADMIN_PREFIX: Final = "/_sim/"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the server read it; header names are lowercase."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Hang:
    """Keep the client waiting ``seconds``, then send ``response`` (None: just close)."""

    seconds: float
    response: Response | None


@dataclass(frozen=True, slots=True)
class _Reset:
    """Drop the connection with a TCP reset and no answer."""


RESET: Final = _Reset()
#: What :meth:`SimApp.respond` tells the server to do.
Outcome = Response | Hang | _Reset


@dataclass(frozen=True, slots=True)
class _Route:
    pixel_id: str
    version: str | None  # None: the Gateway endpoint


def _route(path: str) -> _Route | None:
    graph = _GRAPH_PATH.fullmatch(path)
    if graph is not None:
        return _Route(graph.group(2), graph.group(1))
    gateway = _GATEWAY_PATH.fullmatch(path)
    return _Route(gateway.group(1), None) if gateway is not None else None


def _param(params: Mapping[str, Any], query: Mapping[str, str], name: str) -> str | None:
    # Graph merges query and body parameters; the body wins.
    value = params.get(name)
    if value is None or value == "":
        value = query.get(name)
    return str(value) if value not in (None, "") else None


class SimApp:
    """The simulator's behaviour: routing, auth, validation, faults and the record."""

    def __init__(self, config: SimConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self.recorder = Recorder(clock, journal=config.journal)
        self.faults = FaultInjector(config.faults, clock)
        self.quality = QualityBook()

    def admit(self, request: Request, read_s: float = 0.0) -> Plan:
        """Draw the fate of a request to an events edge; ``read_s`` ago its head was read.

        Admin and unknown paths draw nothing, so they are never faulted and never shift the
        seeded sequence.
        """
        if request.path.startswith(ADMIN_PREFIX):
            return NO_FAULT
        if _route(request.path) is None and _QUALITY_PATH.fullmatch(request.path) is None:
            return NO_FAULT
        return replace(self.faults.draw(), arrived_at=self._clock() - read_s)

    def respond(self, request: Request, plan: Plan) -> Outcome:
        """The answer to ``request``, or how not to answer; made as it arrives (the server
        sends it once the request's latency has passed)."""
        if request.path.startswith(ADMIN_PREFIX):
            return self._admin(request)
        if _QUALITY_PATH.fullmatch(request.path) is not None:
            return self._dataset_quality(request, plan)
        route = _route(request.path)
        node = _NODE_PATH.fullmatch(request.path)
        if route is None and node is not None and request.method == "GET":
            return self._read_pixel(request, node.group(2))
        if route is None:
            return graph_error(
                400, 2500, f"Unknown path components: {request.path}", title="Unknown Path"
            )
        self.recorder.request(route.pixel_id)
        kind = plan.kind
        if kind is None:
            return self._process(request, route, plan)
        self.recorder.fault(route.pixel_id, kind)
        if kind == "short_receipt":
            return self._process(request, route, plan, short=True)
        if kind == "reset":
            return RESET
        if kind == "hang":
            config = self.faults.config
            after = self._process(request, route, plan) if config.hang_mode == "process" else None
            return Hang(config.hang_seconds, after)
        return fault_response(kind, route.pixel_id, self.faults.config)

    def _process(
        self, request: Request, route: _Route, plan: Plan, *, short: bool = False
    ) -> Response:
        if request.method != "POST":
            return graph_error(
                400,
                100,
                f"Unsupported {request.method.lower()} request.",
                error_type="GraphMethodException",
                subcode=33,
            )
        try:
            params = decode_body(request.headers.get("content-type", ""), request.body)
        except BodyError as exc:
            return graph_error(400, 100, f"(#100) {exc}", title="Invalid Request Body")
        data = params.get("data")
        size = len(data) if isinstance(data, list) else 0
        query = dict(parse_qsl(request.query))
        if route.version is not None:
            refusal = self._check_token(params, query, route.pixel_id)
        else:
            refusal = self._check_gateway_key(params, route.pixel_id)
        if refusal is not None:
            self.recorder.reject(route.pixel_id, size)
            return refusal
        verdict = validate_request(
            data,
            self._clock(),
            future_tolerance=self.config.future_tolerance_seconds,
            poison=self.faults.poison,
        )
        if isinstance(verdict, Invalid):
            self.recorder.reject(route.pixel_id, size)
            return self._invalid(verdict)
        test = _param(params, query, "test_event_code") is not None
        if short:
            # Meta does not say which events it did not count; dropping the last ones is as good
            # as any choice, and a client may not assume which (it must re-send them all)
            verdict = verdict[: max(len(verdict) - self.faults.config.short_receipt_missing, 0)]
        self.recorder.accept(route.pixel_id, verdict, test=test)
        if not test:
            self.quality.record(route.pixel_id, verdict, self._clock())
        self._log(route, plan, size, verdict, short=short)
        if route.version is None:
            return json_response(202, {"events_received": len(verdict)})
        trace = fbtrace_id()
        return json_response(
            200,
            {"events_received": len(verdict), "messages": [], "fbtrace_id": trace},
            (("x-fb-trace-id", trace), ("facebook-api-version", route.version)),
        )

    def _log(
        self, route: _Route, plan: Plan, sent: int, events: list[dict[str, Any]], *, short: bool
    ) -> None:
        if not self.config.journal:
            return
        keys = tuple(
            (str(e.get("event_name")), str(e.get("event_id"))) for e in events if e.get("event_id")
        )
        now = self._clock()
        arrived = plan.arrived_at or now
        # the server answers once the request's latency has passed (see server.HttpServer)
        answered = max(now, arrived + plan.delay)
        entry = JournalEntry(route.pixel_id, arrived, answered, sent, keys, short)
        self.recorder.log(entry)

    def _check_token(
        self, params: Mapping[str, Any], query: Mapping[str, str], pixel_id: str | None
    ) -> Response | None:
        """Graph's refusal of the token, its proof or (unless None) its use of ``pixel_id``."""
        token = _param(params, query, "access_token")
        if token is None:
            return graph_error(400, 104, "An access token is required to request this resource.")
        tokens = self.config.tokens
        allowed = tokens.get(token) if tokens else frozenset({ANY_PIXEL})
        if allowed is None:
            return token_error("Invalid OAuth access token - Cannot parse access token")
        secret = self.config.app_secret
        if secret is not None:
            proof = _param(params, query, "appsecret_proof")
            if proof is None:
                return graph_error(
                    400,
                    100,
                    "API calls from the server require an appsecret_proof argument",
                    error_type="GraphMethodException",
                )
            expected = hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(proof.lower(), expected):
                return graph_error(
                    400,
                    100,
                    "Invalid appsecret_proof provided in the API argument",
                    error_type="GraphMethodException",
                )
        if pixel_id is not None and ANY_PIXEL not in allowed and pixel_id not in allowed:
            return _no_permission(pixel_id)
        return None

    def _read_pixel(self, request: Request, pixel_id: str) -> Response:
        """``GET /{version}/{pixel_id}?fields=id,name``: the pixel node, or Graph's refusal.

        Graph answers an id it cannot show (none such, or hidden from this token) with code 100
        subcode 33; the simulator keeps that for a pixel no configured token names, and answers
        a known pixel the token may not use with the permission error of the events edge.
        """
        query = dict(parse_qsl(request.query))
        _token_from_header(request, query)
        if self.config.tokens and not self._pixel_known(pixel_id):
            # the token is checked first: an unknown token learns nothing about pixels
            refusal = self._check_token({}, query, None)
            return refusal or _unknown_object(pixel_id)
        refusal = self._check_token({}, query, pixel_id)
        if refusal is not None:
            return refusal
        wanted = [f.strip() for f in query.get("fields", "id").split(",") if f.strip()]
        unknown = [f for f in wanted if f not in _NODE_FIELDS]
        if unknown:
            return graph_error(
                400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node "
                "type (AdsPixel)", error_type="OAuthException",
            )  # fmt: skip
        node = {"id": pixel_id, "name": f"Simulated pixel {pixel_id}"}
        return json_response(200, {f: node[f] for f in wanted})

    def _dataset_quality(self, request: Request, plan: Plan) -> Outcome:
        """``GET /{version}/dataset_quality``: an injected fault, a refusal, or the numbers."""
        query = dict(parse_qsl(request.query))
        pixel_id = query.get("dataset_id", "")
        self.quality.asked(pixel_id)
        kind = plan.kind
        if kind == "reset":
            return RESET
        if kind == "hang":
            return Hang(self.faults.config.hang_seconds, None)
        if kind is not None and kind != "short_receipt":
            return fault_response(kind, pixel_id, self.faults.config)
        if request.method != "GET":
            return graph_error(400, 100, f"Unsupported {request.method.lower()} request.",
                               error_type="GraphMethodException", subcode=33)  # fmt: skip
        _token_from_header(request, query)
        if not pixel_id:
            return graph_error(400, 100, "(#100) The parameter dataset_id is required")
        refusal = self._check_token({}, query, pixel_id)
        if refusal is not None:
            return refusal
        try:
            fields = parse_fields(query.get("fields", "web"))
        except ValueError as exc:
            return graph_error(400, 100, f"(#100) {exc}")
        unknown = unknown_field(fields, self.quality.known())
        if unknown is not None:
            return graph_error(
                400, 100, f"(#100) Tried accessing nonexisting field ({unknown}) on node type "
                "(AdsPixelCAPIIntegrationQuality)", error_type="OAuthException",
            )  # fmt: skip
        return json_response(200, self.quality.answer(pixel_id, fields))

    def _pixel_known(self, pixel_id: str) -> bool:
        return any(ANY_PIXEL in p or pixel_id in p for p in self.config.tokens.values())

    def _check_gateway_key(self, params: Mapping[str, Any], pixel_id: str) -> Response | None:
        keys = self.config.gateway_keys
        if not keys:
            return None
        allowed = keys.get(str(params.get("accessKey", "")))
        if allowed is None or (ANY_PIXEL not in allowed and pixel_id not in allowed):
            return graph_error(401, 190, "Invalid accessKey for this pixel", title="Unauthorized")
        return None

    def _invalid(self, invalid: Invalid) -> Response:
        if invalid.index is None:
            return graph_error(400, invalid.code, invalid.detail, title=invalid.title)
        named = self.config.report_event_index
        return graph_error(
            400,
            invalid.code,
            "Invalid parameter",
            subcode=invalid.subcode,
            title=invalid.title,
            user_msg=f"Event {invalid.index}: {invalid.detail}" if named else invalid.detail,
            error_data={"event_index": invalid.index} if named else None,
        )

    def _admin(self, request: Request) -> Response:
        route = (request.method, request.path.removeprefix(ADMIN_PREFIX).rstrip("/"))
        if route == ("GET", "healthz"):
            return json_response(200, {"status": "ok"})
        if route == ("GET", "stats"):
            query = dict(parse_qsl(request.query))
            include_ids = query.get("ids", "") in ("1", "true", "yes")
            stats = self.stats(query.get("pixel_id"), include_ids=include_ids)
            body = stats.to_dict(include_ids=include_ids)
            body["pixels"] = self.recorder.pixel_ids()
            return json_response(200, body)
        if route == ("POST", "faults"):
            try:
                plan = FaultConfig.from_dict(orjson.loads(request.body or b"{}"))
            except (ConfigError, orjson.JSONDecodeError, TypeError, AttributeError) as exc:
                return json_response(400, {"error": {"message": str(exc)}})
            self.set_faults(plan)
            return json_response(200, {"ok": True})
        if route == ("DELETE", "faults"):
            self.set_faults(FaultConfig())
            return json_response(200, {"ok": True})
        if route == ("POST", "reset"):
            self.reset()
            return json_response(200, {"ok": True})
        return json_response(404, {"error": {"message": f"no route {route[0]} {request.path}"}})

    def stats(self, pixel_id: str | None = None, *, include_ids: bool = True) -> Stats:
        return self.recorder.stats(pixel_id, include_ids=include_ids)

    def set_faults(self, faults: FaultConfig) -> None:
        self.faults.apply(faults)

    def reset(self) -> None:
        self.recorder.reset()
        self.quality.reset()


def _token_from_header(request: Request, query: dict[str, str]) -> None:
    """Graph also reads the token from ``Authorization: OAuth|Bearer <token>``."""
    if "access_token" not in query:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("oauth", "bearer") and value.strip():
            query["access_token"] = value.strip()


def _no_permission(pixel_id: str) -> Response:
    """Code 200: the token is valid but its user has no access to this pixel (dataset)."""
    return graph_error(
        403,
        200,
        f"(#200) The access token has no permission to send events to dataset {pixel_id}",
        title="Permissions Error",
        user_msg="Add the system user of this token to the dataset.",
    )


def _unknown_object(object_id: str) -> Response:
    """Graph's answer to a GET of an id that does not exist or that the token may not see."""
    return graph_error(
        400,
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read "
        "the Graph API documentation at https://developers.facebook.com/docs/graph-api",
        error_type="GraphMethodException",
        subcode=33,
    )
