# amaranth: UnusedElaboratable=no
"""Tests of the inverse square root unit (hw/rsqrt.py) against its twin (model/rsqrt.py): the
cocotb bench ``sim.benches.rsqrt`` under Verilator, every input of a small width in Amaranth's
simulator, and the argument checks."""

import random

import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from hw.interp import InterpDatapath
from hw.rsqrt import DEFAULT_WIDTH, Rsqrt
from model.layernorm import SQUARE_BITS
from model.numerics import MANT_FRAC
from model.rsqrt import rsqrt
from sim.benches.rsqrt import corner_inputs, rsqrt_design
from sim.runner import cocotb_tests


test_rsqrt = cocotb_tests("sim.benches.rsqrt", rsqrt_design, configs=[dict(width=DEFAULT_WIDTH)])


def simulate(unit, inputs, *, idle=0.0, backpressure=0.0, seed=0):
    """Stream ``inputs`` through ``unit`` in Amaranth's simulator; return the ``(r, e)`` results
    and the cycle of each transfer on ``i`` and on ``o``."""
    rng = random.Random(seed)
    received, times_in, times_out = [], [], []

    async def bench(ctx):
        queue, offering, cycle = list(inputs), False, 0
        while len(received) < len(inputs):
            if not offering and queue and rng.random() >= idle:
                offering = True
            ctx.set(unit.i.valid, offering)
            if offering:
                ctx.set(unit.i.payload, queue[0])
            ctx.set(unit.o.ready, rng.random() >= backpressure)
            _, _, i_ready, o_valid, o_ready, o_payload = await ctx.tick().sample(
                unit.i.ready, unit.o.valid, unit.o.ready, unit.o.payload)
            cycle += 1
            if offering and i_ready:
                queue.pop(0)
                offering = False
                times_in.append(cycle)
            if o_valid and o_ready:
                received.append((o_payload.r, o_payload.e))
                times_out.append(cycle)
            assert cycle < 10 * len(inputs) + 100, "the unit is stuck"

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return received, times_in, times_out


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
