"""quick_init: the one-call __init__ builds the same frozen dataclass instances."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from twcmaster.quickinit import quick_init


@dataclass(frozen=True)
class Plain:
    a: int
    b: str
    c: float = 1.5
    d: tuple[int, ...] = ()


@quick_init
@dataclass(frozen=True)
class Quick:  # Plain, built by quick_init's __init__
    a: int
    b: str
    c: float = 1.5
    d: tuple[int, ...] = ()


def test_the_same_fields_defaults_equality_hash_and_repr():
    for args, kwargs in [((1, "x"), {}), ((1, "x", 2.0), {"d": (3,)}), ((), {"b": "y", "a": 2})]:
        plain, quick = Plain(*args, **kwargs), Quick(*args, **kwargs)
        assert dataclasses.astuple(quick) == dataclasses.astuple(plain)
        assert quick == Quick(*args, **kwargs) and hash(quick) == hash(Quick(*args, **kwargs))
        assert repr(quick) == repr(plain).replace("Plain", "Quick")
    assert Quick(1, "x") != Quick(2, "x")


def test_still_frozen_and_replaceable():
    quick = Quick(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.a = 2  # type: ignore[misc]
    assert dataclasses.replace(quick, c=9.0) == Quick(1, "x", 9.0)
    with pytest.raises(TypeError):
        Quick(1)  # type: ignore[call-arg]


def test_refuses_what_it_does_not_handle():
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclass(frozen=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True)
    class Factory:
        a: list[int] = field(default_factory=list)

    @dataclass(frozen=True)
    class NotInit:
        a: int
        b: int = field(default=0, init=False)

    for cls in (Mutable, Slotted, PostInit, Factory, NotInit):
        with pytest.raises(TypeError):
            quick_init(cls)
