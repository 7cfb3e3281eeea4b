"""The command line's global options, as :func:`stream.config.load_settings` applies them.

``capi-stream --bootstrap k:9092 --log-level debug COMMAND`` must reach every tool's settings,
including the tools that build their own; :func:`command_line` holds the options while the
command runs and ``load_settings`` puts them over every other source. A module of its own so
that commands that load no settings (``sim``, ``status``) do not import pydantic to run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_NONE: Mapping[str, Any] = MappingProxyType({})
_OPTIONS: ContextVar[Mapping[str, Any]] = ContextVar("capi_stream_command_line", default=_NONE)


@contextmanager
def command_line(**options: Any) -> Iterator[None]:
    """While the block runs, settings loaded take these (``bootstrap_servers``, ``log_level``;
    a None is not given)."""
    token = _OPTIONS.set(MappingProxyType({k: v for k, v in options.items() if v is not None}))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def overrides() -> dict[str, Any]:
    """The options given, shaped as settings (``log_level`` goes to ``observability``)."""
    values = dict(_OPTIONS.get())
    level = values.pop("log_level", None)
    if level is not None:
        values["observability"] = {"log_level": level}
    return values
