"""The one place librdkafka's errors become ours (STYLE point 6)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from stream.core.errors import KafkaError


def translate(exc: KafkaException, doing: str) -> KafkaError:
    """Our :class:`KafkaError` for a librdkafka exception, with its retriable/fatal verdict."""
    err: Any = exc.args[0] if exc.args else None
    if isinstance(err, RdKafkaError):
        return KafkaError(
            f"{doing}: {err.name()}: {err.str()}",
            retriable=bool(err.retriable()),
            fatal=bool(err.fatal()),
            abortable=bool(err.txn_requires_abort()),
        )
    return KafkaError(f"{doing}: {exc}")


def check(err: RdKafkaError | None, doing: str) -> None:
    """Raise our error if a callback or result carries one."""
    if err is not None:
        raise KafkaError(
            f"{doing}: {err.name()}: {err.str()}",
            retriable=bool(err.retriable()),
            fatal=bool(err.fatal()),
        )
