"""Process-wide set-up of the deliver stage: the consumer's configuration and the GC tuning."""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable
from typing import Final

from stream.config import KafkaProps, Settings

#: librdkafka prefetches up to 64 MiB by default; pending events are our memory budget.
PREFETCH_KBYTES: Final = 16384
#: Net allocations of tracked objects between two gen-0 collections (CPython's default is 700).
GC_GEN0_THRESHOLD: Final = 50_000


def tune_gc() -> Callable[[], None]:
    """Tune the cyclic garbage collector for the stage; returns what restores the defaults.

    Every event's objects (its record, decoded envelope, pending event: ~10 tracked containers)
    survive the poll thread's hand-off and live until Meta answers. With the default gen-0
    threshold (700 net allocations) a collection starts every ~70 events and traverses all the
    young ones, finding no garbage: reference counting frees what the stage drops. That was
    ~30 % of the deliver path's CPU. So: move what start-up made (modules, settings, clients;
    never garbage) out of every collection with ``gc.freeze()``, and start gen 0 every
    ``GC_GEN0_THRESHOLD`` net allocations, a few thousand events; the cyclic garbage that can wait
    that long is a few MB. Memory stays bounded by ``max_pending`` as before.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, before[1], before[2])

    def restore() -> None:
        # a test process runs many stages: leave its collector as it was
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore


def consumer_config(settings: Settings, worker: int, host: str | None = None) -> KafkaProps:
    """The deliverer's librdkafka consumer config, with its static ``group.instance.id``.

    With ``deliverer.static_membership`` the member of worker slot ``worker`` is
    ``"{group_id}-{host}-{worker}"``, or ``"{group_instance_id}-{worker}"`` when
    ``deliverer.group_instance_id`` is set (e.g. a StatefulSet pod's name). The host name keeps
    slot 0 of two hosts (or of two ``docker compose --scale`` replicas) apart. A restarted worker
    takes its slot's partitions back without a rebalance and without waiting out
    ``session.timeout.ms`` for its dead predecessor. A ``group.instance.id`` in the passthrough
    settings (``kafka`` or ``consumer``) wins, as every passthrough property does. Two live
    processes must never share one: the broker fences the older (a fatal error that stops it).
    """
    d = settings.deliverer
    extra: dict[str, str | int | float | bool] = {"queued.max.messages.kbytes": PREFETCH_KBYTES}
    passthrough = {**settings.kafka, **settings.consumer}
    if d.static_membership and "group.instance.id" not in passthrough:
        prefix = d.group_instance_id or f"{d.group_id}-{host or socket.gethostname()}"
        extra["group.instance.id"] = f"{prefix}-{worker}"
    return settings.consumer_config(d.group_id, **extra)
