"""The documented shape of an enriched event's JSON, checked (``capi_event.v1.avsc``'s ServerEvent).

Version 2 of the enriched record carries the event as JSON bytes (``event_json``). Its type is
the ``ServerEvent`` record of the previous version, written with null, empty lists and empty
maps left out and ``custom_data.custom_properties`` merged flat into ``custom_data``. This module
checks a JSON against that: it expands the JSON back into the Avro shape (absent fields take
their defaults, unknown ``custom_data`` keys become custom properties, any other unknown field
fails), validates the result with fastavro, and requires that pruning it again gives exactly
the JSON (so the JSON holds no null, no empty list and no field the record does not have).
"""

from __future__ import annotations

import functools
from typing import Any

import fastavro
import fastavro.validation
import orjson

from stream import schemas
from stream.core.wire import to_wire

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@functools.cache
def _server_event() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ServerEvent record (JSON data) and its named types."""
    event = schemas.load("capi_event.v1")["fields"][0]["type"]
    named: dict[str, Any] = {}

    def collect(schema: Any) -> None:
        if isinstance(schema, list):
            for branch in schema:
                collect(branch)
        elif isinstance(schema, dict):
            if schema.get("name") and schema["type"] in ("record", "enum", "fixed"):
                named[schema["name"]] = schema
            for field in schema.get("fields", ()):
                collect(field["type"])
            for key in ("items", "values"):
                if key in schema:
                    collect(schema[key])

    collect(event)
    return event, named


def _expand(schema: Any, value: Any, where: str) -> Any:
    _, named = _server_event()
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        schema = named[schema.rsplit(".", 1)[-1]]
    if isinstance(schema, list):
        if value is None:
            assert "null" in schema, f"{where}: null where {schema} is expected"
            return None
        branches = [b for b in schema if b != "null"]
        return _expand(branches[0], value, where) if len(branches) == 1 else value
    if isinstance(schema, str):
        return value
    kind = schema["type"]
    if kind == "array":
        assert isinstance(value, list), f"{where}: not a list"
        return [_expand(schema["items"], item, f"{where}[]") for item in value]
    if kind == "map":
        assert isinstance(value, dict), f"{where}: not an object"
        return {k: _expand(schema["values"], v, f"{where}.{k}") for k, v in value.items()}
    if kind != "record":
        return value
    assert isinstance(value, dict), f"{where}: not an object"
    names = {field["name"] for field in schema["fields"]}
    extra = {k: v for k, v in value.items() if k not in names}
    out: dict[str, Any] = {}
    for field in schema["fields"]:
        name, ftype = field["name"], field["type"]
        if name in value:
            out[name] = _expand(ftype, value[name], f"{where}.{name}")
        elif "default" in field:
            out[name] = field["default"]
        else:  # a required record (user_data) pruned because it was empty
            assert isinstance(ftype, dict), f"{where}: required field {name} is missing"
            out[name] = _expand(ftype, {}, f"{where}.{name}")
    if schema["name"] == "CustomData":
        out["custom_properties"] = {**out["custom_properties"], **extra}
    else:
        assert not extra, f"{where}: fields the record does not have: {sorted(extra)}"
    return out


def check_event_json(data: bytes) -> dict[str, Any]:
    """Parse ``data`` and assert it has the documented shape; return the parsed event."""
    assert data[:1] == b"{", "not one JSON object"
    assert data[-1:] == b"}", "not one JSON object"
    event = orjson.loads(data)
    assert orjson.dumps(event) == data, "not compact JSON as orjson writes it"
    schema, _ = _server_event()
    expanded = _expand(schema, event, "event")
    fastavro.validation.validate(expanded, _parsed(), raise_errors=True)
    assert to_wire(expanded) == event, "the JSON holds nulls, empty values or stray fields"
    return event


@functools.cache
def _parsed() -> Any:
    # parse a copy of the whole v1 record so named types resolve, then validate its event field
    full = fastavro.parse_schema(orjson.loads(orjson.dumps(schemas.load("capi_event.v1"))))
    return full["fields"][0]["type"]
