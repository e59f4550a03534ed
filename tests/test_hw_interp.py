# amaranth: UnusedElaboratable=no
"""Tests of the interpolation unit (hw/arith/interp.py) against its twin (model/arith/interp.py):
the cocotb bench ``sim.benches.interp`` under Verilator, and the argument checks."""

import random
import re

import pytest
from amaranth.hdl import signed, unsigned

from hw.arith.interp import Interp, InterpDatapath
from model.arith.exp import EXP2_TABLE
from model.arith.gelu import D_TABLE
from model.arith.reciprocal import RECIP_TABLE
from sim.benches.interp import interp_design
from sim.runner import cocotb_tests
from sim.pysim import stream_through


# GELU's bump rises then falls (steps of both signs, 18-bit entries); exp2's table has 28-bit
# entries and 21-bit steps, the widest operand, on the multiplier's 27-bit port.
CONFIGS = [dict(table="model.arith.gelu.D_TABLE", t_frac=16),
           dict(table="model.arith.exp.EXP2_TABLE", t_frac=22)]

test_interp = cocotb_tests("sim.benches.interp", interp_design, configs=CONFIGS)


def simulate(unit, payloads, **kwargs):
    return stream_through(unit, payloads, **kwargs)


@pytest.mark.parametrize("table,t_frac", [
    (D_TABLE, D_TABLE.step_log2),       # b = 0: no position bits, only the nodes
    (D_TABLE, D_TABLE.step_log2 + 3),
    (RECIP_TABLE, RECIP_TABLE.step_log2 + 2),
])
def test_every_offset_of_small_formats(table, t_frac):
    unit = Interp(table=table, t_frac=t_frac)
    offsets = list(range((table.segments << (t_frac - table.step_log2)) + 1))
    received, times_in, times_out = simulate(unit, offsets)
    assert received == table.evaluate(offsets, t_frac).tolist()
    assert {out - into for into, out in zip(times_in, times_out)} == {Interp.LATENCY}


def test_wide_position_goes_on_the_wide_port():
    # 26 bits of position (27 signed) and 14-bit steps: the operands trade places.
    t_frac = D_TABLE.step_log2 + 26
    unit = Interp(table=D_TABLE, t_frac=t_frac)
    rng = random.Random(1)
    offsets = [rng.randint(0, D_TABLE.segments << 26) for _ in range(200)]
    received, _, _ = simulate(unit, offsets, idle=0.2, backpressure=0.3, seed=2)
    assert received == D_TABLE.evaluate(offsets, t_frac).tolist()


def test_ports_and_properties():
    unit = Interp(table=D_TABLE, t_frac=16)
    # The end of the table, 176 << 11, needs 19 bits; the entries' peak 18 signed bits.
    assert (unit.i.payload.shape(), unit.o.payload.shape()) == (unsigned(19), signed(18))
    assert (unit.table, unit.t_frac, unit.t_width, unit.width) == (D_TABLE, 16, 19, 18)
    assert Interp.LATENCY == InterpDatapath.LATENCY == InterpDatapath.MULTIPLIER_LATENCY + 2


def test_table_is_checked():
    with pytest.raises(TypeError, match=r"Interpolation table must be a "
                                        r"model.arith.interp.InterpTable, not \[0, 1\]"):
        Interp(table=[0, 1], t_frac=4)


@pytest.mark.parametrize("t_frac", [4, -1, 5.0, None])
def test_t_frac_is_checked(t_frac):
    with pytest.raises(ValueError, match=re.escape(
            f"Interpolation input needs an integer of at least 5 fraction bits (the table "
            f"step is 2**-5), not t_frac={t_frac!r}")):
        Interp(table=D_TABLE, t_frac=t_frac)


def test_operands_must_fit_one_dsp():
    # exp2's steps need 21 bits, so the position cannot take the 27-bit port: 19 bits of it
    # (20 signed) are too many for the 18-bit one.
    with pytest.raises(ValueError, match=re.escape(
            "Interpolation needs a 21-bit signed step times a 20-bit signed position "
            "(t_frac=25 leaves 19 bits below the table step), which no DSP48E2 "
            "(27 x 18 bits signed) multiplies")):
        Interp(table=EXP2_TABLE, t_frac=25)
    Interp(table=EXP2_TABLE, t_frac=23)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Interp(D_TABLE, 16)
