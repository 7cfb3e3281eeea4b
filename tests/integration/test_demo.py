"""`capi-stream demo` on the embedded broker: every published record is accounted for."""

from __future__ import annotations

import io
import os

import pytest

from stream.demo import CORRUPT_RECORDS, DemoResult, run_demo, summary
from stream.sample import INVALID_KINDS

pytestmark = pytest.mark.integration


def test_demo_accounts_for_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Published = enriched + dead-lettered; enriched = delivered + rejected by Meta."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)  # the demo's own embedded broker
    out = io.StringIO()
    result = run_demo(events=1200, seed=7, out=out)
    normalize_dead = sum(n for r, n in result.dead_by_reason.items() if r != "rejected_by_meta")
    assert result.published == 1200 + CORRUPT_RECORDS
    assert result.enriched + normalize_dead == result.published
    assert result.delivered + result.dead_by_reason.get("rejected_by_meta", 0) == result.enriched
    assert result.accepted_by_simulator == result.delivered
    assert set(INVALID_KINDS) <= set(result.dead_by_reason)
    assert result.dead_by_reason.get("rejected_by_meta") == 1  # the poisoned event, isolated
    text = summary(result)
    assert "delivered" in text
    assert "published 1203 raw events" in out.getvalue()
    assert os.environ.get("KAFKA_BOOTSTRAP") is None
    _shows_its_waits_progress_and_faults(out.getvalue().splitlines(), result)


def _shows_its_waits_progress_and_faults(lines: list[str], result: DemoResult) -> None:
    """What a person reads: the wait for the groups named, the progress line drawn to 100 %,
    and the injected faults counted in one summary line (not a warning per retry)."""
    waiting = lines.index(
        "waiting for the consumer groups to join (the normalize and deliver stages) ..."
    )
    assert any(line.startswith("normalize stage joined its group") for line in lines[waiting:])
    assert any(line.startswith("deliver stage joined its group") for line in lines[waiting:])
    final = [line for line in lines if line.startswith("demo  [")][-1]
    assert "100%" in final
    assert f"{result.published:,} events" in final
    [faults] = [line for line in summary(result).splitlines() if "injected faults" in line]
    total = sum(result.faults.values())
    assert faults.split()[2] == (str(total) if total else "none")
    assert all(f"{kind} {n}" in faults for kind, n in result.faults.items())
