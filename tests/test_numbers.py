import math

from hypothesis import given
from hypothesis import strategies as st

from twcmaster.numbers import finite_number, finite_or, non_negative, whole_count


def test_numbers_and_numeric_text_are_read():
    assert finite_number(3) == 3.0
    assert finite_number(2.5) == 2.5
    assert finite_number(" 230.5 ") == 230.5
    assert finite_number("16") == 16.0


def test_garbage_is_none():
    for value in (None, True, False, "", "unavailable", "NULL", math.nan, math.inf, -math.inf,
                  "nan", "inf", [], {}, object(), 10**309, "1e999"):  # fmt: skip
        assert finite_number(value) is None, value


def test_defaults_and_bounds():
    assert finite_or("x", 7.0) == 7.0
    assert non_negative(-3) == 0.0
    assert non_negative("4.5") == 4.5
    assert whole_count(2.9) == 2
    assert whole_count("garbage") == 0


@given(st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text()))
def test_result_is_always_finite_or_none(value):
    number = finite_number(value)
    assert number is None or math.isfinite(number)
    assert math.isfinite(finite_or(value, 0.0))
    assert non_negative(value) >= 0
