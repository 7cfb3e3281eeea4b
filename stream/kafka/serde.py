"""Codecs for the project's three topics, wired to the registry when one is configured."""

from __future__ import annotations

from dataclasses import dataclass

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.envelope import EnrichedCodec
from stream.kafka.registry import Registry


@dataclass(frozen=True, slots=True)
class Codecs:
    """One codec per topic: raw events, enriched events, dead letters.

    ``enriched`` writes version 2 of ``capi_event.avsc`` and reads versions 2 and 1, both in
    version 2's shape (:mod:`stream.core.envelope`), so a backlog from an older normalizer drains.
    """

    raw: AvroCodec
    enriched: EnrichedCodec
    dlq: AvroCodec
    registry: Registry | None = None

    def close(self) -> None:
        """Release the registry connection, if any (codecs keep working on cached schemas)."""
        if self.registry is not None:
            self.registry.close()


def build_codecs(settings: Settings) -> Codecs:
    """Codecs in the configured wire format; in the Confluent format our schemas get registered.

    Registering is idempotent: the registry answers the existing id for the same schema. The
    enriched subject may hold version 1 of ``capi_event.avsc`` already; version 2 is a BACKWARD
    compatible successor (its new fields have defaults), so a registry that checks accepts it.
    """
    fmt = settings.effective_wire_format
    topics = settings.topics
    names = (
        (topics.raw, "conversion_event"),
        (topics.enriched, "capi_event"),
        (topics.dlq, "dead_letter"),
    )
    previous = schemas.load("capi_event.v1")
    if fmt == "schemaless" or settings.schema_registry_url is None:
        return Codecs(
            AvroCodec(schemas.load("conversion_event")),
            EnrichedCodec(schemas.load("capi_event"), previous),
            AvroCodec(schemas.load("dead_letter")),
        )
    registry = Registry(settings.schema_registry_url, settings.schema_registry)
    ids = {name: registry.register(schemas.subject(topic), schemas.load(name))
           for topic, name in names}  # fmt: skip
    return Codecs(
        AvroCodec(schemas.load("conversion_event"), wire_format="confluent",
                  schema_id=ids["conversion_event"], resolver=registry.resolve),
        # a version-1 writer id in a backlog is resolved through the same registry
        EnrichedCodec(schemas.load("capi_event"), previous, wire_format="confluent",
                      schema_id=ids["capi_event"], resolver=registry.resolve),
        AvroCodec(schemas.load("dead_letter"), wire_format="confluent",
                  schema_id=ids["dead_letter"], resolver=registry.resolve),
        registry,
    )  # fmt: skip
