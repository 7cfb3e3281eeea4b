"""Structured logs: one JSON object per line on stderr (structlog), or console lines for people.

Log calls pass counts, coordinates, reason codes and ids, never event content. As a second line
of defence the :func:`redact` processor drops any field whose name says it holds a secret.

librdkafka's own log reaches us through :func:`librdkafka_logger` (every client's ``logger``
setting, see ``Settings.*_config``): each line becomes a ``librdkafka`` event at its level, and
the same message (digits aside: a retry counter or a broker's port does not make it new) is
let through at most once per :data:`LIBRDKAFKA_REPEAT_S`, with the number of copies it stood for.
An unreachable broker thus costs one line per half minute, not twenty a second.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import orjson
import structlog

_SECRET_WORDS = ("token", "secret", "password", "access_key", "accesskey", "authorization")


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any field named like a secret (``access_token=…``) with stars."""
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = "**********"
    return event_dict


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was configured
    (a test harness or a daemonizer may swap and close the stream in between)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Static:
    """Adds fixed fields (``worker=2``) to every line, unless the call names them itself.

    Bound at configure time rather than in context variables: those do not reach threads
    started later (the health server, librdkafka's log callbacks, the sender's loop).
    """

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in self.fields.items():
            event_dict.setdefault(key, value)
        return event_dict


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler :func:`configure` installs (and replaces on the next call)."""


_FORMAT: list[str] = []  # the format configure() last set up; empty: never configured
_OWN_PROCESS: list[bool] = []  # [True] once the CLI said it is the process's entry point


def configure(level: str = "info", fmt: str = "json", **fields: Any) -> None:
    """Set up structlog, and route the standard library's logging through the same renderer.

    Every line on stderr then has one shape: with ``fmt="json"`` each is one JSON object,
    whether it came from structlog, a standard-library logger (httpx, asyncio, ...), a Python
    warning or librdkafka. ``fields`` go on every line (a worker passes ``worker=i``).
    """
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _Static(fields),
        redact,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # one write per line (print() writes the newline apart): the workers of --workers N
        # share the supervisor's stderr, and separate writes interleave their lines
        logger_factory=structlog.WriteLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        # not cached: a module's logger used before configure() (while settings load) would
        # keep that first level and format for good; the stages log per batch, never per event
        cache_logger_on_first_use=False,
    )
    handler = _OurHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # a library's warning becomes a log line, not raw text. Off first: captureWarnings(True)
    # does nothing while an earlier capture is on, and the showwarning it installed may have
    # been replaced since (by a warnings.catch_warnings, e.g. a test runner's)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    if fmt == "json" and _OWN_PROCESS:
        # a crash's traceback too: one JSON line, not thirty raw ones (only in a process the CLI
        # owns: a test runner in the same process keeps its own hooks)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    _FORMAT[:] = [fmt]


def own_process() -> None:
    """Called by the CLI when it is the process's entry point: :func:`configure` may then
    route uncaught exceptions (the process's and its threads') through the log. A test that
    calls the CLI in its own process keeps plain error lines and its runner's hooks."""
    _OWN_PROCESS[:] = [True]


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("capi_stream").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("capi_stream").critical(
        "uncaught exception in thread %s", name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
    )  # fmt: skip


def json_configured() -> bool:
    """True once :func:`configure` set up JSON lines in a process the CLI owns (see
    :func:`own_process`): a failed command's last line is then JSON too."""
    return _FORMAT == ["json"] and bool(_OWN_PROCESS)


def get_logger(name: str) -> Any:
    """A bound structlog logger named ``name``."""
    return structlog.get_logger(name)


#: The same librdkafka message is logged at most once per this many seconds.
LIBRDKAFKA_REPEAT_S = 30.0

_LIBRDKAFKA = "capi_stream.librdkafka"


class RateLimit(logging.Filter):
    """Lets the same message through at most once per ``interval_s``; counts the rest.

    The first copy passes; copies within the interval are dropped and counted; the next copy
    after it passes with ``repeated=<dropped count>`` attached.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}  # key -> (passed at, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        """True to log ``record`` (with ``record.repeated`` set), False to drop it."""
        key = (record.levelno, re.sub(r"\d+", "#", record.getMessage()))
        now = self._clock()
        with self._lock:
            passed_at, dropped = self._seen.get(key, (None, 0))
            if passed_at is not None and now - passed_at < self.interval_s:
                self._seen[key] = (passed_at, dropped + 1)
                return False
            if len(self._seen) > 1000:  # bound the memory of distinct messages
                self._seen.clear()
            self._seen[key] = (now, 0)
        record.repeated = dropped
        return True


class _ToStructlog(logging.Handler):
    """Hands each standard-library record to structlog, keeping its level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"message": record.getMessage()}
            repeated = getattr(record, "repeated", 0)
            if repeated:
                fields["repeated"] = repeated
            structlog.get_logger(record.name).log(record.levelno, "librdkafka", **fields)
        except Exception:  # noqa: BLE001 - a log line must never break a client's poll
            self.handleError(record)


def librdkafka_logger() -> logging.Logger:
    """The logger every librdkafka client gets (its ``logger`` setting); built once."""
    logger = logging.getLogger(_LIBRDKAFKA)
    if not logger.handlers:
        logger.propagate = False  # through structlog only, never the root's raw handler
        handler = _ToStructlog()
        handler.addFilter(RateLimit(LIBRDKAFKA_REPEAT_S))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)  # librdkafka decides what it logs (its "debug" setting)
    return logger
