"""Schema Registry access (Confluent API; Apicurio's ``/apis/ccompat/v7`` works the same)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import warnings
from collections.abc import Mapping
from typing import Any

with warnings.catch_warnings():
    # confluent-kafka's registry client imports authlib's httpx integration, which warns
    # "deprecated" at import time (AuthlibDeprecationWarning, not a DeprecationWarning subclass);
    # the warning is about their dependency, not our use, and printed on every command's start.
    # authlib installs an "always" filter for it when first imported, which would win over ours:
    # import it first, then ignore
    with contextlib.suppress(ImportError):
        importlib.import_module("authlib.deprecate")
    warnings.simplefilter("ignore")
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

from stream.core.codec import SchemaNotFoundError
from stream.core.errors import KafkaError


class Registry:
    """Registers our schemas and resolves writer schema ids, caching both.

    ``conf`` is the client's own configuration (setting ``schema_registry``: basic auth, bearer
    tokens, TLS), passed through unchanged; the client rejects a property it does not know.
    """

    def __init__(self, url: str, conf: Mapping[str, Any] | None = None) -> None:
        self._client = SchemaRegistryClient({**(conf or {}), "url": url})
        self.resolve = functools.cache(self._resolve)

    def close(self) -> None:
        """Close the registry client's HTTP connections."""
        self._client.close()

    def subjects(self) -> list[str]:
        """The registry's subjects: one authenticated read (``capi-stream check``'s probe)."""
        try:
            return list(self._client.get_subjects())
        except SchemaRegistryError as exc:
            raise KafkaError(
                f"listing subjects: HTTP {exc.http_status_code}: {exc.error_message}"
            ) from exc
        except Exception as exc:
            raise KafkaError(f"listing subjects: {type(exc).__name__}") from exc

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its id."""
        try:
            return int(self._client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))
        except SchemaRegistryError as exc:
            raise KafkaError(f"registering {subject}: HTTP {exc.http_status_code}") from exc

    def _resolve(self, schema_id: int) -> Mapping[str, Any]:
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaNotFoundError(schema_id) from exc
            raise KafkaError(f"schema id {schema_id}: HTTP {exc.http_status_code}") from exc
        data: Mapping[str, Any] = json.loads(schema.schema_str or "null")
        return data
