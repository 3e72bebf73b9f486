"""What the config checks report: a ``Problem`` names a key path and says what is wrong;
``ConfigError`` carries every error found at once; values are shown as the user wrote them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One finding about the configuration; ``key_path`` is "" for file-level problems."""

    key_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.key_path}: {self.message}" if self.key_path else self.message


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` lists every error found."""

    def __init__(
        self,
        problems: list[Problem],
        source: str | None = None,
        warnings: tuple[Problem, ...] = (),
    ) -> None:
        self.problems = list(problems)
        self.source = source
        self.warnings = tuple(warnings)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        if self.source is None:
            return "\n".join(lines)
        count = len(lines)
        header = f"{self.source}: {count} problem{'s' if count != 1 else ''} in the configuration:"
        return "\n".join([header, *("  " + line for line in lines)])


class Report:
    """Collects errors and warnings while the config is checked."""

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, key_path: str, message: str) -> None:
        self.errors.append(Problem(key_path, message))

    def warn(self, key_path: str, message: str) -> None:
        self.warnings.append(Problem(key_path, message))


def describe_value(value: Any) -> str:
    """A value as the user wrote it in JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind(value: Any) -> str:
    """What a value is, for "expected an object, got ..." messages."""
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a value")
