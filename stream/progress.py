"""A progress line on stderr: bar, count, rate and ETA; plain text, no dependency.

On a terminal the line is redrawn in place (``\\r``) at most ten times a second::

    publish  [#########...............]  38%  12,400 lines  2,310 lines/s  ETA 0:00:07

Elsewhere (a log file, CI) a full line is written at most every ``log_interval_s`` seconds and
once at the end, so logs show progress without thousands of lines. ``total`` may be unknown
(reading stdin): then the line shows the count and rate only. Progress can be measured in one
unit (bytes read) and counted in another (lines): ``update(done, count=...)``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

_BAR_WIDTH = 24
_TTY_INTERVAL_S = 0.1
_RATE_WINDOW_S = 10.0


class Progress:
    """Reports progress of one task; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "records",  # plural: "1 record" is said for a count of one
        stream: TextIO | None = None,
        enabled: bool = True,
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._enabled = enabled
        self._interval = _TTY_INTERVAL_S if self._tty else log_interval_s
        self._clock = clock
        self._start = clock()
        self._last_render = self._start
        self._width = 0  # of the line drawn last, to blank it on a terminal
        self._last_text = ""
        self._samples: deque[tuple[float, int, int]] = deque([(self._start, 0, 0)])
        self.done = 0
        self.count = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, done: int, *, count: int | None = None) -> None:
        """Record progress (absolute): ``done`` of ``total``, ``count`` items so far."""
        self.done = done
        self.count = done if count is None else count
        now = self._clock()
        if self._enabled and now - self._last_render >= self._interval:
            self._render(now, final=False)

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more items done (when done and count are the same unit)."""
        self.update(self.done + n)

    def echo(self, text: str) -> None:
        """Write a message line without tearing the progress line."""
        self._clear()
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._enabled:
            self._render(self._clock(), final=True)
            self._enabled = False

    def line(self, now: float, *, final: bool = False) -> str:
        """The progress text at ``now``; the final line gives the average rate over the run."""
        parts = [self.label]
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * _BAR_WIDTH)
            parts.append(f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {share * 100:3.0f}%")
        rate, done_rate = self._rates(now)
        if final and now > self._start:
            rate = self.count / (now - self._start)
        # "1 record", "2 records": the unit is given in the plural
        one = self.count == 1 and self.unit.endswith("s")
        parts.append(f"{self.count:,} {self.unit[:-1] if one else self.unit}")
        parts.append(f"{rate:,.{0 if rate >= 10 else 1}f} {self.unit}/s")
        if final or not self.total or self.done >= self.total:
            parts.append(f"in {_duration(now - self._start)}")
        elif done_rate > 0:
            parts.append(f"ETA {_duration((self.total - self.done) / done_rate)}")
        return "  ".join(parts)

    def _rates(self, now: float) -> tuple[float, float]:
        # a sliding window, so the rate and ETA follow the current speed, not the average
        self._samples.append((now, self.done, self.count))
        while len(self._samples) > 2 and now - self._samples[1][0] > _RATE_WINDOW_S:
            self._samples.popleft()
        then, done0, count0 = self._samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return 0.0, 0.0
        return (self.count - count0) / elapsed, (self.done - done0) / elapsed

    def _render(self, now: float, *, final: bool) -> None:
        self._last_render = now
        text = self.line(now, final=final)
        if final and not self._tty and text == self._last_text:
            return  # a log already has this very line
        self._last_text = text
        if self._tty:
            pad = " " * max(self._width - len(text), 0)
            self._stream.write(f"\r{text}{pad}" + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def _clear(self) -> None:
        if self._tty and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._width = 0
            self._last_render = 0.0  # redraw on the next update


def _duration(seconds: float) -> str:
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
