# amaranth: UnusedElaboratable=no
"""Tests of the GELU unit (hw/arith/gelu.py) against its twin (model/arith/gelu.py): the cocotb
bench ``sim.benches.gelu`` under Verilator, and the argument checks."""

import random
import re

import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from hw.arith.gelu import Gelu
from hw.arith.interp import InterpDatapath
from model.arith.gelu import gelu
from model.numerics import DEFAULT, EDGEMOE, Fixed
from sim.benches.gelu import gelu_design
from sim.runner import cocotb_tests
from sim.pysim import stream_through


# The default format subtracts at the table's precision and rounds (extra = 3); upstream's has
# more fraction bits than the table and shifts the bump left instead (extra = -3).
CONFIGS = [dict(lanes=2, numerics="default"), dict(lanes=1, numerics="edgemoe")]

test_gelu = cocotb_tests("sim.benches.gelu", gelu_design, configs=CONFIGS)


def simulate(unit, payloads, **kwargs):
    return stream_through(unit, payloads, list, **kwargs)


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
