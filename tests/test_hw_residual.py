# amaranth: UnusedElaboratable=no
"""Tests of the residual add (hw/units/residual.py) against its twin (model/units/residual.py): the
cocotb bench ``sim.benches.residual`` under Verilator, and the argument checks."""

import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from hw.units.residual import ResidualAdd
from model.numerics import DEFAULT, Fixed
from sim.benches.residual import residual_design
from sim.runner import cocotb_tests


test_residual = cocotb_tests("sim.benches.residual", residual_design, configs=[dict(lanes=3)])


def test_ports_and_properties():
    unit = ResidualAdd(lanes=4)
    layout = data.ArrayLayout(signed(DEFAULT.act.width), 4)
    assert unit.x.payload.shape() == unit.y.payload.shape() == unit.o.payload.shape() == layout
    assert (unit.lanes, unit.fmt, unit.LATENCY) == (4, DEFAULT.act, 1)
    assert ResidualAdd(lanes=1, fmt=Fixed(8, 3)).o.payload.shape() == data.ArrayLayout(
        signed(8), 1)


@pytest.mark.parametrize("lanes", [0, -2, 2.0, True, None])
def test_lanes_are_checked(lanes):
    with pytest.raises(ValueError, match=f"Residual add lanes must be a positive integer, "
                                         f"not {lanes!r}"):
        ResidualAdd(lanes=lanes)


def test_format_is_checked():
    with pytest.raises(TypeError, match="Residual add format must be a model.numerics.Fixed, "
                                        "not 26"):
        ResidualAdd(lanes=2, fmt=26)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        ResidualAdd(2)
