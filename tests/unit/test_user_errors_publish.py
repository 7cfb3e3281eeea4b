"""publish's report to a person: verdict lines, their cap, the summary and the reject file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.core.csv_map import FieldProblem, RowError
from stream.core.errors import ConfigError
from stream.publish_report import SHOWN_PER_CODE, RunReport


def test_each_code_is_shown_for_its_first_lines_and_counted_in_full(tmp_path: Path) -> None:
    """A file where every row misses its currency prints SHOWN_PER_CODE lines of it, not one
    per row; the summary counts all and says the reject file lists every one."""
    shown: list[str] = []
    report = RunReport(tmp_path / "rejects.csv")
    report.echo = shown.append
    rows = SHOWN_PER_CODE + 10
    for line in range(2, rows + 2):
        report.verdict(line, "purchase_without_currency", ())
    report.verdict(rows + 2, "enriched", ("event_time_milliseconds",))
    report.close()

    assert len(shown) == SHOWN_PER_CODE + 1
    assert shown[0] == "line 2: purchase_without_currency"
    assert shown[-1] == f"line {rows + 2}: warning event_time_milliseconds"
    summary = report.dry_run_summary(rows + 1)
    assert summary[0].endswith(f"purchase_without_currency {rows}, enriched 1")
    assert summary[1] == "warnings (the events are still sent): event_time_milliseconds 1"
    assert summary[2] == (
        f"only the first {SHOWN_PER_CODE} lines of purchase_without_currency were shown; "
        "the reject file lists all"
    )
    lines = (tmp_path / "rejects.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == rows + 1  # the header and every rejected row


def test_refused_rows_become_one_reject_per_field(tmp_path: Path) -> None:
    """A row with two bad fields is two reject lines and one failed line in the summary."""
    report = RunReport(tmp_path / "rejects.csv")
    report.echo = lambda _line: None
    problems = [FieldProblem("event_time", "invalid_value", "a date-time"),
                FieldProblem("custom_data.value", "invalid_value", "an amount")]  # fmt: skip
    report.refused(9, RowError("invalid values in", problems))
    report.close()
    assert report.where() == " (line 9)"
    assert (tmp_path / "rejects.csv").read_text(encoding="utf-8").splitlines() == [
        "line,field,reason", "9,event_time,invalid_value", "9,custom_data.value,invalid_value"
    ]  # fmt: skip


def test_a_reject_file_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    """--errors naming a path in no directory stops the command before it reads its input."""
    with pytest.raises(ConfigError, match=r"^--errors .*: cannot write"):
        RunReport(tmp_path / "no" / "such" / "dir.csv")
