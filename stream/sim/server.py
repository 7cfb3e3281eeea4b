"""A small HTTP/1.1 keep-alive server on asyncio streams that carries :class:`SimApp`.

Why not ``http.server``: a hang fault must hold one connection for seconds without holding a
thread, and a reset must end a connection with a TCP RST; both are one line on asyncio. Each
connection is a task, so hung requests never block the others, and stopping cancels them all.
Parsing is what the deliverer's HTTP client sends: ``Content-Length`` or chunked bodies,
``Expect: 100-continue``, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import time
from http import HTTPStatus
from typing import Final

from stream.sim.app import Hang, Request, SimApp
from stream.sim.graph import BodyError, Response, decode_body

#: ``capi-stream sim --access-log``: one line per request, never a token (see :func:`access_line`).
access_log = logging.getLogger("capi_stream.sim.access")

#: StreamReader buffer: large enough that a 1,000-event body (~0.5 MB) is read without the
#: reader pausing and resuming the socket dozens of times.
STREAM_LIMIT: Final = 4 * 1024 * 1024
_MAX_HEAD: Final = 64 * 1024
_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}
#: ``/v25.0/PIXEL/events`` or the Gateway's ``/capi/PIXEL/events``: the pixel of a request.
_PIXEL_PATH: Final = re.compile(r"/(?:v\d+\.\d+|capi)/([^/]+)/events")


class _BadRequest(Exception):
    """Raised when the bytes on a connection are not an HTTP/1.x request we can serve."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


def _encode(response: Response, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            length = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequest(400, "bad chunk size") from exc
        if length == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        size += length
        if size > limit:
            raise _BadRequest(413, "body too large")
        parts.append(await reader.readexactly(length))
        await reader.readexactly(2)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the kernel sends RST instead of FIN: a "connection reset"."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class HttpServer:
    """Serves :class:`SimApp` on every connection handed to :meth:`handle`."""

    def __init__(self, app: SimApp) -> None:
        self.app = app
        self._connections: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``asyncio.start_server`` callback: serve requests until the connection ends."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except _BadRequest as exc:
            with contextlib.suppress(ConnectionError):
                body = str(exc).encode()
                writer.write(_encode(Response(exc.status, body, (), "text/plain"), False))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away mid-request: nothing to answer
        except asyncio.CancelledError:
            # Stopping the server cancels this top-level task. Ending it normally matters on
            # Python 3.11, whose start_server callback calls task.exception() on a cancelled
            # task and logs a spurious traceback.
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        app = self.app
        max_body = app.config.max_body_bytes
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    raise _BadRequest(400, "incomplete request head") from exc
                return  # the client closed an idle keep-alive connection
            began = time.monotonic()  # the latency counts from here: see _answer
            if len(head) > _MAX_HEAD:
                raise _BadRequest(431, "request head too large")
            request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
            try:
                method, target, version = request_line.split(" ", 2)
            except ValueError as exc:
                raise _BadRequest(400, "bad request line") from exc
            headers: dict[str, str] = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader, max_body)
            else:
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError as exc:
                    raise _BadRequest(400, "bad Content-Length") from exc
                if length > max_body:
                    raise _BadRequest(413, "body too large")
                body = await reader.readexactly(length) if length else b""
            connection = headers.get("connection", "").lower()
            keep_alive = (
                connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
            )
            path, _, query = target.partition("?")
            request = Request(method.upper(), path, query, headers, body)
            if not await self._answer(request, writer, keep_alive, began) or not keep_alive:
                return

    async def _answer(
        self, request: Request, writer: asyncio.StreamWriter, keep_alive: bool, began: float
    ) -> bool:
        """Answer one request; False when the connection must end (a hang or a reset).

        ``began`` is when its head was read. The latency counts from there and the work is part
        of it, as on a server: process at once, then wait what is left. Waiting first and then
        working (or counting from the end of the body) would add the work of every request
        ahead on this one thread to a request's latency, so the last of a burst of large
        requests would answer far later than the latency asked for.
        """
        plan = self.app.admit(request, time.monotonic() - began)
        outcome = self.app.respond(request, plan)
        left = plan.delay - (time.monotonic() - began)
        if left > 0:
            await asyncio.sleep(left)
        if isinstance(outcome, Response):
            writer.write(_encode(outcome, keep_alive))
            await writer.drain()
            self._logged(request, str(outcome.status), began)
            return True
        if isinstance(outcome, Hang):
            await asyncio.sleep(outcome.seconds)
            if outcome.response is not None:
                writer.write(_encode(outcome.response, False))
                await writer.drain()
            answer = "hang" if outcome.response is None else f"{outcome.response.status} (hang)"
            self._logged(request, answer, began)
            return False
        _reset(writer)
        self._logged(request, "reset", began)
        return False

    def _logged(self, request: Request, status: str, began: float) -> None:
        if self.app.config.access_log:
            access_log.info(access_line(request, status, time.monotonic() - began))

    async def close(self, server: asyncio.Server) -> None:
        """Stop listening, end every connection (hung ones too) and let their sockets close."""
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        # transports finish closing on the next loop iterations; run them before the loop ends
        for _ in range(3):
            await asyncio.sleep(0)


def access_line(request: Request, status: str, seconds: float) -> str:
    """``POST /v25.0/123/events pixel=123 events=1000 status=200 ms=52``.

    The path only: the query string may carry ``access_token``, and the body (read only for its
    event count) holds the token and customer data.
    """
    match = _PIXEL_PATH.fullmatch(request.path)
    pixel = match.group(1) if match is not None else "-"
    events = "-"
    if match is not None and request.body:
        try:
            data = decode_body(request.headers.get("content-type", ""), request.body).get("data")
        except BodyError:
            data = None
        events = str(len(data)) if isinstance(data, list) else "-"
    return (f"{request.method} {request.path} pixel={pixel} events={events} status={status} "
            f"ms={seconds * 1000:.0f}")  # fmt: skip


async def start(server: HttpServer, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` (0: a free port) with the stream limit the bodies need."""
    return await asyncio.start_server(
        server.handle, host, port, limit=STREAM_LIMIT, backlog=256, reuse_address=True
    )
