"""What ``capi-stream publish`` tells a person: per-line verdicts, the reject file, the summary.

Every line it prints names fields and reason codes, never a value (values are customer data)::

    line 4: invalid values in: event_time (expected a date-time: ...)
    line 41: purchase_without_currency
    line 121: warning event_time_milliseconds
    line 7: missing_pixel_id (give --pixel-id or set normalizer.default_pixel_id)

``--errors FILE`` writes every refused row (and, in a dry run, every row the normalize stage
would dead-letter) as CSV ``line,field,reason``; a person fixes the export with it and runs
again. In a dry run each verdict code is printed for its first :data:`SHOWN_PER_CODE` lines;
the reject file and the summary count them all.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from stream.core import rejects
from stream.core.errors import ConfigError, EncodeError
from stream.core.row_errors import RowError

SHOWN_LINES = 20
SHOWN_PER_CODE = 50
PIXEL_HINT = "give --pixel-id or set normalizer.default_pixel_id"


class BrokenInput(EncodeError):
    """Raised when the input itself cannot be read on (a line that is not UTF-8)."""

    def __init__(self, line: int, reason: str, text: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(text)


class RunReport:
    """Collects what happened to each line; ``echo`` prints one line (set it to the progress
    display's while one is drawn).

    ``errors``: the reject file to write (opened now, so a path that cannot be written stops
    the command before it reads anything).
    """

    def __init__(self, errors: Path | None = None) -> None:
        self.echo: Callable[[str], None] = _stderr
        self.failed: list[int] = []  # line numbers of rows not published (or not valid)
        self.verdicts: Counter[str] = Counter()  # dry run: enriched or a reason code
        self.warnings: Counter[str] = Counter()
        self.no_pixel = 0  # rows published with no pixel and no default pixel anywhere here
        self._file: IO[str] | None = None
        self._rows: Any = None  # csv's writer (its type is private to _csv)
        self._writing = errors is not None
        self.rejected = 0
        if errors is not None:
            try:
                self._file = errors.open("w", newline="", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"--errors {errors}: cannot write: {exc.strerror or type(exc).__name__}"
                ) from None
            self._rows = csv.writer(self._file)
            self._rows.writerow(rejects.HEADER)

    def refused(self, line: int, error: EncodeError) -> None:
        """A row that was not published (or, in a dry run, is not valid)."""
        self.failed.append(line)
        self.echo(f"line {line}: {error}")
        if isinstance(error, RowError):
            self._reject(*rejects.of_row_error(line, error))
        elif isinstance(error, BrokenInput):
            self._reject(rejects.Reject(line, "", error.reason))
        else:  # the encoder refused it: the schema's fields are named in the message
            self._reject(rejects.Reject(line, "", "does_not_fit_schema"))

    def undelivered(self, line: int, error: str) -> None:
        """A row the broker did not take (``error`` is librdkafka's, not the record's)."""
        self.failed.append(line)
        self.echo(f"line {line}: not delivered: {error}")
        self._reject(rejects.Reject(line, "", "not_delivered"))

    def verdict(self, line: int, outcome: str, warnings: tuple[str, ...]) -> None:
        """Dry run: what the normalize stage would do with a valid row."""
        self.verdicts[outcome] += 1
        if outcome != "enriched":
            self._reject(rejects.of_verdict(line, outcome))
            if self.verdicts[outcome] <= SHOWN_PER_CODE:
                hint = f" ({PIXEL_HINT})" if outcome == "missing_pixel_id" else ""
                self.echo(f"line {line}: {outcome}{hint}")
        for code in warnings:
            self.warnings[code] += 1
            if self.warnings[code] <= SHOWN_PER_CODE:
                self.echo(f"line {line}: warning {code}")

    def _reject(self, *found: rejects.Reject) -> None:
        if self._file is not None:
            self._rows.writerows(r.cells() for r in found)
            self.rejected += len(found)

    def close(self) -> None:
        """Write the reject file out."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- the summary -----------------------------------------------------------------------

    def where(self) -> str:
        """`` (lines 4, 6 and 3 more)`` (or `` (line 4)``) for the failed lines, else nothing."""
        lines = sorted(n for n in self.failed if n)
        if not lines:
            return ""
        shown = ", ".join(map(str, lines[:SHOWN_LINES]))
        more = f" and {len(lines) - SHOWN_LINES} more" if len(lines) > SHOWN_LINES else ""
        return f" ({'line' if len(lines) == 1 else 'lines'} {shown}{more})"

    def dry_run_summary(self, rows: int) -> list[str]:
        """The dry run's last lines: valid rows, the normalize stage's verdicts, warnings."""
        verdicts = ", ".join(f"{code} {n}" for code, n in self.verdicts.most_common())
        lines = [
            f"dry run: {self.verdicts.total()} of {rows} rows valid, {len(self.failed)} failed"
            f"{self.where()}; the normalize stage would now give: {verdicts or 'nothing'}"
        ]
        if self.warnings:
            counted = ", ".join(f"{code} {n}" for code, n in self.warnings.most_common())
            lines.append(f"warnings (the events are still sent): {counted}")
        cut = [c for c, n in (self.verdicts + self.warnings).items() if n > SHOWN_PER_CODE]
        if cut:
            lines.append(
                f"only the first {SHOWN_PER_CODE} lines of {', '.join(sorted(cut))} were shown"
                + ("; the reject file lists all" if self._writing else "; --errors FILE lists all")
            )
        if self.verdicts["missing_pixel_id"]:
            lines.append(f"missing_pixel_id: {PIXEL_HINT}")
        return lines

    def pixel_note(self) -> str | None:
        """After a real run: rows that went out without a pixel and with no default here."""
        if not self.no_pixel:
            return None
        rows = "row has" if self.no_pixel == 1 else "rows have"
        return (
            f"{self.no_pixel} {rows} no pixel_id and no default is configured here: the "
            f"normalize stage dead-letters them as missing_pixel_id unless its "
            f"normalizer.default_pixel_id is set ({PIXEL_HINT})"
        )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
