"""The stages' collector tuning: start-up objects frozen, gen 0 raised, restored."""

from __future__ import annotations

import gc

from stream.collector import GC_GEN0_THRESHOLD, tune_gc


def test_tune_gc_freezes_raises_gen0_and_restores() -> None:
    """While tuned, start-up objects are frozen and gen 0 waits for 50,000 allocations; the
    returned callable puts the threshold back and unfreezes (a test process runs many stages)."""
    before = gc.get_threshold()
    restore = tune_gc()
    try:
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
