"""The cyclic garbage collector tuned for a stage's steady state (both stages' loops).

After start-up, a stage allocates per record and frees by reference counting: the cyclic
collector finds next to no garbage, yet with CPython's default gen-0 threshold (700 net
allocations of tracked objects) it starts a collection every few dozen records and traverses
every young object, the start-up ones (modules, schemas, settings, clients) included on older
generations' turns. So: move what start-up made out of every collection with ``gc.freeze()``,
and start gen 0 every :data:`GC_GEN0_THRESHOLD` net allocations (a few thousand records); the
cyclic garbage that can wait that long is a few MB.

In the deliver stage every event's objects (its settlement entry and a view of its JSON: two
tracked objects) survive the poll thread's hand-off and live until Meta answers; untuned, the
collector was ~30 % of the deliver path's CPU, finding no garbage. Memory stays bounded by
``deliverer.max_pending`` as before. What the raised threshold does hold longer is cyclic
garbage, and httpx leaves some with every request (about forty objects in reference cycles):
the fewer tracked objects a stage makes per event, the rarer the collections. Those cycles
would keep each sent body (up to ~1 MB) too, so the HTTP sink hands httpx a stream that lets
the body go once sent (:mod:`stream.sinks.http`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Final

#: Net allocations of tracked objects between two gen-0 collections (CPython's default is 700).
GC_GEN0_THRESHOLD: Final = 50_000


def tune_gc(gen0: int = GC_GEN0_THRESHOLD) -> Callable[[], None]:
    """Freeze what exists now and raise gen 0 to ``gen0``; returns what restores both.

    Call it when start-up is over (what exists then lives as long as the stage).
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(gen0, before[1], before[2])

    def restore() -> None:
        # a test process runs many stages: leave its collector as it was
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore
