"""Read a few leading fields of an Avro record body without decoding the rest of it.

An Avro body is its fields in schema order, with nothing in between, so the fields before the
end of the wanted ones are all that must be read. ``replay`` and ``dlq republish`` need only an
event's time and source to decide whether it can still be sent, and both come first in the raw
schema (``event_name``, ``event_time``, ``action_source``) and in the enriched one (the same,
inside its leading ``event`` record): reading them is a few varints, where decoding the whole
event (about a hundred fields and unions) costs most of a copy's time.

    >>> reader = prefix_reader(raw_schema, ("event_time", "action_source"))
    >>> reader.read(body)
    {'event_time': 1767225600, 'action_source': 'website'}

Only fields of fixed shape can be passed over: strings, bytes, numbers, booleans, unions of
those, and records made of them. :func:`prefix_reader` answers None when a wanted field lies
behind anything else (an array, a map, a union with a record): the caller decodes in full then.
A body that ends early or holds an impossible length raises :class:`ValueError`; what lies past
the wanted fields is not looked at, so a body damaged there reads as if it were whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

_SIMPLE: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_FIXED_WIDTH: Final = {"float": 4, "double": 8}

#: One step of a reader: the field's path (None: passed over) and its type, a primitive name
#: or a tuple of primitive names for a union.
_Step = tuple[str | None, str | tuple[str, ...]]


class PrefixReader:
    """Reads the wanted leading fields of bodies written with one schema (see the module)."""

    def __init__(self, steps: Sequence[_Step]) -> None:
        self._steps = tuple(steps)

    def read(self, body: bytes, offset: int = 0) -> dict[str, Any]:
        """The wanted fields of the body starting at ``offset``, by dotted path."""
        try:
            return self._read(body, offset)
        except IndexError:  # a varint or boolean past the end: indexing checks the bounds
            raise ValueError("the body ends early") from None

    def _read(self, body: bytes, pos: int) -> dict[str, Any]:
        found: dict[str, Any] = {}
        end = len(body)
        for path, step in self._steps:
            kind = step
            if isinstance(step, tuple):
                index, pos = _long(body, pos)
                if not 0 <= index < len(step):
                    raise ValueError("a union branch the schema does not have")
                kind = step[index]
            if kind in ("string", "bytes"):
                size, pos = _long(body, pos)
                if size < 0 or pos + size > end:  # a slice would not check
                    raise ValueError("a length past the end of the body")
                if path is not None:
                    raw = body[pos : pos + size]
                    found[path] = raw.decode() if kind == "string" else bytes(raw)
                pos += size
            elif kind in ("long", "int"):
                value, pos = _long(body, pos)
                if path is not None:
                    found[path] = value
            elif kind == "boolean":
                if path is not None:
                    found[path] = body[pos] == 1
                pos += 1
            elif kind == "null":
                if path is not None:
                    found[path] = None
            else:  # float or double: only passed over (no wanted field is one today)
                pos += _FIXED_WIDTH[str(kind)]
                if pos > end:
                    raise ValueError("the body ends early")
                if path is not None:
                    raise ValueError(f"reading a {kind} is not supported")
        return found


def prefix_reader(schema: Mapping[str, Any], paths: Sequence[str]) -> PrefixReader | None:
    """A reader of ``paths`` (dotted, e.g. ``event.event_time``) of records of ``schema``, or
    None when one lies behind a field of no fixed shape, or is not a simple field itself."""
    wanted = set(paths)
    steps: list[_Step] = []

    def walk(record: Mapping[str, Any], prefix: str) -> bool:
        """Add the steps of ``record``'s fields until nothing is wanted; False if impossible."""
        for field in record["fields"]:
            if not wanted:
                return True
            path = prefix + str(field["name"])
            kind = _simple(field["type"])
            if kind is not None:
                steps.append((path if path in wanted else None, kind))
                wanted.discard(path)
                continue
            nested = field["type"]
            if not (isinstance(nested, Mapping) and nested.get("type") == "record"):
                return False
            if not walk(nested, path + ".") and wanted:
                return False
        return True

    walk(schema, "")
    return PrefixReader(steps) if not wanted else None


def _simple(avro: Any) -> str | tuple[str, ...] | None:
    """The step type of a field that can be read or passed over as is, else None."""
    if isinstance(avro, Mapping) and not avro.get("logicalType") and avro.get("type") in _SIMPLE:
        avro = avro["type"]
    if isinstance(avro, str):
        return avro if avro in _SIMPLE else None
    if isinstance(avro, list):
        branches = [_simple(branch) for branch in avro]
        if all(isinstance(branch, str) for branch in branches):
            return tuple(str(branch) for branch in branches)
    return None


def _long(body: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it (IndexError past the end)."""
    byte = body[pos]
    if byte < 0x80:  # lengths, union branches: mostly one byte
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = body[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos + 1
        shift += 7
        if shift > 63:
            raise ValueError("a number wider than 64 bits")
