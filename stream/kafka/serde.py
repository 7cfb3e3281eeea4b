"""Codecs for the project's three topics, wired to the registry when one is configured."""

from __future__ import annotations

from dataclasses import dataclass

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.kafka.registry import Registry


@dataclass(frozen=True, slots=True)
class Codecs:
    """One codec per topic: raw events, enriched events, dead letters."""

    raw: AvroCodec
    enriched: AvroCodec
    dlq: AvroCodec
    registry: Registry | None = None

    def close(self) -> None:
        """Release the registry connection, if any (codecs keep working on cached schemas)."""
        if self.registry is not None:
            self.registry.close()


def build_codecs(settings: Settings) -> Codecs:
    """Codecs in the configured wire format; in the Confluent format our schemas get registered.

    Registering is idempotent: the registry answers the existing id for the same schema.
    """
    fmt = settings.effective_wire_format
    topics = settings.topics
    names = (
        (topics.raw, "conversion_event"),
        (topics.enriched, "capi_event"),
        (topics.dlq, "dead_letter"),
    )
    if fmt == "schemaless" or settings.schema_registry_url is None:
        raw, enriched, dlq = (
            AvroCodec(schemas.load(name), wire_format="schemaless") for _, name in names
        )
        return Codecs(raw, enriched, dlq)
    registry = Registry(settings.schema_registry_url)
    raw, enriched, dlq = (
        AvroCodec(
            schemas.load(name),
            wire_format="confluent",
            schema_id=registry.register(schemas.subject(topic), schemas.load(name)),
            resolver=registry.resolve,
        )
        for topic, name in names
    )
    return Codecs(raw, enriched, dlq, registry)
