"""The tiny JSON path subset: what it reads, and errors that name the failing segment."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twcmaster.sources.jsonpath import JsonPathError, compile_path, find

FRONIUS = {
    "Body": {"Data": {"Site": {"P_PV": 3480.5, "P_Load": -726.0, "P_Grid": None}}},
    "Head": {"Status": {"Code": 0}},
}
DOC = {
    "data": [{"value": 12.5, "unit": "kW"}, {"value": 7}],
    "a": {"b": {"key with space": 42, 'quote"d': 1, "0": "zero"}},
}


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("$.Body.Data.Site.P_PV", FRONIUS, 3480.5),
        ("Body.Data.Site.P_Load", FRONIUS, -726.0),
        ("$.Body.Data.Site.P_Grid", FRONIUS, None),
        ("data[0].value", DOC, 12.5),
        ("$.data[1].value", DOC, 7),
        ("$.data[-1].value", DOC, 7),
        ('a.b["key with space"]', DOC, 42),
        ("a.b['key with space']", DOC, 42),
        ('$["a"]["b"]["quote\\"d"]', DOC, 1),
        ('a.b["0"]', DOC, "zero"),
        ("$", 1559.6, 1559.6),
        ("[1]", [10, 20], 20),
        ("$[0][1]", [[1, 2]], 2),
        ("$.phase-1_W", {"phase-1_W": 230}, 230),
    ],
)
def test_finds(path, document, expected):
    assert find(document, path) == expected
    assert compile_path(path).find(document) == expected


@pytest.mark.parametrize(
    ("path", "document", "message"),
    [
        (
            "$.Body.Data.Site.P_Solar",
            FRONIUS,
            "no key 'P_Solar' at $.Body.Data.Site (keys there: P_PV, P_Load, P_Grid)",
        ),
        ("$.Body.Data.Site.P_PV.x", FRONIUS, ".x needs an object at $.Body.Data.Site.P_PV"),
        ("data[2].value", DOC, "[2] is out of range at $.data (a list of 2)"),
        ("data.value", DOC, ".value needs an object at $.data, found a list of 2"),
        ("a[0]", DOC, "[0] needs a list at $.a, found an object"),
        ('a.b["no such"]', DOC, "no key 'no such' at $.a.b"),
        ("$.x", {}, "no key 'x' at $ (the object there is empty)"),
        ("$.x.y", {"x": "unavailable"}, "found the string 'unavailable'"),
        ("$.x.y", {"x": None}, "found null"),
    ],
)
def test_errors_name_the_failing_segment(path, document, message):
    with pytest.raises(JsonPathError) as caught:
        find(document, path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(path)


def test_long_key_lists_are_shortened():
    document = {f"k{i}": i for i in range(20)}
    with pytest.raises(JsonPathError, match=r"k7, \.\.\. \(20 keys\)"):
        find(document, "$.missing")


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("", "must not be empty"),
        ("$.", "a key name after '.' at character 3"),
        ("a..b", "a key name after '.' at character 3"),
        ("$a", "'.' or '[' between segments at character 2"),
        ("a[", "a closing ']' at character 2"),
        ("a[x]", 'a list position like [0] or a quoted key like ["x"]'),
        ("a[1.5]", "a list position"),
        ('a["b]', 'a closing " for the key'),
        ('a["b"', "']' after the quoted key"),
        ("a b", "'.' or '[' between segments at character 2"),
        ("a]", "'.' or '[' between segments at character 2"),
    ],
)
def test_syntax_errors_say_where(path, where):
    with pytest.raises(JsonPathError) as caught:
        compile_path(path)
    assert where in str(caught.value)


def test_non_text_path_is_an_error():
    with pytest.raises(JsonPathError, match="must be a string"):
        compile_path(3)  # type: ignore[arg-type]


_keys = st.text(min_size=1, max_size=8)
_steps = st.lists(st.one_of(_keys, st.integers(0, 3)), max_size=5)


def _bracketed(step: str | int) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    return '["' + step.replace("\\", "\\\\").replace('"', '\\"') + '"]'


@given(_steps, st.integers())
def test_any_key_can_be_reached_with_a_bracketed_path(steps, leaf):
    """Build a document along the steps, spell the path in bracket form, find the leaf."""
    document: object = leaf
    for step in reversed(steps):
        document = [None] * step + [document] if isinstance(step, int) else {step: document}
    path = "$" + "".join(_bracketed(step) for step in steps)
    assert compile_path(path).steps == tuple(steps)
    assert compile_path(path).find(document) == leaf
