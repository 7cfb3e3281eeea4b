"""The progress line (stream/progress.py) as a person reads it in a log."""

from __future__ import annotations

import io

from stream.progress import Progress


class _Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_offsets_measure_and_records_count_so_the_line_ends_at_100_percent() -> None:
    """Six offsets holding three records (the rest transaction markers): 100 %, 3 records."""
    out, clock = io.StringIO(), _Clock()
    with Progress("replay", 6, stream=out, log_interval_s=1.0, clock=clock) as bar:
        clock.now += 2
        bar.update(3, count=1)
        clock.now += 2
        bar.update(6, count=3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("replay  [############............]  50%  1 record  ")
    assert lines[-1].startswith("replay  [########################] 100%  3 records")
    assert lines[-1].endswith("in 0:00:04")


def test_a_disabled_line_writes_nothing() -> None:
    """--no-progress: not a byte on the stream."""
    out = io.StringIO()
    with Progress("dlq", 10, stream=out, enabled=False) as bar:
        bar.update(10, count=10)
    assert out.getvalue() == ""
