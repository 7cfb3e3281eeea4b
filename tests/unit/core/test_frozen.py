"""slot_init: the same frozen dataclass, with an __init__ that sets its slots directly."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from stream.core.enrich import Output
from stream.core.frozen import slot_init
from stream.core.normalize import WireEvent


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    """What dataclasses makes: the reference."""

    a: int
    b: str = "x"
    c: tuple[str, ...] = ()


@slot_init
@dataclasses.dataclass(frozen=True, slots=True)
class Fast:
    """The same fields under slot_init."""

    a: int
    b: str = "x"
    c: tuple[str, ...] = ()


def test_the_signature_and_defaults_are_the_dataclass_ones() -> None:
    """Same parameters, order and defaults as the generated __init__, for the per-event types
    too (their own fields, checked against a twin made by dataclasses alone)."""
    assert str(inspect.signature(Fast.__init__)) == str(inspect.signature(Plain.__init__))
    for cls in (WireEvent, Output):
        twin = dataclasses.make_dataclass(
            cls.__name__,
            [(f.name, f.type, f) for f in dataclasses.fields(cls)],
            frozen=True,
            slots=True,
        )
        assert str(inspect.signature(cls.__init__)) == str(inspect.signature(twin.__init__))


def test_it_stays_a_frozen_dataclass() -> None:
    """Positional, keyword and default arguments land in their fields; equality, repr, replace
    and pickling behave; assignment still raises FrozenInstanceError."""
    fast = Fast(1, c=("w",))
    assert (fast.a, fast.b, fast.c) == (1, "x", ("w",))
    assert fast == Fast(a=1, b="x", c=("w",))
    assert fast != Fast(2)
    assert repr(fast) == "Fast(a=1, b='x', c=('w',))"
    assert dataclasses.replace(fast, b="y") == Fast(1, "y", ("w",))
    assert pickle.loads(pickle.dumps(fast)) == fast  # noqa: S301 - our own bytes
    assert hash(fast) == hash(Fast(1, "x", ("w",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, "x", (), 4)  # type: ignore[call-arg]


def test_only_frozen_slotted_dataclasses_with_plain_fields_are_taken() -> None:
    """A mutable or unslotted class, a default_factory or a __post_init__ is refused."""

    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            """Nothing."""

    for cls in (Mutable, Unslotted, Factory, Post):
        with pytest.raises(TypeError):
            slot_init(cls)
