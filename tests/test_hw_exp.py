# amaranth: UnusedElaboratable=no
"""Tests of the exp unit (hw/arith/exp.py) against its twin (model/arith/exp.py): the cocotb bench
``sim.benches.exp`` under Verilator, every input of small formats in Amaranth's simulator, and
the argument checks."""

import random
import re

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hw.arith.exp import EXP_WIDTH, Exp2, Exp2Datapath
from hw.arith.interp import InterpDatapath
from model.arith.exp import FLOOR
from model.numerics import DEFAULT, EXP_FRAC
from sim.benches.exp import corner_inputs, exp_design, twin
from sim.runner import cocotb_tests
from sim.pysim import stream_through


test_exp = cocotb_tests("sim.benches.exp", exp_design,
                        configs=[dict(lanes=2, width=DEFAULT.act.width, frac=DEFAULT.act.frac)])


def simulate(unit, payloads, **kwargs):
    return stream_through(unit, payloads, list, **kwargs)


@pytest.mark.parametrize("width,frac", [
    # Every input, positive ones included; FLOOR lies below the range, so no clamp.
    (10, 6),
    # Inputs down to -64: the clamp at FLOOR, and shifts of up to 32 bits.
    (13, 6),
])
def test_every_input_of_small_formats(width, frac):
    unit = Exp2(lanes=1, width=width, frac=frac)
    inputs = list(range(-(1 << (width - 1)), 1 << (width - 1)))
    received, times_in, times_out = simulate(unit, [[x] for x in inputs])
    assert [word[0] for word in received] == twin(inputs, frac)
    assert {out - into for into, out in zip(times_in, times_out)} == {Exp2.LATENCY}


def test_upstream_format_under_backpressure():
    # 22 fraction bits (EDGEMOE's activations): 16 bits below the table step.
    width, frac = 33, 22
    unit = Exp2(lanes=3, width=width, frac=frac)
    rng = random.Random(1)
    inputs = corner_inputs(width, frac) + [rng.randint((FLOOR - 2) << frac, 0)
                                           for _ in range(300)]
    words = [inputs[start:start + 3] for start in range(0, len(inputs) - 2, 3)]
    received, _, _ = simulate(unit, words, idle=0.3, backpressure=0.4, seed=2)
    assert received == [twin(word, frac) for word in words]


def test_results_at_the_ends():
    received, _, _ = simulate(Exp2(lanes=4), [[0, 1, -(1 << 25), FLOOR << 16]])
    assert received == [[1 << EXP_FRAC, 1 << EXP_FRAC, 0, 0]]


def test_ports_and_properties():
    unit = Exp2()
    assert unit.i.payload.shape() == data.ArrayLayout(signed(DEFAULT.act.width), 1)
    assert unit.o.payload.shape() == data.ArrayLayout(unsigned(EXP_WIDTH), 1)
    assert (unit.lanes, unit.width, unit.frac) == (1, DEFAULT.act.width, DEFAULT.act.frac)
    assert EXP_WIDTH == EXP_FRAC + 1
    assert Exp2.LATENCY == Exp2Datapath.LATENCY == InterpDatapath.LATENCY + 2
    datapath = Exp2Datapath(width=27, frac=16)
    assert (datapath.x.shape(), datapath.y.shape()) == (signed(27), unsigned(EXP_WIDTH))


@pytest.mark.parametrize("lanes", [0, -1, 2.0, True, None])
def test_lanes_are_checked(lanes):
    with pytest.raises(ValueError, match=f"Exp2 lanes must be a positive integer, not {lanes!r}"):
        Exp2(lanes=lanes)


@pytest.mark.parametrize("width", [1, 0, 8.0, None])
def test_width_is_checked(width):
    with pytest.raises(ValueError, match=f"Exp2 width must be an integer of at least 2, "
                                         f"not {width!r}"):
        Exp2(width=width)


@pytest.mark.parametrize("frac", [5, -1, 16.0, None])
def test_frac_is_checked(frac):
    with pytest.raises(ValueError, match=re.escape(
            f"Exp2 needs an integer of at least 6 fraction bits (the table step is 2**-6), "
            f"not frac={frac!r}")):
        Exp2(frac=frac)
    with pytest.raises(ValueError, match=re.escape("which no DSP48E2")):
        Exp2Datapath(width=40, frac=24)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Exp2(2)
    with pytest.raises(TypeError):
        Exp2Datapath(26, 16)
