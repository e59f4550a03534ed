# amaranth: UnusedElaboratable=no
"""Tests of the reciprocal unit (hw/arith/reciprocal.py) against its twin
(model/arith/reciprocal.py): the
cocotb bench ``sim.benches.reciprocal`` under Verilator, many more inputs in Amaranth's
simulator, and the ports."""

import random

import pytest
from amaranth.hdl import signed, unsigned

from hw.arith.interp import InterpDatapath
from hw.arith.reciprocal import K_WIDTH, RESULT_LAYOUT, Reciprocal, ReciprocalDatapath
from model.numerics import MANT_FRAC, SUM_FRAC, SUM_WIDTH
from sim.benches.reciprocal import below_one, corner_inputs, random_inputs, reciprocal_design, twin
from sim.runner import cocotb_tests
from sim.pysim import stream_through


test_reciprocal = cocotb_tests("sim.benches.reciprocal", reciprocal_design, configs=[{}])


def simulate(unit, payloads, **kwargs):
    return stream_through(unit, payloads, lambda p: (p.r, p.k), **kwargs)


def test_every_input_from_one_to_four():
    # k = 0 and 1 and every position inside a table segment; then the rest of the range.
    inputs = list(range(1 << SUM_FRAC, 1 << (SUM_FRAC + 2), 7)) + random_inputs(3000, seed=5)
    received, times_in, times_out = simulate(Reciprocal(), inputs)
    assert received == twin(inputs)
    assert {out - into for into, out in zip(times_in, times_out)} == {Reciprocal.LATENCY}


def test_corners_and_below_one_under_backpressure():
    inputs = corner_inputs() + below_one()
    random.Random(1).shuffle(inputs)
    received, _, _ = simulate(Reciprocal(), inputs, idle=0.3, backpressure=0.4, seed=2)
    assert received == twin(inputs)


def test_below_one_gives_the_result_of_one():
    received, _, _ = simulate(Reciprocal(), below_one())
    assert received == [((1 << MANT_FRAC) - 1, 0)] * len(below_one())


def test_ports_and_properties():
    unit = Reciprocal()
    assert unit.i.payload.shape() == signed(SUM_WIDTH)
    assert unit.o.payload.shape() == RESULT_LAYOUT
    assert RESULT_LAYOUT["r"].shape == unsigned(MANT_FRAC)
    assert RESULT_LAYOUT["k"].shape == unsigned(K_WIDTH)
    # The largest sum, 2**(SUM_WIDTH - 1) - 1, needs the largest k.
    assert (1 << K_WIDTH) > SUM_WIDTH - 2 - SUM_FRAC
    assert Reciprocal.LATENCY == ReciprocalDatapath.LATENCY == InterpDatapath.LATENCY + 2


def test_takes_no_arguments():
    with pytest.raises(TypeError):
        Reciprocal(27)
    with pytest.raises(TypeError):
        ReciprocalDatapath(width=27)
