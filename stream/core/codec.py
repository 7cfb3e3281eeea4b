"""Avro encoding and decoding: schemaless and the Confluent wire format.

The Confluent wire format is one magic byte ``0``, the writer schema's registry id as a 4-byte
big-endian integer, then the schemaless Avro body::

    00 | 00 00 00 07 | <avro body>        (schema id 7)

Decoding resolves the writer's schema to this reader's schema (Avro schema resolution), so events
written by an older producer, with fewer fields, still decode: missing fields take their defaults.
Where the writer schema comes from is the caller's business (a :class:`SchemaResolver`), which keeps
this module free of I/O. Every failure to decode raises :class:`DecodeError` with the raw bytes.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from typing import Any, Literal

import fastavro
import fastavro.validation
from fastavro import schemaless_reader, schemaless_writer

from stream.core.errors import DecodeError, EncodeError

WireFormat = Literal["confluent", "schemaless"]
MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")

ParsedSchema = Any  # fastavro's parsed schema: a dict, opaque to us


class SchemaNotFoundError(LookupError):
    """Raised by a resolver when no schema has the id; the record is dead-lettered."""


#: Turns a registry schema id into the writer's schema (an Avro schema as JSON data).
SchemaResolver = Callable[[int], Mapping[str, Any]]


def parse(schema: Mapping[str, Any]) -> ParsedSchema:
    """Parse an Avro schema given as JSON data, so it is parsed once rather than per record."""
    return fastavro.parse_schema(dict(schema))


class AvroCodec:
    """Encodes records of one reader schema and decodes records written with it or older ones.

    >>> codec = AvroCodec(schema, wire_format="confluent", schema_id=7, resolver=registry_lookup)
    >>> codec.decode(codec.encode(record)) == record
    True

    ``schema_id`` is the id this codec writes with in the Confluent format (None: it only decodes,
    or writes schemaless). For the schemaless format, ``writer_schema`` names what producers wrote
    with when it differs from the reader schema.
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        wire_format: WireFormat = "schemaless",
        schema_id: int | None = None,
        resolver: SchemaResolver | None = None,
        writer_schema: Mapping[str, Any] | None = None,
    ) -> None:
        self.wire_format: WireFormat = wire_format
        self.schema_id = schema_id
        self._reader = parse(schema)
        self._resolver = resolver
        self._writer = parse(writer_schema) if writer_schema is not None else None
        # writers seen by id: None means "same as the reader", which skips resolution work
        self._writers: dict[int, ParsedSchema | None] = {}
        if schema_id is not None:
            self._writers[schema_id] = None
        self._name = str(self._reader.get("name", "record"))

    # -- encode ------------------------------------------------------------------------------

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one record; raise :class:`EncodeError` naming the field that does not fit."""
        buf = io.BytesIO()
        if self.wire_format == "confluent":
            if self.schema_id is None:
                raise EncodeError("the Confluent wire format needs a registered schema id")
            buf.write(_HEADER.pack(MAGIC_BYTE, self.schema_id))
        try:
            schemaless_writer(buf, self._reader, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # OverflowError: an infinite float or a huge int in a long field
            raise EncodeError(f"record does not fit schema {self._name}: {_why(exc)}") from exc
        return buf.getvalue()

    def header(self) -> bytes | None:
        """What :meth:`encode` writes before the Avro body: the Confluent format's 5 bytes,
        nothing for the schemaless format, None when this codec cannot write (no schema id)."""
        if self.wire_format != "confluent":
            return b""
        if self.schema_id is None:
            return None
        return _HEADER.pack(MAGIC_BYTE, self.schema_id)

    def writes(self, schema: Mapping[str, Any]) -> bool:
        """Whether this codec's schema is ``schema`` (same parsing canonical form)."""
        return _same(parse(schema), self._reader)

    def validate(self, record: Mapping[str, Any]) -> None:
        """Raise :class:`EncodeError` naming the fields of ``record`` that do not fit the schema."""
        try:
            fastavro.validation.validate(record, self._reader, raise_errors=True)
        except fastavro.validation.ValidationError as exc:
            fields = sorted({e.field or "?" for e in exc.errors if hasattr(e, "field")})
            raise EncodeError(f"record does not fit {self._name}: fields {fields}") from exc

    # -- decode ------------------------------------------------------------------------------

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one record; raise :class:`DecodeError` (with ``data``) if it cannot be read."""
        body: bytes | memoryview
        if self.wire_format == "confluent":
            writer, body = self._confluent_writer(data)
        else:
            # bytes as they are: BytesIO shares a bytes object, and copies a memoryview
            writer = self._writer
            body = data if type(data) is bytes else memoryview(data)
        try:
            stream = io.BytesIO(body)
            if writer is None:
                record = schemaless_reader(stream, self._reader, None)
            else:
                record = schemaless_reader(stream, writer, self._reader)
        except EOFError as exc:
            raise DecodeError("truncated", "the Avro body ends early", bytes(data)) from exc
        except Exception as exc:
            raise DecodeError("corrupt", f"not a {self._name} record", bytes(data)) from exc
        if stream.tell() != len(body):
            # trailing bytes mean the writer was not the schema we decoded with
            raise DecodeError(
                "corrupt", f"{len(body) - stream.tell()} bytes after the record", bytes(data)
            )
        if not isinstance(record, dict):
            raise DecodeError("corrupt", f"not a {self._name} record", bytes(data))
        return record

    def _confluent_writer(self, data: bytes) -> tuple[ParsedSchema | None, memoryview]:
        if len(data) < _HEADER.size:
            raise DecodeError("truncated", "shorter than the 5-byte wire-format header", data)
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise DecodeError("bad_magic_byte", f"magic byte {magic}, expected 0", data)
        return self._writer_for(schema_id, data), memoryview(data)[_HEADER.size :]

    def _writer_for(self, schema_id: int, data: bytes) -> ParsedSchema | None:
        try:
            return self._writers[schema_id]
        except KeyError:
            pass
        if self._resolver is None:
            raise DecodeError("unknown_schema", f"schema id {schema_id} and no registry", data)
        try:
            writer_json = self._resolver(schema_id)
        except SchemaNotFoundError as exc:
            raise DecodeError("unknown_schema", f"schema id {schema_id} not found", data) from exc
        try:
            parsed = parse(writer_json)
        except Exception as exc:
            raise DecodeError("unknown_schema", f"schema id {schema_id} is not Avro", data) from exc
        writer = None if _same(parsed, self._reader) else parsed
        self._writers[schema_id] = writer
        return writer


def _same(a: ParsedSchema, b: ParsedSchema) -> bool:
    return bool(
        fastavro.schema.to_parsing_canonical_form(a) == fastavro.schema.to_parsing_canonical_form(b)
    )


def _why(exc: BaseException) -> str:
    # fastavro's messages may quote the offending value, which can be customer data
    return type(exc).__name__
