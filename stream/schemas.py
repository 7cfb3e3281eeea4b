"""The project's Avro schemas, read from ``schemas/`` (a source checkout) or the installed wheel."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

#: ``capi_event`` is the enriched record's current version (2, the envelope); ``capi_event.v1``
#: the previous one, which deliverers still read and whose ``ServerEvent`` documents the JSON
#: shape of version 2's ``event_json``.
SchemaName = Literal["conversion_event", "capi_event", "capi_event.v1", "dead_letter"]

_HERE = Path(__file__).resolve().parent
# a checkout (and an editable install) has schemas/ beside stream/; a wheel has stream/_schemas
_CANDIDATES = (_HERE.parent / "schemas", _HERE / "_schemas")


def schema_path(name: SchemaName) -> Path:
    """Where the named ``.avsc`` file is."""
    for folder in _CANDIDATES:
        path = folder / f"{name}.avsc"
        if path.exists():
            return path
    raise FileNotFoundError(f"{name}.avsc not found in {[str(c) for c in _CANDIDATES]}")


@functools.cache
def load(name: SchemaName) -> dict[str, Any]:
    """The named schema as JSON data (cached; callers must not mutate it)."""
    data: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return data


def subject(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"
