"""A faster ``__init__`` for the frozen dataclasses built at every step of the bus.

A frozen dataclass's generated ``__init__`` stores each field with ``object.__setattr__``
(its own ``__setattr__`` refuses): one call per field, which makes a 6-field value cost
about four times a plain class. The simulator builds millions of them in a day (a step's
``Step``, a reading, the heartbeat events, the allocation's views). ``quick_init`` gives
such a class an ``__init__`` that stores the instance's whole ``__dict__`` in one call.
Everything else stays the dataclass's: the fields, their defaults, equality, hash, repr,
``dataclasses.replace`` and the refusal to change a field afterwards.

Only for the plain case, checked when the class is defined: frozen, no ``__slots__``, no
``__post_init__``, every field an ``__init__`` parameter in order with a plain default or none.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Apply on top of ``@dataclass(frozen=True)`` (see the module docstring)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"quick_init: {cls.__name__} is not a frozen dataclass")
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"quick_init: {cls.__name__} has __slots__ or __post_init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [field.name for field in fields]
    generated = list(inspect.signature(cls.__init__).parameters.values())[1:]
    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if [p.name for p in generated] != names or any(p.kind is not plain for p in generated):
        raise TypeError(f"quick_init: {cls.__name__}'s __init__ is not its fields in order")
    namespace: dict[str, object] = {"_set": object.__setattr__}
    arguments = []
    for field in fields:
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"quick_init: {cls.__name__}.{field.name} has a default_factory")
        if field.default is dataclasses.MISSING:
            arguments.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            arguments.append(f"{field.name}=_default_{field.name}")
    values = ", ".join(f"{name!r}: {name}" for name in names)
    source = (
        f"def __init__(self, {', '.join(arguments)}):\n    _set(self, '__dict__', {{{values}}})\n"
    )
    exec(source, namespace)  # (built above from the field names only)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
    return cls
