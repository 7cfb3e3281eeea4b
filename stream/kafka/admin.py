"""Topic administration: create the project's topics, idempotently."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.config import Settings
from stream.kafka.errors import translate


@dataclass(frozen=True, slots=True)
class TopicResult:
    """What happened to one topic: ``created`` or ``exists``."""

    name: str
    outcome: str


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Raw, enriched and dead-letter topics (plus the compacted ledger when enabled)."""
    t = settings.topics

    def spec(name: str, config: dict[str, str]) -> NewTopic:
        return NewTopic(
            name, num_partitions=t.partitions, replication_factor=t.replication_factor,
            config=config,
        )  # fmt: skip

    specs = [
        spec(t.raw, {"retention.ms": str(t.retention_ms)}),
        spec(t.enriched, {"retention.ms": str(t.retention_ms)}),
        spec(t.dlq, {"retention.ms": str(t.dlq_retention_ms)}),
    ]
    if settings.deliverer.ledger:
        specs.append(spec(t.ledger, {"cleanup.policy": "compact"}))
    return specs


def create_topics(settings: Settings, timeout_s: float = 30.0) -> list[TopicResult]:
    """Create every topic that does not exist; existing topics are left as they are."""
    admin = AdminClient(settings.admin_config())
    futures = admin.create_topics(topic_specs(settings), request_timeout=timeout_s)
    results = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            results.append(TopicResult(name, "created"))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, RdKafkaError) and err.code() == RdKafkaError.TOPIC_ALREADY_EXISTS:
                results.append(TopicResult(name, "exists"))
            else:
                raise translate(exc, f"creating topic {name}") from exc
    return results
