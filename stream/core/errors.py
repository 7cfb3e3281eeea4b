"""The exception tree of capi-stream.

Every error the project raises on purpose derives from :class:`CapiStreamError`, so the CLI
maps one root to a message and an exit code::

    CapiStreamError
    ├── ConfigError            invalid settings; the CLI exits 2 before anything connects
    ├── DecodeError            bytes that are not a record of a known schema (keeps the bytes)
    ├── EncodeError            a record that does not fit its schema
    ├── KafkaError             a Kafka operation failed (stream.kafka translates librdkafka's)
    ├── DeliveryError          a request to the Graph API or a Gateway failed (stream.sinks)
    └── OffsetStateError       an impossible offset bookkeeping state (a bug, never data)

Errors carry evidence but never secrets and never raw customer data: a decode error keeps the
raw bytes for the dead-letter topic, and its text names only coordinates and sizes.
"""

from __future__ import annotations

from dataclasses import dataclass


class CapiStreamError(Exception):
    """Root of every error capi-stream raises on purpose."""


class ConfigError(CapiStreamError):
    """Raised when settings are invalid; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Coordinates:
    """Where a record came from: enough to find it again, nothing of its content."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        if self.topic is None:
            return "<no coordinates>"
        return f"{self.topic}[{self.partition}]@{self.offset}"


class DecodeError(CapiStreamError):
    """Raised when bytes are corrupt, truncated or written with an unknown schema.

    ``reason`` is a stable code (``corrupt``, ``truncated``, ``unknown_schema``,
    ``bad_magic_byte``) used as the dead-letter reason; ``raw`` keeps the bytes as they came.
    """

    def __init__(
        self, reason: str, detail: str, raw: bytes, coordinates: Coordinates | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.raw = raw
        self.coordinates = coordinates or Coordinates()
        super().__init__(
            f"cannot decode {len(raw)} bytes at {self.coordinates}: {reason}: {detail}"
        )

    def at(self, coordinates: Coordinates) -> DecodeError:
        """The same error, placed at the record's coordinates (known only to the caller)."""
        return DecodeError(self.reason, self.detail, self.raw, coordinates)


class EncodeError(CapiStreamError):
    """Raised when a record does not fit its schema (a field missing or of the wrong type)."""


class KafkaError(CapiStreamError):
    """Raised when a Kafka operation fails; the flags follow librdkafka's verdict.

    ``abortable``: the open transaction must be aborted (and the input re-read); ``fatal``: the
    client is unusable and the process should exit (a supervisor restarts it).
    """

    def __init__(
        self, message: str, *, retriable: bool = False, fatal: bool = False, abortable: bool = False
    ) -> None:
        self.retriable = retriable
        self.fatal = fatal
        self.abortable = abortable
        super().__init__(message)


class DeliveryError(CapiStreamError):
    """Raised when a request to the Graph API or a Gateway fails before an answer is read."""


class OffsetStateError(CapiStreamError):
    """Raised when offset bookkeeping meets an impossible state (acking an untracked offset)."""
