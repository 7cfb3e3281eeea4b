"""Running the simulator: in a background thread for tests (:class:`Simulator`), or in the
foreground until SIGTERM/SIGINT for ``capi-stream sim`` (:func:`serve`).

Example::

    with Simulator(SimConfig(tokens={"tok": frozenset({"123"})})).start() as sim:
        httpx.post(sim.events_url("123"), json={"data": [...], "access_token": "tok"})
        assert sim.stats("123").accepted == 1
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Final

from stream.core.errors import CapiStreamError
from stream.sim.app import SimApp
from stream.sim.config import FaultConfig, SimConfig
from stream.sim.server import HttpServer, start
from stream.sim.state import JournalEntry, Stats

log = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
DEFAULT_VERSION: Final = "v25.0"
_START_TIMEOUT: Final = 10.0


class SimulatorError(CapiStreamError):
    """Raised when the simulator cannot start (the port is taken) or is used before start."""


class Simulator:
    """The simulator on a loopback port, served from a background thread.

    ``clock`` (seconds since the epoch) drives dedup windows, ``event_time`` checks and outages,
    so a test can move time forward instead of sleeping.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or SimConfig()
        self.app = SimApp(self.config, clock)
        self._host = host
        self._port = port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def start(self) -> Simulator:
        """Bind the port and serve in the background; returns self once requests are accepted."""
        if self._thread is not None:
            raise SimulatorError("the simulator is already started")
        self._thread = threading.Thread(target=self._run, name="capi-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._error is not None:
            self._thread.join(_START_TIMEOUT)
            self._thread = None
            raise SimulatorError(f"the simulator did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to start() in the caller's thread
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        http = HttpServer(self.app)
        server = await start(http, self._host, self._port)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await http.close(server)

    def stop(self) -> None:
        """Close every connection and the port; waits for the server thread to end."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Simulator:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._thread is None:
            raise SimulatorError("the simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``: use it as the Graph API base URL."""
        return f"http://{self._host}:{self.port}"

    def events_url(self, pixel_id: str, version: str = DEFAULT_VERSION) -> str:
        return f"{self.url}/{version}/{pixel_id}/events"

    def gateway_url(self, pixel_id: str) -> str:
        return f"{self.url}/capi/{pixel_id}/events"

    def stats(self, pixel_id: str | None = None) -> Stats:
        """What arrived at ``pixel_id`` (or at all pixels, summed)."""
        return self.app.stats(pixel_id)

    def journal(self) -> list[JournalEntry]:
        """Every request processed so far, when ``SimConfig(journal=True)`` (else empty)."""
        return self.app.recorder.journal()

    def set_faults(self, faults: FaultConfig) -> None:
        """Apply a fault plan now: its outage and its seeded draws start from this moment."""
        self.app.set_faults(faults)

    def clear_faults(self) -> None:
        self.app.set_faults(FaultConfig())

    def set_tokens(self, tokens: Mapping[str, frozenset[str]]) -> None:
        """Replace the token table now: revoke a token, or give it back (a fixed setup)."""
        self.app.config = replace(self.app.config, tokens=dict(tokens))

    def reset(self) -> None:
        """Forget every recorded event and count (the fault plan stays)."""
        self.app.reset()


def serve(
    config: SimConfig | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT (``capi-stream sim``).

    ``on_ready`` gets the base URL once the port is bound (port 0 picks a free one); by default
    it is logged. Tokens and the app secret are never logged.
    """
    asyncio.run(_serve(SimApp(config or SimConfig(), clock), host, port, on_ready))


async def _serve(app: SimApp, host: str, port: int, on_ready: Callable[[str], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    http = HttpServer(app)
    try:
        server = await start(http, host, port)
    except OSError as exc:
        raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    url = f"http://{host}:{server.sockets[0].getsockname()[1]}"
    if on_ready is not None:
        on_ready(url)
    log.info("CAPI simulator listening on %s (%d tokens configured)", url, len(app.config.tokens))
    if not app.config.tokens:
        log.warning(
            "no access token configured: any non-empty token is accepted for any pixel; "
            "give --token TOKEN=PIXEL[,PIXEL] (or TOKEN=*) to check tokens as Graph does"
        )
    try:
        await stopping.wait()
    finally:
        await http.close(server)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
