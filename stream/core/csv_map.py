"""Offline-events rows to raw events: one CSV or JSON Lines row in, one ``ConversionEvent`` out.

Pure: no file, clock or environment is read. Callers hand over lines (:func:`read_csv`,
:func:`read_jsonl`) and rows (:meth:`RowMapper.event`). A row is a sequence of (column, value)
pairs, so a CSV header may repeat a column, as Meta's offline-events template does for ``email``.
The mapping, for users (``capi-stream publish --help`` prints it from here):

| column | raw event field | values |
| --- | --- | --- |
| `email`, `em` | `user_data.em` | several (1) |
| `phone`, `ph` | `user_data.ph` | several (1) |
| `fn`, `ln` | `user_data.fn`, `user_data.ln` | several (1) |
| `zip`, `zp` | `user_data.zp` | several (1) |
| `ct`, `st`, `country` | `user_data.ct`, `.st`, `.country` | several (1) |
| `dob`, `db` | `user_data.db` | several (1); any date order Meta accepts |
| `gen`, `ge` | `user_data.ge` | several (1) |
| `extern_id`, `external_id` | `user_data.external_id` | several (1) |
| `doby`, `dobm`, `dobd`, `fi`, `f5first`, `f5last` | same name in `user_data` | one |
| `madid`, `client_ip_address`, `client_user_agent`, `fbc`, `fbp`, … (2) | in `user_data` | one |
| `event_name` | `event_name` | required |
| `event_time` | `event_time` | required; a date-time (3) |
| `event_id`, `action_source`, `pixel_id`, `event_source_url`, … (4) | same name | one |
| `value`, `currency`, `order_id`, `item_number`, `num_items`, … (5) | `custom_data.*` | one (6) |
| `content_ids` | `custom_data.content_ids` | several (1) |
| `contents` | `custom_data.contents` | a JSON array of objects |
| `custom.NAME` | `custom_data.custom_properties[NAME]` | text (JSON: its type) |
| `SECTION.FIELD`, e.g. `app_data.extinfo` | that field | its Avro type |

(1) Several values: repeat the column (`email,email`), number it (`email2`, `email_3`), or
    separate values with `|` in one cell (`a@x.com|b@x.com`); in JSON a list works too.
(2) Every `user_data` key that is never hashed: also `subscription_id`, `fb_login_id`,
    `lead_id`, `anon_id`, `page_id`, `page_scoped_user_id`, `ctwa_clid`, `ig_account_id`, `ig_sid`.
(3) `1767225600`, `2026-01-01T00:00:00Z`, `2026-01-01 01:00+01:00`, `2026-01-01` or
    `2026/01/01 14:30`; a time without an offset is UTC. A date with a short first number
    (`11/28/2026 14:30`, `11/28/2026 2:30 PM`, `28.11.2026 14:30`) needs `--date-order mdy`
    or `dmy`: the order is never guessed. Milliseconds are left to the normalize stage, which
    converts them with a warning.
(4) Every top-level field of the raw schema: also `opt_out`, `referrer_url`, `test_event_code`,
    `data_processing_options` (several (1)), `data_processing_options_country`, `…_state`,
    `customer_segmentation`, `messaging_channel`, `advertiser_tracking_enabled`.
(5) Every field of `custom_data`: also `net_revenue`, `content_name`, `content_category`,
    `content_type`, `predicted_ltv`, `search_string`, `status`, `delivery_category`.
(6) `value`, `net_revenue`, `predicted_ltv` (every decimal field): `12.50`, `1,000.50`,
    `$12.50`, `-€3`; with `--decimal-comma`: `12,50`, `1.000,50`, `12,50 €`. Without it
    `12,50` is refused, never read as 1250.

Values are raw: hashing and normalization are the normalize stage's job. Booleans accept
`true/false/1/0/yes/no`; numbers accept JSON numbers or decimal text. JSON Lines rows may also
be in the raw schema's own shape: an object under `user_data`, `custom_data`, `app_data`,
`original_event_data` or `attribution_data` is read as `SECTION.FIELD` columns, so nested and
flat keys mix. An unknown column is an error, never silently dropped, unless
`--ignore-unknown-columns` says to skip it (CRM exports carry columns such as `Age`): the
columns skipped are named once. Column names are case-insensitive; an empty cell (or JSON
`null`) is an absent value. A refused value is reported by field with the forms accepted,
never quoting the value.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Any, Final, Literal

import orjson

from stream.core.row_errors import FieldProblem, RowError
from stream.core.value_forms import (
    DEFAULT_FORMS,
    ValueForms,
    accepted_amount,
    accepted_time,
    parse_amount,
    parse_time,
)

__all__ = [
    "FieldProblem", "HeaderMapper", "RowError", "RowMapper", "ValueForms", "field_kinds",
    "parse_time", "read_csv", "read_csv_cells", "read_jsonl", "user_help",
]  # fmt: skip

Kind = Literal["string", "strings", "long", "int", "double", "boolean", "data", "property"]
Pairs = Iterable[tuple[str, Any]]

SEPARATOR: Final = "|"
SECTIONS: Final = (
    "user_data",
    "custom_data",
    "app_data",
    "original_event_data",
    "attribution_data",
)
#: Meta's offline-events upload names that differ from the raw schema's.
ALIASES: Final = MappingProxyType(
    {
        "email": "user_data.em",
        "phone": "user_data.ph",
        "zip": "user_data.zp",
        "dob": "user_data.db",
        "gen": "user_data.ge",
        "extern_id": "user_data.external_id",
    }
)
_PROPERTY_PREFIX: Final = "custom."
_PROPERTIES: Final = "custom_data.custom_properties"
# a bare column is an event field, else a user_data key, else a custom_data field
_BARE_SECTIONS: Final = ("user_data", "custom_data")
_NUMBERED: Final = re.compile(r"(.+?)_?\d+")
_TRUE: Final = frozenset({"true", "1", "yes", "y", "t"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "f"})
_INT_RANGE: Final = MappingProxyType({"int": (-(2**31), 2**31), "long": (-(2**63), 2**63)})
_PRIMITIVES: Final[Mapping[str, Kind]] = MappingProxyType(
    {"string": "string", "long": "long", "int": "int", "double": "double", "float": "double",
     "boolean": "boolean"}
)  # fmt: skip


def user_help() -> str:
    """The column table and its notes from this module's docstring, for ``publish --help``."""
    doc = __doc__ or ""
    return doc[doc.index("| column") :]


_EXTRA_CELL: Final = "<column "
#: What a person is told a field of each kind takes (amounts and times depend on the file).
_ACCEPTED: Final[Mapping[str, str]] = MappingProxyType({
    "long": "a whole number", "int": "a whole number", "boolean": "true/false, yes/no or 1/0",
    "data": "JSON", "string": "text", "strings": "text", "property": "text, a number or a boolean",
})  # fmt: skip


class _GivenTwice(ValueError):
    """A single-valued field filled by two columns: the row is ambiguous, not invalid."""


def field_kinds(schema: Mapping[str, Any]) -> dict[str, Kind]:
    """Every settable field of a record schema by dotted path: ``{"user_data.em": "strings"}``."""
    kinds: dict[str, Kind] = {}

    def walk(record: Mapping[str, Any], prefix: str) -> None:
        for field in record["fields"]:
            kind = field["type"]
            if isinstance(kind, list):  # a nullable union: the non-null branch decides
                kind = next(branch for branch in kind if branch != "null")
            path = prefix + field["name"]
            if isinstance(kind, Mapping) and kind.get("type") == "record":
                walk(kind, path + ".")
            else:
                kinds[path] = _leaf(kind)

    walk(schema, "")
    return kinds


def _leaf(avro: Any) -> Kind:
    if isinstance(avro, str):
        return _PRIMITIVES.get(avro, "data")
    if avro.get("type") == "array" and avro.get("items") == "string":
        return "strings"
    return _PRIMITIVES.get(str(avro.get("type")), "data")


class RowMapper:
    """Maps rows onto one raw schema; build once, call :meth:`event` per row.

    ``default_action_source`` and ``default_pixel_id`` fill rows that lack the column (Meta's
    offline-events template has no action_source: every row of it is a ``physical_store`` event).
    ``forms`` says how the file writes amounts and date-times; with ``ignore_unknown`` a column
    no field takes is skipped instead of refusing the row.
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        default_action_source: str | None = None,
        default_pixel_id: str | None = None,
        forms: ValueForms = DEFAULT_FORMS,
        ignore_unknown: bool = False,
    ) -> None:
        self._kinds = field_kinds(schema)
        self._defaults = {"action_source": default_action_source, "pixel_id": default_pixel_id}
        self._resolved: dict[str, tuple[str, Kind] | None] = {}
        self.forms = forms
        self.ignore_unknown = ignore_unknown

    def accepted(self, path: str, kind: Kind) -> str:
        """The forms a value of this field may take, for a person (never the value given)."""
        if kind in ("long", "int") and path.endswith("_time"):
            return accepted_time(self.forms)
        return _ACCEPTED.get(kind) or accepted_amount(self.forms)

    def resolve(self, column: str) -> tuple[str, Kind] | None:
        """The dotted field path and kind a column fills, or None for an unknown column."""
        try:
            return self._resolved[column]
        except KeyError:
            found = self._resolved[column] = self._lookup(column.strip())
            return found

    def unknown(self, columns: Iterable[str]) -> list[str]:
        """The columns of a header that no field takes (sections of raw-shape rows are known)."""
        return [c for c in columns if c.strip().lower() not in SECTIONS and not self.resolve(c)]

    def _lookup(self, column: str) -> tuple[str, Kind] | None:
        name = column.lower()
        if name.startswith(_PROPERTY_PREFIX) and len(name) > len(_PROPERTY_PREFIX):
            # custom property names keep their case: Meta reports them as sent
            return f"{_PROPERTIES}.{column[len(_PROPERTY_PREFIX) :]}", "property"
        path = ALIASES.get(name, name)
        for candidate in (path, *(f"{section}.{path}" for section in _BARE_SECTIONS)):
            kind = self._kinds.get(candidate)
            if kind is not None:
                return candidate, kind
        numbered = _NUMBERED.fullmatch(name)
        if numbered is not None:
            base = self._lookup(numbered.group(1))
            if base is not None and base[1] == "strings":
                return base
        return None

    def event(self, row: Mapping[str, Any] | Pairs) -> dict[str, Any]:
        """The raw event of one row; raises :class:`RowError` naming every bad column."""
        pairs = row.items() if isinstance(row, Mapping) else row
        event: dict[str, Any] = {}
        unknown: list[str] = []
        invalid: list[FieldProblem] = []
        for column, value in _flatten(pairs):
            target = self.resolve(column)
            if target is None:
                # a cell past the header's width is a broken row (an unquoted 12,50 makes
                # one): never skipped, or 12,50 would quietly read as 12
                if not self.ignore_unknown or column.startswith(_EXTRA_CELL):
                    unknown.append(column)
                continue
            path, kind = target
            try:
                coerced = _coerce(kind, value, is_time=path.endswith("_time"), forms=self.forms)
                if coerced is not None:
                    _put(event, path, kind, coerced)
            except _GivenTwice:
                invalid.append(FieldProblem(path, "given_twice"))
            except (ValueError, TypeError):
                invalid.append(FieldProblem(path, "invalid_value", self.accepted(path, kind)))
        if unknown:
            raise RowError("unknown columns", unknown)
        return self.finish(event, invalid)

    def finish(self, event: dict[str, Any], invalid: list[FieldProblem]) -> dict[str, Any]:
        """Report ``invalid`` fields, else fill the defaults and check the required fields."""
        if invalid:
            raise RowError("invalid values in", dict.fromkeys(invalid))
        for name, default in self._defaults.items():
            if default is not None:
                event.setdefault(name, default)
        missing = [name for name in ("event_name", "event_time") if name not in event]
        if missing:
            raise RowError("missing", missing)
        event.setdefault("user_data", {})
        return event

    def for_header(self, header: Sequence[str]) -> HeaderMapper:
        """A mapper for CSV rows under ``header``: the same events, the column work done once."""
        return HeaderMapper(self, header)


class HeaderMapper:
    """:meth:`RowMapper.event` for rows of one CSV header, taking a row's cells as they come.

    Resolving a column, choosing its conversion and splitting its path happen once per header
    instead of once per cell; a row then costs one small call per non-empty cell. A header with
    a column no field takes, and a row wider than its header, go the general way, so every
    answer (event or :class:`RowError`) is the one :meth:`RowMapper.event` gives.
    """

    def __init__(self, mapper: RowMapper, header: Sequence[str]) -> None:
        self._mapper = mapper
        self._header = list(header)
        steps: list[tuple[int, str, _Put]] = []
        self._kinds: dict[str, Kind] = {}
        for index, column in enumerate(self._header):
            target = None if column.strip().lower() in SECTIONS else mapper.resolve(column)
            if target is None:
                if mapper.ignore_unknown and column.strip().lower() not in SECTIONS:
                    continue  # skipped in every row, as the general way skips it
                steps = []
                self._general = True
                break
            path, kind = target
            self._kinds[path] = kind
            steps.append((index, path, _putter(path, kind, mapper.forms)))
        else:
            self._general = False
        self._steps = tuple(steps)

    def event(self, cells: Sequence[str]) -> dict[str, Any]:
        """The raw event of one row's cells; raises :class:`RowError` as the general way does."""
        if self._general or len(cells) != len(self._header):
            return self._mapper.event(list(zip(_names(self._header, cells), cells, strict=False)))
        event: dict[str, Any] = {}
        invalid: list[FieldProblem] = []
        for index, path, put in self._steps:
            value = cells[index]
            if not value or value.isspace():  # an empty cell is an absent value
                continue
            try:
                put(event, value)
            except _GivenTwice:
                invalid.append(FieldProblem(path, "given_twice"))
            except (ValueError, TypeError):
                accepted = self._mapper.accepted(path, self._kinds[path])
                invalid.append(FieldProblem(path, "invalid_value", accepted))
        return self._mapper.finish(event, invalid)


#: Puts one non-blank cell's value into an event; raises ValueError or TypeError.
_Put = Callable[[dict[str, Any], str], None]


def _putter(path: str, kind: Kind, forms: ValueForms) -> _Put:
    """The conversion and placement of one column's cells, as ``_coerce`` and ``_put`` do it.

    Written out per case rather than through ``_coerce`` and ``_put``: this runs once per cell.
    """
    *sections, name = path.split(".", 2) if kind == "property" else path.split(".")
    convert = _cell_converter(kind, is_time=path.endswith("_time"), forms=forms)

    def place(event: dict[str, Any]) -> dict[str, Any]:
        target = event
        for section in sections:
            target = target.setdefault(section, {})
        return target

    if kind == "strings":

        def put_strings(event: dict[str, Any], value: str) -> None:
            if SEPARATOR in value:
                items = [item.strip() for item in value.split(SEPARATOR) if item.strip()]
                if not items:
                    return
            else:
                items = [value.strip()]
            target = place(event)
            given = target.get(name)
            if given is None:
                target[name] = items
            else:
                given.extend(items)

        return put_strings

    def put_once(event: dict[str, Any], value: str) -> None:
        coerced = value if convert is None else convert(value)
        target = place(event)
        if name in target:
            raise _GivenTwice
        target[name] = coerced

    return put_once


def _cell_converter(kind: Kind, *, is_time: bool, forms: ValueForms) -> Callable[[str], Any] | None:
    """What ``_coerce`` does to a non-blank text cell of ``kind``; None: the text as it is."""
    if kind in ("string", "property", "strings"):
        # CSV cells are text: a property keeps it as text, like a string field (and lists
        # are split by their own putter)
        return None
    if kind == "data":
        return orjson.loads
    if kind == "boolean":
        return _boolean
    if kind == "double":
        return partial(parse_amount, forms=forms)
    low, high = _INT_RANGE[kind]

    def whole(value: str) -> int:
        number = parse_time(value, forms) if is_time else int(value.strip())
        if not low <= number < high:
            raise ValueError("out of range")
        return number

    return whole


def _names(header: Sequence[str], cells: Sequence[str]) -> list[str]:
    """The header, with ``<column N>`` for each cell past its width (an unknown column)."""
    return [*header, *(f"{_EXTRA_CELL}{i + 1}>" for i in range(len(header), len(cells)))]


def _flatten(pairs: Pairs) -> Iterator[tuple[str, Any]]:
    for column, value in pairs:
        if column.strip().lower() not in SECTIONS:
            yield column, value
        elif isinstance(value, Mapping):
            for name, inner in value.items():
                yield f"{column.strip()}.{name}", inner
        elif value is not None and value != "":
            yield column, value  # a section given as a scalar: reported as an unknown column


def _coerce(kind: Kind, value: Any, *, is_time: bool, forms: ValueForms = DEFAULT_FORMS) -> Any:
    """The value as the schema wants it; None when absent. Raises ValueError or TypeError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "strings":
        if isinstance(value, list):
            # a JSON list is kept item for item: some lists are positional (app_data.extinfo)
            return [_text(item) for item in value] or None
        if not isinstance(value, str):
            return [_text(value)]
        return [item.strip() for item in value.split(SEPARATOR) if item.strip()] or None
    if kind == "property":
        # JSON keeps a property's type; CSV cells are text (the map takes both)
        return value if isinstance(value, bool | int | float) else _text(value)
    if kind == "string":
        return _text(value)
    if kind == "data":
        return orjson.loads(value) if isinstance(value, str) else value
    if isinstance(value, bool) and kind != "boolean":
        raise TypeError("a boolean where a number is expected")
    if kind == "boolean":
        return _boolean(value)
    if kind == "double":
        return parse_amount(value, forms) if isinstance(value, str) else float(value)
    if isinstance(value, str):
        number = parse_time(value, forms) if is_time else int(value.strip())
    elif isinstance(value, float) and not (is_time or value.is_integer()):
        raise ValueError("not a whole number")
    else:
        number = int(value)
    # the encoder is not asked to check (publish encodes first), so the width is checked here
    low, high = _INT_RANGE[kind]
    if not low <= number < high:
        raise ValueError("out of range")
    return number


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # ids given as JSON numbers: 100045 is "100045"
    raise TypeError("not text")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def _put(event: dict[str, Any], path: str, kind: Kind, value: Any) -> None:
    *sections, name = path.split(".", 2) if kind == "property" else path.split(".")
    target = event
    for section in sections:
        target = target.setdefault(section, {})
    if kind == "strings":
        target.setdefault(name, []).extend(value)
    elif name in target:
        raise _GivenTwice
    else:
        target[name] = value


def read_csv(lines: Iterable[str]) -> tuple[list[str], Iterator[tuple[int, Pairs]]]:
    """The header and the rows of CSV text, each row with the line number it starts on.

    Blank rows are skipped; cells past the header's width get the column name
    ``<column N>``, which the mapper reports as unknown.
    """
    header, rows = read_csv_cells(lines)
    return header, ((line, list(zip(_names(header, cells), cells, strict=False)))
                    for line, cells in rows)  # fmt: skip


def read_csv_cells(lines: Iterable[str]) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and each non-blank row's cells with its line number: for
    :meth:`HeaderMapper.event`, which knows the columns already."""
    reader = csv.reader(lines)
    header = next(reader, None) or []

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            joined = "".join(cells)  # one C-level pass: is every cell blank?
            if not joined or joined.isspace():
                continue
            yield line, cells

    return header, rows()


def read_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    """Each non-blank line as a JSON object, or a :class:`RowError` (no content quoted)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield number, RowError("not valid JSON")
            continue
        if isinstance(data, dict):
            yield number, data
        else:
            yield number, RowError("not a JSON object")
