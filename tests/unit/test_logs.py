"""librdkafka's log: through structlog, levelled, the same message at most once per interval."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from confluent_kafka import Producer
from structlog.testing import capture_logs

from stream.config import Settings
from stream.logs import RateLimit, librdkafka_logger


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("capi_stream.librdkafka", level, __file__, 1, message, None, None)


FAIL = "FAIL [rdkafka#producer-1] [thrd:127.0.0.1:{port}/bootstrap]: Connect failed (after {ms}ms)"


def test_same_message_passes_once_per_interval_with_its_count() -> None:
    """Copies of one message (digits aside) within the interval are dropped; the first copy
    after it passes and says how many it stood for."""
    clock = FakeClock()
    limit = RateLimit(30.0, clock)
    passed = []
    for i in range(600):  # 20 a second for 30 s: what an unreachable broker produces
        clock.now = i * 0.05
        record = _record(FAIL.format(port=1, ms=i % 7))
        if limit.filter(record):
            passed.append(record)
    clock.now = 30.0
    late = _record(FAIL.format(port=1, ms=0))
    assert limit.filter(late)
    assert len(passed) == 1
    assert late.repeated == 599  # type: ignore[attr-defined]


def test_different_messages_and_levels_are_limited_apart() -> None:
    """Another message, or the same text at another level, is not held back."""
    limit = RateLimit(30.0, FakeClock())
    assert limit.filter(_record("a"))
    assert limit.filter(_record("b"))
    assert limit.filter(_record("a", logging.WARNING))
    assert not limit.filter(_record("a"))


def test_librdkafka_lines_become_structlog_events_at_their_level() -> None:
    """A librdkafka line is a 'librdkafka' event at the line's level, not raw text on stderr."""
    logger = librdkafka_logger()
    assert logger.propagate is False
    with capture_logs() as logs:
        logger.warning("THROTTLE [rdkafka#producer-9] [thrd:x]: unique-%s", "message-1")
    assert logs == [
        {"event": "librdkafka", "log_level": "warning",
         "message": "THROTTLE [rdkafka#producer-9] [thrd:x]: unique-message-1"},
    ]  # fmt: skip


def test_real_client_logs_arrive_levelled_and_limited(capfd: pytest.CaptureFixture[str]) -> None:
    """A real producer pointed at a port that refuses connections, polled for 3 s with fast
    reconnects: librdkafka's FAIL lines (dozens) come out as a couple of structlog events,
    and nothing raw reaches stderr."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        settings = Settings(
            bootstrap_servers=f"127.0.0.1:{sock.getsockname()[1]}",
            kafka={"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 50},
        )
        producer = Producer(settings.producer_config())
        with capture_logs() as logs:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                producer.poll(0.1)
    lines = [e for e in logs if e["event"] == "librdkafka"]
    assert 1 <= len(lines) <= 4, lines
    assert all(e["log_level"] == "error" for e in lines if "FAIL" in e["message"])
    assert "|FAIL|" not in capfd.readouterr().err


def test_json_format_renders_stdlib_loggers_and_warnings_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With JSON logs, a standard-library logger (httpx, asyncio...) and a Python warning are
    one JSON object each, carrying the fields bound at configure time (the worker id)."""
    import json
    import warnings

    from stream.logs import configure, get_logger

    root = logging.getLogger()
    level = root.level
    try:
        configure("info", "json", worker=7)
        get_logger("capi_stream.test").info("ours", n=1)
        logging.getLogger("some.library").warning("theirs %s", "formatted")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library warning", UserWarning, stacklevel=1)
        err = capsys.readouterr().err
    finally:
        configure("info", "console")
        logging.captureWarnings(False)
        root.setLevel(level)
    objects = [json.loads(line) for line in err.splitlines()]
    assert [o["event"] for o in objects[:2]] == ["ours", "theirs formatted"]
    assert objects[1]["logger"] == "some.library"
    assert objects[1]["level"] == "warning"
    assert "a library warning" in objects[2]["event"]
    assert all(o["worker"] == 7 for o in objects)


def test_a_logger_used_before_configure_follows_the_later_configuration(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A module's logger that logged while the level was ``error`` (as during start-up) logs
    ``info`` once configure() says so: the first configuration is not kept for good."""
    from stream.logs import configure, get_logger

    log = get_logger("capi_stream.test_early")
    configure("error", "json")
    log.info("dropped at error level")
    configure("info", "json")
    log.info("kept at info level")
    err = capfd.readouterr().err
    assert "dropped at error level" not in err
    assert "kept at info level" in err
