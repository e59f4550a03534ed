# amaranth: UnusedElaboratable=no
"""Tests of the GELU unit (hw/gelu.py) against its twin (model/gelu.py): the cocotb bench
``sim.benches.gelu`` under Verilator, and the argument checks."""

import random
import re

import pytest
from amaranth.hdl import signed
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.gelu import Gelu
from hw.interp import InterpDatapath
from model.gelu import gelu
from model.numerics import DEFAULT, EDGEMOE, Fixed
from sim.benches.gelu import gelu_design
from sim.runner import cocotb_tests


# The default format subtracts at the table's precision and rounds (extra = 3); upstream's has
# more fraction bits than the table and shifts the bump left instead (extra = -3).
CONFIGS = [dict(lanes=2, numerics="default"), dict(lanes=1, numerics="edgemoe")]

test_gelu = cocotb_tests("sim.benches.gelu", gelu_design, configs=CONFIGS)


def simulate(unit, payloads, *, idle=0.0, backpressure=0.0, seed=0):
    """Stream ``payloads`` (lists of lane values) through ``unit`` in Amaranth's own simulator
    (no build: for the small formats the Verilator bench does not cover); return the results and
    the cycle of each transfer on ``i`` and on ``o``."""
    rng = random.Random(seed)
    received, times_in, times_out = [], [], []

    async def bench(ctx):
        queue, offering, cycle = list(payloads), False, 0
        while len(received) < len(payloads):
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
                received.append(list(o_payload))
                times_out.append(cycle)
            assert cycle < 10 * len(payloads) + 100, "the unit is stuck"

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return received, times_in, times_out


def every_value(fmt, lanes):
    """Every value of ``fmt``, in transfers of ``lanes``; lane k starts k values further on, so
    that every lane sees every value."""
    values = list(range(fmt.min_int, fmt.max_int + 1))
    return [[values[(start + lane) % len(values)] for lane in range(lanes)]
            for start in range(len(values))]


@pytest.mark.parametrize("fmt,lanes", [
    # Every value inside the table, the most negative one too (|x| needs all 8 bits), and no
    # bits below the table step (b = 0).
    (Fixed(8, 5), 2),
    # Crosses the limit both ways; the final rounding drops 11 bits.
    (Fixed(12, 8), 1),
])
def test_every_value_of_small_formats(fmt, lanes):
    unit = Gelu(lanes=lanes, fmt=fmt)
    words = every_value(fmt, lanes)
    received, times_in, times_out = simulate(unit, words)
    assert received == [gelu(word, fmt).tolist() for word in words]
    assert {out - into for into, out in zip(times_in, times_out)} == {Gelu.LATENCY}


def test_more_fraction_bits_than_the_table_under_backpressure():
    # extra = -12, and 26-bit positions r: the multiplier's operands trade places.
    fmt = Fixed(36, 31)
    unit = Gelu(lanes=2, fmt=fmt)
    rng = random.Random(1)
    limit = round(5.5 * 2 ** fmt.frac)
    words = [[rng.randint(-limit - 9, limit + 9) for _ in range(2)] for _ in range(300)]
    words += [[fmt.min_int, fmt.max_int], [limit, -limit], [limit - 1, 1 - limit]]
    received, _, _ = simulate(unit, words, idle=0.2, backpressure=0.4, seed=2)
    assert received == [gelu(word, fmt).tolist() for word in words]


def test_ports_and_properties():
    unit = Gelu()
    layout = data.ArrayLayout(signed(DEFAULT.act.width), 16)
    assert (unit.i.payload.shape(), unit.o.payload.shape()) == (layout, layout)
    assert (unit.lanes, unit.fmt) == (16, DEFAULT.act)
    unit = Gelu(lanes=3, fmt=EDGEMOE.act)
    assert unit.o.payload.shape() == data.ArrayLayout(signed(32), 3)
    assert Gelu.LATENCY == InterpDatapath.LATENCY + 2


@pytest.mark.parametrize("lanes", [0, -1, 2.0, True, None])
def test_lanes_are_checked(lanes):
    with pytest.raises(ValueError, match=f"GELU lanes must be a positive integer, not {lanes!r}"):
        Gelu(lanes=lanes)


def test_format_is_checked():
    with pytest.raises(TypeError, match=r"GELU format must be a model.numerics.Fixed, not 16"):
        Gelu(fmt=16)
    with pytest.raises(ValueError, match=re.escape(
            "GELU needs at least 5 fraction bits (the table step is 2**-5), not 4 "
            "(format <16,4>)")):
        Gelu(fmt=Fixed(16, 4))
    # 27 bits below the table step: 28 signed bits fit neither multiplier port.
    with pytest.raises(ValueError, match=re.escape(
            "Interpolation needs a 14-bit signed step times a 28-bit signed position "
            "(t_frac=32 leaves 27 bits below the table step), which no DSP48E2")):
        Gelu(fmt=Fixed(40, 32))


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Gelu(2)
