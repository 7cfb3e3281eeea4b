"""Read a few leading fields of an Avro record body without decoding the rest of it.

An Avro body is its fields in schema order, with nothing in between, so the fields before the
end of the wanted ones are all that must be read. ``replay`` and ``dlq republish`` need only an
event's time and source to decide whether it can still be sent, and both come first in the raw
schema (``event_name``, ``event_time``, ``action_source``) and right after the marker and the
ids in the enriched one: reading them is a few varints, where decoding the whole event (about a
hundred fields and unions) costs most of a copy's time.

    >>> reader = prefix_reader(raw_schema, ("event_time", "action_source"))
    >>> reader.read(body)
    {'event_time': 1767225600, 'action_source': 'website'}
    >>> reader.values(body)                  # the same, in schema order, without the names
    [1767225600, 'website']

Only fields of fixed shape can be passed over: strings, bytes, numbers, booleans, ``fixed``,
unions of those, and records made of them. :func:`prefix_reader` answers None when a wanted
field lies behind anything else (an array, a map, a union with a record): the caller decodes in
full then. A body that ends early or holds an impossible length raises :class:`ValueError`;
what lies past the wanted fields is not looked at, so a body damaged there reads as if it were
whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

_SIMPLE: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

# One step's type as (code, argument): the argument is a width (fixed, float, double) or, for a
# union, the branches' own (code, argument) pairs. Small ints keep the per-field test cheap: a
# copy tool reads millions of prefixes, and this loop is most of what it spends on a record.
_STRING, _BYTES, _LONG, _BOOLEAN, _NULL, _SKIP, _FIXED, _UNION = range(8)
_CODES: Final = {"string": _STRING, "bytes": _BYTES, "long": _LONG, "int": _LONG,
                 "boolean": _BOOLEAN, "null": _NULL}  # fmt: skip
_WIDTHS: Final = {"float": 4, "double": 8}

_Kind = tuple[int, Any]
#: One step of a reader: whether its value is wanted, and its type's code and argument.
_Step = tuple[bool, int, Any]


class PrefixReader:
    """Reads the wanted leading fields of bodies written with one schema (see the module)."""

    def __init__(self, paths: Sequence[str], steps: Sequence[_Step]) -> None:
        self.paths = tuple(paths)  # the wanted fields in schema order: what values() answers
        self._steps = tuple(steps)

    def read(self, body: bytes, offset: int = 0) -> dict[str, Any]:
        """The wanted fields of the body starting at ``offset``, by dotted path."""
        return dict(zip(self.paths, self.values(body, offset), strict=True))

    def values(self, body: bytes, offset: int = 0) -> list[Any]:
        """The wanted fields' values in schema order (:attr:`paths`)."""
        try:
            return self.read_values(body, offset)
        except IndexError:  # a varint or boolean past the end: indexing checks the bounds
            raise ValueError("the body ends early") from None

    def read_values(self, body: bytes, pos: int = 0) -> list[Any]:
        """:meth:`values` for a caller that takes :class:`IndexError` as "ends early" itself
        (one call less per record in a copy loop)."""
        found: list[Any] = []
        end = len(body)
        for wanted, code, arg in self._steps:
            if code == _UNION:
                byte = body[pos]
                if byte < 0x80:  # a branch index is one byte in any real schema
                    index, pos = (byte >> 1) ^ -(byte & 1), pos + 1
                else:
                    index, pos = _long(body, pos)
                if not 0 <= index < len(arg):
                    raise ValueError("a union branch the schema does not have")
                code, arg = arg[index]  # noqa: PLW2901 - the branch is the step's type now
            if code <= _BYTES:
                byte = body[pos]
                if byte < 0x80:
                    size, pos = (byte >> 1) ^ -(byte & 1), pos + 1
                else:
                    size, pos = _long(body, pos)
                if size < 0 or pos + size > end:  # a slice would not check
                    raise ValueError("a length past the end of the body")
                if wanted:
                    raw = body[pos : pos + size]
                    found.append(bytes(raw).decode() if code == _STRING else bytes(raw))
                pos += size
            elif code == _LONG:
                if wanted:
                    value, pos = _long(body, pos)
                    found.append(value)
                else:
                    while body[pos] >= 0x80:  # passed over: only its end matters
                        pos += 1
                    pos += 1
            elif code == _BOOLEAN:
                if wanted:
                    found.append(body[pos] == 1)
                pos += 1
            elif code == _NULL:
                if wanted:
                    found.append(None)
            else:  # fixed (read as bytes) or float/double (only passed over)
                if pos + arg > end:
                    raise ValueError("the body ends early")
                if wanted:
                    if code == _SKIP:
                        raise ValueError("reading a float or double is not supported")
                    found.append(bytes(body[pos : pos + arg]))
                pos += arg
        return found


def prefix_reader(schema: Mapping[str, Any], paths: Sequence[str]) -> PrefixReader | None:
    """A reader of ``paths`` (dotted, e.g. ``event.event_time``) of records of ``schema``, or
    None when one lies behind a field of no fixed shape, or is not a simple field itself."""
    wanted = set(paths)
    steps: list[_Step] = []
    order: list[str] = []

    def walk(record: Mapping[str, Any], prefix: str) -> bool:
        """Add the steps of ``record``'s fields until nothing is wanted; False if impossible."""
        for field in record["fields"]:
            if not wanted:
                return True
            path = prefix + str(field["name"])
            kind = _simple(field["type"])
            if kind is not None:
                steps.append((path in wanted, *kind))
                if path in wanted:
                    order.append(path)
                wanted.discard(path)
                continue
            nested = field["type"]
            if not (isinstance(nested, Mapping) and nested.get("type") == "record"):
                return False
            if not walk(nested, path + ".") and wanted:
                return False
        return True

    walk(schema, "")
    return PrefixReader(order, steps) if not wanted else None


def _simple(avro: Any) -> _Kind | None:
    """The step type of a field that can be read or passed over as is, else None."""
    if isinstance(avro, Mapping) and avro.get("type") == "fixed":
        return _FIXED, int(avro["size"])
    if isinstance(avro, Mapping) and not avro.get("logicalType") and avro.get("type") in _SIMPLE:
        avro = avro["type"]
    if isinstance(avro, str):
        if avro in _WIDTHS:
            return _SKIP, _WIDTHS[avro]
        return (_CODES[avro], None) if avro in _CODES else None
    if isinstance(avro, list):
        branches = [_simple(branch) for branch in avro]
        if all(b is not None and b[0] != _UNION for b in branches):
            return _UNION, tuple(branches)
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
