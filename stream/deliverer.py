"""The deliver stage's former module: its names now live in :mod:`stream.deliver`.

Kept so that existing imports work while callers move to :mod:`stream.deliver.stage`.
"""

from __future__ import annotations

from stream.core.delivery_rules import EXPIRY_MARGIN_S
from stream.deliver.process import GC_GEN0_THRESHOLD, consumer_config, tune_gc
from stream.deliver.stage import Deliverer
from stream.deliver.stats import DelivererStats
from stream.kafka.poll_bridge import explain_fencing as _explain_fencing

__all__ = [
    "EXPIRY_MARGIN_S", "GC_GEN0_THRESHOLD", "Deliverer", "DelivererStats", "_explain_fencing",
    "consumer_config", "tune_gc",
]  # fmt: skip
