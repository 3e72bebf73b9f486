"""A tiny JSON path subset, for picking one value out of a JSON payload.

Grammar (whole path; whitespace is not allowed outside quotes)::

    path    := ["$"] [name] step*
    step    := "." name | "[" index "]" | "[" quoted "]"
    name    := one or more characters other than  . [ ] " '  and whitespace
    index   := ["-"] digits            (list position; -1 is the last item)
    quoted  := '"' chars '"' | "'" chars "'"   (a key; \\" \\' \\\\ escape)

Examples::

    $.Body.Data.Site.P_PV          Fronius-style nesting ("$." is optional)
    data[0].value                  a list item, then a key
    a.b["key with space"]          a key that is not a plain name
    $["0"]                         the key "0" of an object (not a list position)
    $                              the whole document (a bare number payload)

A path is compiled once (``compile_path``; a syntax error raises ``JsonPathError`` naming the
position), then applied to each payload (``JsonPath.find``; a missing key, an index out of
range or a step into a scalar raises ``JsonPathError`` naming the segment that failed and
what was there instead). Nothing else — no wildcards, filters, slices or recursive descent:
one path gives exactly one value, which is what an energy reading needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_NAME_STOP = frozenset(".[]\"'") | frozenset(" \t\r\n")
_SHOW_KEYS = 8  # keys listed in a "no such key" error


class JsonPathError(ValueError):
    """A path that does not parse, or does not lead to a value in a given document."""


@dataclass(frozen=True)
class JsonPath:
    """A compiled path: ``steps`` are keys (str) and list positions (int)."""

    text: str
    steps: tuple[str | int, ...]

    def find(self, document: Any) -> Any:
        """The value the path leads to in ``document`` (parsed JSON)."""
        value = document
        for depth, step in enumerate(self.steps):
            where = _render(self.steps[:depth])
            segment = _render_step(step)
            if isinstance(step, int):
                if not isinstance(value, list):
                    raise JsonPathError(
                        f"{self.text}: {segment} needs a list at {where}, found {_kind(value)}"
                    )
                if not -len(value) <= step < len(value):
                    raise JsonPathError(
                        f"{self.text}: {segment} is out of range at {where}"
                        f" (a list of {len(value)})"
                    )
                value = value[step]
            else:
                if not isinstance(value, dict):
                    raise JsonPathError(
                        f"{self.text}: {segment} needs an object at {where}, found {_kind(value)}"
                    )
                if step not in value:
                    raise JsonPathError(
                        f"{self.text}: no key {step!r} at {where}{_keys_hint(value)}"
                    )
                value = value[step]
        return value

    def __str__(self) -> str:
        return self.text


def compile_path(text: str) -> JsonPath:
    """Parse ``text`` (see the module docstring). Raises ``JsonPathError``."""
    if not isinstance(text, str):
        raise JsonPathError(f"a JSON path must be a string, got {_kind(text)}")
    if not text:
        raise JsonPathError("a JSON path must not be empty (use $ for the whole document)")
    steps: list[str | int] = []
    pos = 0
    if text.startswith("$"):
        pos = 1
    elif text and text[0] not in ".[":
        name, pos = _name(text, 0)
        steps.append(name)
    while pos < len(text):
        char = text[pos]
        if char == ".":
            if pos + 1 >= len(text) or text[pos + 1] in _NAME_STOP:
                raise _syntax(text, pos + 1, "a key name after '.'")
            name, pos = _name(text, pos + 1)
            steps.append(name)
        elif char == "[":
            step, pos = _bracket(text, pos)
            steps.append(step)
        else:
            raise _syntax(text, pos, "'.' or '[' between segments")
    return JsonPath(text, tuple(steps))


def find(document: Any, path: str | JsonPath) -> Any:
    """``compile_path(path).find(document)``, for one-off use."""
    compiled = path if isinstance(path, JsonPath) else compile_path(path)
    return compiled.find(document)


def _name(text: str, pos: int) -> tuple[str, int]:
    end = pos
    while end < len(text) and text[end] not in _NAME_STOP:
        end += 1
    if end == pos:
        raise _syntax(text, pos, "a key name")
    return text[pos:end], end


def _bracket(text: str, pos: int) -> tuple[str | int, int]:
    start = pos + 1
    if start < len(text) and text[start] in "\"'":
        quote = text[start]
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            char = text[i]
            if char == "\\" and i + 1 < len(text) and text[i + 1] in "\"'\\":
                chars.append(text[i + 1])
                i += 2
            elif char == quote:
                break
            else:
                chars.append(char)
                i += 1
        else:
            raise _syntax(text, start, f"a closing {quote} for the key")
        if i + 1 >= len(text) or text[i + 1] != "]":
            raise _syntax(text, i + 1, "']' after the quoted key")
        return "".join(chars), i + 2
    close = text.find("]", start)
    if close < 0:
        raise _syntax(text, pos, "a closing ']'")
    inner = text[start:close]
    digits = inner[1:] if inner.startswith("-") else inner
    if not digits.isascii() or not digits.isdigit():
        raise _syntax(
            text, start, f'a list position like [0] or a quoted key like ["{inner}"] in [...]'
        )
    return int(inner), close + 1


def _syntax(text: str, pos: int, expected: str) -> JsonPathError:
    return JsonPathError(f"JSON path {text!r}: expected {expected} at character {pos + 1}")


def _render_step(step: str | int) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    if step and not any(char in _NAME_STOP for char in step):
        return f".{step}"
    escaped = step.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{escaped}"]'


def _render(steps: tuple[str | int, ...]) -> str:
    return "$" + "".join(_render_step(step) for step in steps)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return type(value).__name__


def _keys_hint(value: dict) -> str:
    if not value:
        return " (the object there is empty)"
    keys = list(value)
    shown = ", ".join(str(key) for key in keys[:_SHOW_KEYS])
    more = f", ... ({len(keys)} keys)" if len(keys) > _SHOW_KEYS else ""
    return f" (keys there: {shown}{more})"
