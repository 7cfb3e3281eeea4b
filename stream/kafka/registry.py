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

#: The registry's own code for "no schema has this id" (Confluent's API; Apicurio answers it too).
SCHEMA_NOT_FOUND = 40403


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
        except Exception as exc:
            # the client's transport errors (refused, reset, timeout): a restart tries again
            raise KafkaError(
                f"registering {subject}: registry unreachable ({type(exc).__name__})",
                retriable=True,
            ) from exc

    def _resolve(self, schema_id: int) -> Mapping[str, Any]:
        """The writer schema of ``schema_id``; :class:`SchemaNotFoundError` only when the
        registry itself says no schema has the id.

        Any other failure says nothing about the record, so it must not dead-letter it: a
        registry restarting (5xx), a proxy's page (a 404 without the registry's code), expired
        credentials, a refused connection. Those raise a retriable :class:`KafkaError`: the
        stage re-reads the batch, and exits for its supervisor if the registry stays away.
        """
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 and exc.error_code == SCHEMA_NOT_FOUND:
                raise SchemaNotFoundError(schema_id) from exc
            raise KafkaError(
                f"schema id {schema_id}: registry answered HTTP {exc.http_status_code}",
                retriable=True,
            ) from exc
        except Exception as exc:
            raise KafkaError(
                f"schema id {schema_id}: registry unreachable ({type(exc).__name__})",
                retriable=True,
            ) from exc
        data: Mapping[str, Any] = json.loads(schema.schema_str or "null")
        return data
