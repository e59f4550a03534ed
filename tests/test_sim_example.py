# amaranth: UnusedElaboratable=no
"""Tests of the example unit's argument checks and twin (sim/example.py); its bench runs in
tests/test_sim_runner.py."""

import numpy as np
import pytest

from sim.example import AddConstant, add_constant


def test_twin_saturates_at_both_ends():
    x = [-128, -127, -1, 0, 1, 122, 123, 127]
    assert add_constant(x, width=8, constant=5).tolist() == [-123, -122, 4, 5, 6, 127, 127, 127]
    assert add_constant(x, width=8, constant=-100).tolist() == [
        -128, -128, -101, -100, -99, 22, 23, 27]
    assert add_constant(np.array([0]), width=2, constant=1).dtype == np.int64


@pytest.mark.parametrize("width", [1, 0, -3, 8.0, True, "8"])
def test_width_is_checked(width):
    with pytest.raises(ValueError, match=f"Width must be an integer of at least 2, not {width!r}"):
        AddConstant(width=width, constant=0)


@pytest.mark.parametrize("constant", [128, -129, 1.5, None])
def test_constant_is_checked(constant):
    with pytest.raises(ValueError, match=r"Constant must be an integer in \[-128, 127\] for "
                                         rf"width 8, not {constant!r}"):
        AddConstant(width=8, constant=constant)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        AddConstant(8, 5)


def test_properties():
    unit = AddConstant(width=12, constant=-7)
    assert (unit.width, unit.constant, unit.latency) == (12, -7, 2)
