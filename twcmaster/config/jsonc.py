"""TWCManager's "JSON with comments" -> a dict, and the file read that comes first.

The text is JSON plus ``#`` / ``//`` comment lines, trailing ``#`` / ``//`` comments and
trailing commas. A key written twice in one object, nesting deeper than ``MAX_NESTING_DEPTH``
and syntax errors are ``ConfigError``s naming the line and column (with a hint for the usual
mistakes) or the key path. ``read_regular_file`` reads only a regular file of bounded size.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from typing import Any

from twcmaster.config.problems import ConfigError, Problem, describe_value, kind

CONFIG_MAX_BYTES = 1 << 20  # 1 MiB; TWCManager's commented sample config.json is ~36 kB
# Levels of {...} / [...]; TWCManager's deepest (policy rules) are ~6. Also keeps json,
# deepcopy and our walks far from Python's recursion limit.
MAX_NESTING_DEPTH = 64


def parse_config_text(text: str, source: str = "<config>") -> dict:
    """Parse TWCManager's "JSON with comments"; raise ConfigError naming line and column,
    or the key path of a duplicated key."""
    # Split on "\n" only: json counts lines that way, and CRs of CRLF files are dropped.
    original_lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    stripped_lines = []
    for number, line in enumerate(original_lines, start=1):
        stripped, open_quote = _strip_comment(line)
        if open_quote is not None:
            message = "string not closed (a string must end on the line it starts)"
            raise _syntax_error(source, original_lines, number, open_quote + 1, message)
        stripped_lines.append(stripped)
    cleaned = _drop_trailing_commas("\n".join(stripped_lines))
    if not cleaned.strip():
        raise ConfigError([Problem("", f"{source}: the file is empty (or holds only comments)")])
    deep_at = nesting_too_deep_at(cleaned)
    if deep_at is not None:
        line = cleaned.count("\n", 0, deep_at) + 1
        column = deep_at - cleaned.rfind("\n", 0, deep_at)
        message = f"nested deeper than {MAX_NESTING_DEPTH} levels of {{...}} / [...]"
        raise _syntax_error(source, original_lines, line, column, message)
    try:
        # strict=False lets tabs inside strings through, as TWCManager's loader did.
        data = loads_without_duplicates(cleaned, strict=False)
    except json.JSONDecodeError as exc:
        message = exc.msg + _syntax_hint(exc, stripped_lines)
        raise _syntax_error(source, original_lines, exc.lineno, exc.colno, message) from None
    except DuplicateKeysError as exc:
        problems = [
            Problem(path, _duplicate_message(count, last)) for path, count, last in exc.found
        ]
        raise ConfigError(problems, source) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("", f"{source}: expected one {{...}} object at the top, got {kind(data)}")]
        )
    return data


def _duplicate_message(count: int, last: Any) -> str:
    return (
        f"duplicate key: written {count} times; JSON keeps only the last "
        f"({describe_value(last)}) and silently ignores the others; keep one"
    )


def _strip_comment(line: str) -> tuple[str, int | None]:
    """Blank a whole-line comment, or cut a trailing one found outside strings.

    Returns the kept text (columns unchanged) and the index of a quote left open at the end
    of the line, if any. Unlike TWCManager, a ``#`` inside a quoted value (a password, a URL)
    survives.
    """
    if line.lstrip().startswith(("#", "//")):
        return "", None
    open_quote = None
    escaped = False
    for index, char in enumerate(line):
        if open_quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                open_quote = None
        elif char == '"':
            open_quote = index
        elif char == "#" or line.startswith("//", index):
            return line[:index], None
    return line, open_quote


_CLOSER_AHEAD = re.compile(r"\s*[}\]]")


def _outside_strings(text: str) -> Iterator[tuple[int, str]]:
    """(index, char) of every character that is not part of a JSON string."""
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            yield index, char


def _drop_trailing_commas(text: str) -> str:
    """Replace a comma that directly precedes ``}`` or ``]`` with a space (keeps columns)."""
    chars = list(text)
    for index, char in _outside_strings(text):
        if char == "," and _CLOSER_AHEAD.match(text, index + 1):
            chars[index] = " "
    return "".join(chars)


def nesting_too_deep_at(text: str, limit: int = MAX_NESTING_DEPTH) -> int | None:
    """Index of the first ``{`` or ``[`` nested deeper than ``limit`` in JSON text, or None.

    Checked before json.loads, which would raise RecursionError (a traceback, not a
    message) on a few thousand levels."""
    depth = 0
    for index, char in _outside_strings(text):
        if char in "{[":
            depth += 1
            if depth > limit:
                return index
        elif char in "}]":
            depth -= 1
    return None


class DuplicateKeysError(ValueError):
    """Keys written twice in one object. ``found``: (key path, times written, last value)."""

    def __init__(self, found: list[tuple[str, int, Any]]) -> None:
        self.found = found
        super().__init__(", ".join(f"{path} ({count} times)" for path, count, _ in found))


def loads_without_duplicates(text: str, **kwargs: Any) -> Any:
    """json.loads, but a key written twice in one object raises DuplicateKeysError.

    Plain json keeps the last of two ``"wiringMaxAmpsAllTWCs"`` silently; a safety limit
    must not change by a forgotten line further down."""
    repeats: list[tuple[dict, str, Any]] = []  # (object, key, the value it replaced)

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj: dict = {}
        for key, value in pairs:
            if key in obj:
                repeats.append((obj, key, obj[key]))
            obj[key] = value
        return obj

    data = json.loads(text, object_pairs_hook=pairs_hook, **kwargs)
    if repeats:
        raise DuplicateKeysError(_duplicate_paths(data, repeats))
    return data


def _duplicate_paths(data: Any, repeats: list[tuple[dict, str, Any]]) -> list[tuple[str, int, Any]]:
    """Key paths of the repeated keys, in file order (the hook cannot know them)."""
    by_object: dict[int, dict[str, list[Any]]] = {}
    for obj, key, replaced in repeats:
        by_object.setdefault(id(obj), {}).setdefault(key, []).append(replaced)
    found = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:  # no recursion: the depth is bounded, but stay away from the limit anyway
        node, path = stack.pop()
        children: list[tuple[Any, str]] = []
        if isinstance(node, dict):
            for key, replaced in by_object.get(id(node), {}).items():
                key_path = f"{path}.{key}" if path else key
                found.append((key_path, len(replaced) + 1, node[key]))
                children += [(value, key_path) for value in replaced]  # repeats inside them
            children += [(v, f"{path}.{k}" if path else k) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node)]
        stack.extend(reversed(children))
    return found


def _syntax_hint(exc: json.JSONDecodeError, lines: list[str]) -> str:
    """Explain the usual mistakes behind json's terse messages."""
    rest = exc.doc[exc.pos : exc.pos + 5]
    if exc.msg == "Expecting ',' delimiter":
        previous = _last_code_line(lines, exc.lineno - 1, exc.colno - 1)
        if previous < exc.lineno:
            return (
                f" (missing comma before line {exc.lineno}?"
                f" the value before it ends on line {previous})"
            )
        return " (missing comma?)"
    if rest.startswith("'"):
        return " (JSON needs double quotes around keys and strings)"
    if rest.startswith(("True", "False", "None")):
        return " (write true, false and null in lower case)"
    if exc.msg.startswith("Expecting property name") and rest[:1].isalpha():
        return " (keys need double quotes)"
    return ""


def _last_code_line(lines: list[str], line_index: int, column: int) -> int:
    """1-based number of the last line with code before the given 0-based position."""
    if lines[line_index][:column].strip():
        return line_index + 1
    for index in range(line_index - 1, -1, -1):
        if lines[index].strip():
            return index + 1
    return line_index + 1


_SHOWN_LINE_CHARS = 100  # of a long line, the part around the error is shown


def _syntax_error(
    source: str, lines: list[str], line: int, column: int, message: str
) -> ConfigError:
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = column
    if len(shown) > _SHOWN_LINE_CHARS:  # a minified or hostile one-line file
        start = max(column - 1 - _SHOWN_LINE_CHARS // 2, 0)
        head = "..." if start > 0 else ""
        tail = "..." if start + _SHOWN_LINE_CHARS < len(shown) else ""
        shown = head + shown[start : start + _SHOWN_LINE_CHARS] + tail
        caret = column - start + len(head)
    gutter = f"{line:>5} | "
    text = (
        f"{source}, line {line}, column {column}: {message}\n"
        f"{gutter}{shown}\n"
        f"{' ' * (len(gutter) - 2)}| {' ' * (caret - 1)}^"
    )
    return ConfigError([Problem("", text)])


# ------------------------------------------------------------------ the file itself


class FileRejectedError(ValueError):
    """The path opens, but not to a file we read: not a regular file, or too large."""


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The content of a regular file of at most ``max_bytes``; FileRejectedError otherwise.

    The checks are made on the opened descriptor, so the file cannot be swapped between a
    check and the open. O_NONBLOCK keeps the open of a FIFO from waiting for a writer (and
    does nothing to a regular file); nothing but a regular file is read (a symlink to
    /dev/zero never ends). OSError (FileNotFoundError ...) passes through.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRejectedError(f"not a regular file but {_file_kind(path, mode)}")
        chunks = []
        left = max_bytes + 1  # one byte more than allowed tells "too large" from "just fits"
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        if left == 0:
            raise FileRejectedError(f"larger than {_size_text(max_bytes)}, the limit for it")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _file_kind(path: str | os.PathLike, mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((text for test, text in kinds if test(mode)), "not a file")
    target = os.path.realpath(path)  # for the message only
    return f"{kind} ({target})" if os.path.islink(path) else kind


def _size_text(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    return f"{size >> 10} KiB" if size % (1 << 10) == 0 else f"{size} bytes"
