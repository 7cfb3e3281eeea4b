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
    _counts_match_keys_of_every_enriched_event(text, result)


def _counts_match_keys_of_every_enriched_event(text: str, result: DemoResult) -> None:
    """The summary's match-key lines cover every enriched event once, per pixel, with the
    local score named as an estimate."""
    assert "match keys          per pixel (local score: an estimate, not Meta's EMQ)" in text
    assert result.match_keys
    counted = 0
    for line in result.match_keys:
        assert line.startswith("pixel ")
        assert "local score" in line
        assert "em " in line
        assert f"    {line}" in text
        counted += int(line.split(": ", 1)[1].split(" events", 1)[0].replace(",", ""))
    assert counted == result.enriched


def test_demo_runs_on_the_cluster_it_is_given(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo --bootstrap`` (here the suite's broker) starts no broker of its own."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    out = io.StringIO()
    result = run_demo(events=200, seed=3, out=out, bootstrap=kafka_bootstrap)
    printed = out.getvalue()
    assert "starting the embedded broker" not in printed
    assert f"broker {kafka_bootstrap} |" in printed
    assert result.published == 200 + CORRUPT_RECORDS
    assert result.delivered + result.dead_by_reason.get("rejected_by_meta", 0) == result.enriched


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
