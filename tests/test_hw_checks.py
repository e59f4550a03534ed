"""Tests of the argument checks (hw/checks.py): what each accepts, and the exact message and
exception type of what it rejects."""

import re

import pytest

from hw import checks
from model.numerics import DEFAULT, Fixed


def raises(kind, message):
    """``pytest.raises`` for exactly ``message``, nothing before or after it."""
    return pytest.raises(kind, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize("value, expected", [
    (0, True), (-3, True), (1 << 70, True), (True, False), (False, False), (2.0, False),
    ("2", False), (None, False),
])
def test_is_int(value, expected):
    assert checks.is_int(value) is expected


@pytest.mark.parametrize("value", [1, 16, 1 << 40])
def test_positive_accepts(value):
    assert checks.positive("Gather", "rows", value) is None


@pytest.mark.parametrize("value", [0, -1, 2.0, True, None, "4"])
def test_positive_rejects(value):
    with raises(ValueError, f"Gather rows must be a positive integer, not {value!r}"):
        checks.positive("Gather", "rows", value)


def test_at_least():
    assert checks.at_least("SoftmaxStats", "rows", 3, 3) is None
    assert checks.at_least("delay", "stages", 0, 0) is None
    for value in (2, -3, 3.0, True, None):
        with raises(ValueError, f"SoftmaxStats rows must be an integer of at least 3, "
                                f"not {value!r}"):
            checks.at_least("SoftmaxStats", "rows", value, 3)


def test_in_range():
    for value in (1, 30, 53):
        assert checks.in_range("Rsqrt", "width", value, 1, 53) is None
    for value in (0, 54, 8.0, True, None):
        with raises(ValueError, f"Rsqrt width must be an integer in [1, 53], not {value!r}"):
            checks.in_range("Rsqrt", "width", value, 1, 53)


def test_in_range_gives_its_reason():
    with raises(ValueError, "RegisterBlock addr_width must be an integer in [10, 64] to hold "
                            "the 1024-byte map, not 4"):
        checks.in_range("RegisterBlock", "addr_width", 4, 10, 64,
                        reason=" to hold the 1024-byte map")


def test_fixed():
    assert checks.fixed("GELU", "format", DEFAULT.act) is None
    assert checks.fixed("GELU", "format", Fixed(8, 4)) is None
    for value in (16, None, (16, 8)):
        with raises(TypeError, f"GELU format must be a model.numerics.Fixed, not {value!r}"):
            checks.fixed("GELU", "format", value)


@pytest.mark.parametrize("value", [0, 24, -16, 16.0, True])
def test_multiple_of(value):
    checks.multiple_of("Half", "dim", 32, 16, "lanes")
    with pytest.raises(ValueError, match=rf"^Half dim must be a positive multiple of lanes \(16\), "
                                         rf"not {value!r}$"):
        checks.multiple_of("Half", "dim", value, 16, "lanes")
