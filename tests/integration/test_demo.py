"""`capi-stream demo` on the embedded broker: every published record is accounted for."""

from __future__ import annotations

import io
import os

import pytest

from stream.demo import CORRUPT_RECORDS, run_demo, summary
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
