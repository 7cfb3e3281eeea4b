"""Process-wide set-up of the deliver stage: the consumer's configuration."""

from __future__ import annotations

import socket
from typing import Final

from stream.config import KafkaProps, Settings

#: librdkafka prefetches up to 64 MiB by default; pending events are our memory budget.
PREFETCH_KBYTES: Final = 16384


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
