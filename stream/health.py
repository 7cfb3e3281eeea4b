"""The health and metrics endpoint of a stage process: one small HTTP server in a thread.

Routes (GET and HEAD; any query string is ignored)::

    /metrics   200, the Prometheus text (OpenMetrics when the scraper asks for it)
    /healthz   200 while ``alive()`` is true, else 503: restart me
    /readyz    200 while ``ready()`` is true, else 503: do not count on me (partitions not
               assigned yet, or a lane halted by a setup error); the 503 body names each
               halted pixel and Meta's error when the stage reports its status
    /status    200, JSON: the stage's lanes (state, since, pending, in flight, oldest event
               age, last success, last error with Meta's code, subcode, message, fbtrace_id;
               see :mod:`stream.core.status`); 404 when the stage reports none
    anything   404

A check that raises answers 503 instead of failing the request: a probe must get an answer, and a
flapping answer is better evidence than a dropped connection. Access lines are not logged: a
scraper every few seconds would drown the stage's own log.

With ``--workers N`` every worker is its own process with its own registry, so each serves its
own port: :func:`worker_port` gives worker ``i`` the port ``metrics_port + i``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

import orjson

from stream.core.errors import ConfigError
from stream.core.status import halted_lines
from stream.logs import get_logger
from stream.metrics import PrometheusSensor

log = get_logger("capi_stream.health")

#: Every interface, as Prometheus exporters listen: the scraper is usually on another host.
ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - serves only metrics and probes, no data


def worker_port(base: int | None, worker: int) -> int | None:
    """The port of worker ``worker`` when the first one is ``base`` (None: no server; 0: any)."""
    if base is None or base == 0:
        return base
    return base + worker


def _always() -> bool:
    return True


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    >>> with HealthServer(0, sensor, ready=stage.ready, host="127.0.0.1") as server:
    ...     httpx.get(f"{server.url}/readyz").status_code
    503
    """

    def __init__(
        self,
        port: int,
        sensor: PrometheusSensor | None = None,
        ready: Callable[[], bool] = _always,
        *,
        alive: Callable[[], bool] = _always,
        status: Callable[[], Mapping[str, Any]] | None = None,
        host: str = ALL_INTERFACES,
    ) -> None:
        self.sensor = sensor
        self.ready = ready
        self.alive = alive
        self.status = status
        self._host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HealthServer:
        """Bind the port and serve in the background; returns self.

        Raises :class:`~stream.core.errors.ConfigError` when the port cannot be bound (taken).
        """
        if self._server is not None:
            return self
        try:
            server = ThreadingHTTPServer((self._host, self._requested_port), _handler_for(self))
        except OSError as exc:
            raise ConfigError(
                f"CAPI_STREAM_OBSERVABILITY__METRICS_PORT: cannot listen on "
                f"{self._host}:{self._requested_port}: {exc.strerror or type(exc).__name__}"
            ) from exc
        server.daemon_threads = True  # a scrape in progress must not hold up the stage's exit
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="capi-health",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("health server listening", port=self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the port; waits for the server thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when asked for port 0)."""
        if self._server is None:
            raise RuntimeError("the health server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``, with the loopback address when bound to every interface."""
        host = "127.0.0.1" if self._host in (ALL_INTERFACES, "") else self._host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- answering (on the server's request threads) -----------------------------------------

    def answer(self, path: str, accept: str | None) -> tuple[int, str, bytes]:
        """Status, content type and body for ``path``."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route == "/metrics":
            if self.sensor is None:
                return 404, _TEXT, b"no metrics in this process\n"
            try:
                body, content_type = self.sensor.render(accept)
            except Exception as exc:  # noqa: BLE001 - a scrape must get an answer
                log.warning("metrics rendering failed", error=type(exc).__name__)
                return 500, _TEXT, b"metrics unavailable\n"
            return 200, content_type, body
        if route == "/healthz":
            return _probe(self.alive, b"alive\n", b"not alive\n")
        if route == "/readyz":
            code, content_type, body = _probe(self.ready, b"ready\n", b"not ready\n")
            if code != 200 and (doc := self._status()) is not None:
                body += "".join(f"{line}\n" for line in halted_lines(doc)).encode()
            return code, content_type, body
        if route == "/status":
            doc = self._status()
            if doc is None:
                return 404, _TEXT, b"this stage reports no status\n"
            return 200, _JSON, orjson.dumps(doc)
        return 404, _TEXT, b"not found: try /metrics, /healthz, /readyz or /status\n"

    def _status(self) -> Mapping[str, Any] | None:
        if self.status is None:
            return None
        try:
            return self.status()
        except Exception as exc:  # noqa: BLE001 - a probe must get an answer
            log.warning("status failed", error=type(exc).__name__)
            return None


_TEXT: Final = "text/plain; charset=utf-8"
_JSON: Final = "application/json"


def _probe(check: Callable[[], bool], yes: bytes, no: bytes) -> tuple[int, str, bytes]:
    try:
        ok = bool(check())
    except Exception as exc:  # noqa: BLE001 - an unanswerable check is a failing check
        log.warning("health check failed", error=type(exc).__name__)
        ok = False
    return (200, _TEXT, yes) if ok else (503, _TEXT, no)


def _handler_for(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "capi-stream"
        sys_version = ""

        def do_GET(self) -> None:
            self._respond(with_body=True)

        def do_HEAD(self) -> None:
            self._respond(with_body=False)

        def _respond(self, *, with_body: bool) -> None:
            status, content_type, body = owner.answer(self.path, self.headers.get("Accept"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """No access log (see the module docstring)."""

    return Handler
