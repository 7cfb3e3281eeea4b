"""librdkafka's log: through structlog, levelled, the same message at most once per interval."""

from __future__ import annotations

import logging

from structlog.testing import capture_logs

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
