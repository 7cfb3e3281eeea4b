"""Configuration problems named by where they came from: the TOML file, a variable, the caller.

Settings are merged from three sources (values passed in code or on the command line, the
``CAPI_STREAM_*`` variables, the TOML file), so a bare validation error (``deliverer.linger:
extra inputs are not permitted``) leaves a person guessing which one to fix. Each problem is
named as it was written::

    capi.toml: [deliverer] linger: unknown setting (did you mean linger_ms?)
    capi.toml: invalid TOML at line 3, column 10: Invalid value
    CAPI_STREAM_DELIVERER__LINGER: unknown setting (did you mean CAPI_STREAM_DELIVERER__LINGER_MS?)
    CAPI_STREAM_TOPICS__PARTITIONS: Input should be greater than or equal to 1

A value given in code or on the command line is named as its environment variable would be.
No message quotes a value: it could be a token. The environment is handed in (only
:mod:`stream.config` reads it).
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stream.core.errors import ConfigError

PREFIX = "CAPI_STREAM_"
_TOML_POSITION = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def read_toml(path: Path, label: str) -> dict[str, Any]:
    """The TOML file's table; :class:`ConfigError` naming ``label`` (and the line and column of
    a syntax error, as tomllib gives them)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_POSITION.match(str(exc))
        if where is None:  # "(at end of document)" and the like: tomllib's text says where
            raise ConfigError(f"{label}: invalid TOML: {exc}") from None
        raise ConfigError(
            f"{label}: invalid TOML at line {where['line']}, column {where['column']}: "
            f"{where['what']}"
        ) from None


def suggest(name: str, known: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the closest known name, else nothing."""
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    if not close:
        return ""
    original = next(k for k in known if k.lower() == close[0])
    return f" (did you mean {original}?)"


def unknown_variable_problems(names: Sequence[str], fields: Sequence[str]) -> list[str]:
    """One problem per ``CAPI_STREAM_*`` variable that names no setting."""
    known = [PREFIX + f.upper() for f in fields]
    return [f"{name}: unknown setting{suggest(name, known)}" for name in names]


class Sources:
    """What each source gave, to find which one holds a problem's location.

    ``given``: the values passed in code (the strongest source); ``environ``: the variables;
    ``toml``: the file's table and its label (None without a file). The order of the checks is
    the order of precedence, so a problem is blamed on the source whose value was used.
    """

    def __init__(
        self,
        model: type[BaseModel],
        given: Mapping[str, Any],
        environ: Mapping[str, str],
        toml: tuple[str, Mapping[str, Any]] | None,
    ) -> None:
        self._model = model
        self._given = given
        self._environ = {k.upper(): k for k in environ if k.upper().startswith(PREFIX)}
        self._values = environ
        self._toml = toml

    def problems(self, errors: Sequence[Mapping[str, Any]]) -> list[str]:
        """One line per distinct location; a union's branches (one error each) are joined."""
        found: dict[str, list[str]] = {}
        for err in errors:
            loc = tuple(str(p) for p in err["loc"])
            unknown = err["type"] == "extra_forbidden"
            label, hint = self._label(loc, unknown=unknown)
            text = f"unknown setting{hint}" if unknown else str(err["msg"])
            texts = found.setdefault(label, [])
            if text not in texts:
                texts.append(text)
        return [f"{label}: {_one_of(texts)}" for label, texts in found.items()]

    def _label(self, loc: tuple[str, ...], *, unknown: bool) -> tuple[str, str]:
        """Where ``loc`` was set, and for an unknown setting the closest known one."""
        known = _known_names(self._model, loc[:-1]) if unknown else []
        if _depth(self._given, loc) == len(loc):
            return _variable(loc), _suggest_variable(loc, known)
        found = self._variable_of(loc)
        if found is not None:
            variable, depth, inner = found
            if not inner:
                return variable, _suggest_variable(loc, known)
            # a key inside the variable's JSON table (a union's branch names dropped)
            return f"{variable}: {'.'.join(loc[depth : depth + inner])}", suggest(loc[-1], known)
        if self._toml is not None:
            label, table = self._toml
            depth = _depth(table, loc)
            if depth:
                path = loc[:depth]
                key = _toml_key(path[-1])
                where = f"[{'.'.join(path[:-1])}] {key}" if len(path) > 1 else key
                return f"{label}: {where}", suggest(path[-1], known)
        return _variable(loc), _suggest_variable(loc, known)

    def _variable_of(self, loc: tuple[str, ...]) -> tuple[str, int, int] | None:
        """The variable that set ``loc`` (nested ``A__B``, or a JSON table holding it), how many
        parts of ``loc`` its name covers, and how many more its JSON holds."""
        for i in range(len(loc), 0, -1):
            name = self._environ.get(_variable(loc[:i]))
            if name is None:
                continue
            if i == len(loc):
                return name, i, 0
            try:
                data = json.loads(self._values[name])
            except ValueError:
                return name, i, 0
            inner = _depth(data, loc[i:]) if isinstance(data, Mapping) else 0
            if inner:
                return name, i, inner
        return None


def _one_of(texts: Sequence[str]) -> str:
    """``Input should be a valid string or a valid integer`` from a union's branch errors."""
    lead = "Input should be "
    if len(texts) == 1 or not all(t.startswith(lead) for t in texts):
        return texts[0]
    shapes = [t[len(lead) :] for t in texts]
    return lead + ", ".join(shapes[:-1]) + " or " + shapes[-1]


def _variable(loc: Sequence[str]) -> str:
    return PREFIX + "__".join(loc).upper()


def _suggest_variable(loc: Sequence[str], known: Sequence[str]) -> str:
    return suggest(_variable(loc), [_variable((*loc[:-1], k)) for k in known])


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _depth(table: Mapping[str, Any], loc: Sequence[str]) -> int:
    """How many leading parts of ``loc`` ``table`` holds (keys matched regardless of case)."""
    depth = 0
    current: Any = table
    for part in loc:
        if not isinstance(current, Mapping):
            break
        match = next((k for k in current if str(k).lower() == part.lower()), None)
        if match is None:
            break
        current = current[match]
        depth += 1
    return depth


def _known_names(model: type[BaseModel], path: Sequence[str]) -> list[str]:
    """The setting names of the section at ``path`` (none for a passthrough table)."""
    current = model
    for part in path:
        field = current.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)
