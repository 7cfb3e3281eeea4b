"""A cheaper ``__init__`` for the frozen, slotted dataclasses the normalize stage makes per event.

``dataclasses`` gives a frozen class an ``__init__`` that sets each field with
``object.__setattr__`` looked up through a builtins name, about 110 ns a field: ~1 µs for
:class:`stream.core.normalize.WireEvent` or :class:`stream.core.enrich.Output`, each made once
per event. Setting a slot through its own descriptor (``Cls.field.__set__``) skips the frozen
``__setattr__`` the same way and costs half as much. :func:`slot_init` writes that
``__init__`` (same parameters, same defaults), so the class stays a frozen dataclass in every
other respect: equality, ``repr``, ``dataclasses.replace``, and assignment still raising
``FrozenInstanceError``::

    @slot_init
    @dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 0
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def slot_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that sets its slots directly.

    Raises TypeError for a class that is not one, or whose fields use ``default_factory``,
    ``init=False``, ``kw_only`` or ``__post_init__`` (none is needed by the classes it serves;
    the generated code stays this simple).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    namespace: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        if not field.init or field.kw_only or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{name}: only plain fields and plain defaults")
        if field.default is dataclasses.MISSING:
            args.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            args.append(f"{name}=_default_{name}")
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # noqa: S102 - code made above from the field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
