"""The deliver stage's totals since start (the CLI's last log line, the demo's summary)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class DelivererStats:
    """Totals since start."""

    consumed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    short_receipts: int = 0
    skipped: int = 0
    max_pending: int = 0
    # a bounded window of recent produce-to-accept latencies (for summaries), not a history
    latencies_s: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=100_000)
    )
