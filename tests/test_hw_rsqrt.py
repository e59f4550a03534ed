# amaranth: UnusedElaboratable=no
"""Tests of the inverse square root unit (hw/arith/rsqrt.py) against its twin
(model/arith/rsqrt.py): the
cocotb bench ``sim.benches.rsqrt`` under Verilator, every input of a small width in Amaranth's
simulator, and the argument checks."""

import random

import pytest
from amaranth.hdl import unsigned

from hw.arith.interp import InterpDatapath
from hw.arith.rsqrt import DEFAULT_WIDTH, Rsqrt
from model.units.layernorm import SQUARE_BITS
from model.numerics import MANT_FRAC
from model.arith.rsqrt import rsqrt
from sim.benches.rsqrt import corner_inputs, rsqrt_design
from sim.runner import cocotb_tests
from sim.pysim import stream_through


test_rsqrt = cocotb_tests("sim.benches.rsqrt", rsqrt_design, configs=[dict(width=DEFAULT_WIDTH)])


def simulate(unit, payloads, **kwargs):
    return stream_through(unit, payloads, lambda p: (p.r, p.e), **kwargs)


def twin(inputs):
    r, e = rsqrt(inputs)
    return list(zip(r.tolist(), e.tolist()))


def test_every_input_of_a_small_width():
    # 14 bits: e from 0 to 6, so m comes from left shifts (2e < 16) only; every S once.
    unit = Rsqrt(width=14)
    inputs = list(range(1, 1 << 14))
    received, times_in, times_out = simulate(unit, inputs)
    assert received == twin(inputs)
    assert {out - into for into, out in zip(times_in, times_out)} == {Rsqrt.LATENCY}


def test_odd_width_under_backpressure():
    # 25 bits: the top pair of bits is a single bit, and shifts go both ways around 2e = 16.
    unit = Rsqrt(width=25)
    rng = random.Random(1)
    inputs = corner_inputs(25) + [rng.randint(1, (1 << 25) - 1) for _ in range(300)]
    received, _, _ = simulate(unit, inputs, idle=0.3, backpressure=0.4, seed=2)
    assert received == twin(inputs)


def test_zero_gives_the_result_of_one():
    received, _, _ = simulate(Rsqrt(width=8), [0, 1])
    assert received == [twin([1])[0]] * 2


def test_default_width_holds_layernorm_squares():
    # 1024 squares of SQUARE_BITS-bit values, with room for the epsilon term.
    assert 1024 * (1 << (SQUARE_BITS - 1)) ** 2 < 1 << (DEFAULT_WIDTH - 1)


def test_ports_and_properties():
    unit = Rsqrt()
    assert unit.i.payload.shape() == unsigned(DEFAULT_WIDTH)
    assert (unit.width, unit.e_width) == (DEFAULT_WIDTH, 5)
    assert unit.result_layout["r"].shape == unsigned(MANT_FRAC)
    assert Rsqrt(width=1).e_width == 1 and Rsqrt(width=53).e_width == 5
    assert Rsqrt.LATENCY == InterpDatapath.LATENCY + 2


@pytest.mark.parametrize("width", [0, 54, -1, 8.0, True, None])
def test_width_is_checked(width):
    with pytest.raises(ValueError, match=rf"Rsqrt width must be an integer in \[1, 53\], "
                                         rf"not {width!r}"):
        Rsqrt(width=width)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Rsqrt(46)
