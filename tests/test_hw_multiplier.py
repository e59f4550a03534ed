# amaranth: UnusedElaboratable=no
"""Tests of the multiplier (hw/arith/multiplier.py): its products and clock enable in Amaranth's own
simulator (a Verilator build would cost more than it checks), and its argument checks."""

import random
import re

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hw.arith.multiplier import Multiplier


def simulate(unit, operands, enables):
    """Drive ``(a, b)`` pairs with the clock enable of each cycle; return ``p`` after each edge
    and what a register model of the unit says it should be."""
    got, want = [], []
    # Register model: a list of the values in flight, newest first, the product last.
    stages = [(0, 0)] * (unit.latency - 1) + [0]

    async def bench(ctx):
        nonlocal stages
        for (a, b), en in zip(operands, enables):
            ctx.set(unit.a, a)
            ctx.set(unit.b, b)
            ctx.set(unit.en, en)
            await ctx.tick()
            if en:
                if unit.latency == 2:
                    (a_reg, b_reg), _ = stages
                    stages = [(a, b), a_reg * b_reg]
                else:
                    stages = [a * b]
            got.append(ctx.get(unit.p))
            want.append(stages[-1])

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return got, want


def operands(a_width, b_width, is_signed, count, seed):
    rng = random.Random(seed)

    def ends(width):
        low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else (
            0, (1 << width) - 1)
        return low, high, [low, low + 1, -1 if is_signed else 1, 0, high - 1, high]

    a_low, a_high, a_ends = ends(a_width)
    b_low, b_high, b_ends = ends(b_width)
    pairs = [(a, b) for a in a_ends for b in b_ends]
    pairs += [(rng.randint(a_low, a_high), rng.randint(b_low, b_high)) for _ in range(count)]
    return pairs


@pytest.mark.parametrize("a_width,b_width,is_signed,latency", [
    (27, 18, True, 2), (27, 18, True, 1), (26, 17, False, 2), (3, 1, True, 1)])
def test_products_at_full_rate(a_width, b_width, is_signed, latency):
    unit = Multiplier(a_width=a_width, b_width=b_width, signed=is_signed, latency=latency)
    pairs = operands(a_width, b_width, is_signed, 200, seed=1)
    got, want = simulate(unit, pairs, [1] * len(pairs))
    assert got == want
    # Each product appears exactly `latency` edges after its operands.
    assert got[latency - 1:] == [a * b for a, b in pairs][:len(pairs) - latency + 1]


@pytest.mark.parametrize("latency", [1, 2])
def test_clock_enable_stalls_every_register(latency):
    unit = Multiplier(a_width=27, b_width=18, latency=latency)
    pairs = operands(27, 18, True, 300, seed=2)
    rng = random.Random(3)
    enables = [int(rng.random() < 0.5) for _ in pairs]
    got, want = simulate(unit, pairs, enables)
    assert got == want


def test_operand_enable_holds_a_only():
    unit = Multiplier(a_width=16, b_width=16, a_enable=True)
    pairs = operands(16, 16, True, 300, seed=4)
    rng = random.Random(5)
    enables = [(int(rng.random() < 0.8), int(rng.random() < 0.5)) for _ in pairs]
    got, want, a_reg, b_reg, product = [], [], 0, 0, 0

    async def bench(ctx):
        nonlocal a_reg, b_reg, product
        for (a, b), (en, a_en) in zip(pairs, enables):
            ctx.set(unit.a, a)
            ctx.set(unit.b, b)
            ctx.set(unit.en, en)
            ctx.set(unit.a_en, a_en)
            await ctx.tick()
            if en:
                product = a_reg * b_reg
                b_reg, a_reg = b, (a if a_en else a_reg)
            got.append(ctx.get(unit.p))
            want.append(product)

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert got == want


def test_operand_enable_needs_the_operand_register():
    with pytest.raises(ValueError, match="a_enable needs latency=2"):
        Multiplier(a_width=8, b_width=8, latency=1, a_enable=True)
    with pytest.raises(TypeError, match="Multiplier a_enable must be a bool, not 1"):
        Multiplier(a_width=8, b_width=8, a_enable=1)


def test_ports():
    unit = Multiplier(a_width=27, b_width=18)
    assert (unit.a.shape(), unit.b.shape(), unit.p.shape()) == (signed(27), signed(18),
                                                                 signed(45))
    unit = Multiplier(a_width=26, b_width=17, signed=False, latency=1)
    assert (unit.a.shape(), unit.b.shape(), unit.p.shape()) == (unsigned(26), unsigned(17),
                                                                 unsigned(43))
    assert (unit.a_width, unit.b_width, unit.signed, unit.latency) == (26, 17, False, 1)


@pytest.mark.parametrize("a_width,b_width,is_signed,message", [
    (28, 18, True, "Multiplier a_width must be at most 27 bits signed to fit one DSP48E2 "
                   "(27 x 18 bits signed), not 28"),
    (27, 19, True, "Multiplier b_width must be at most 18 bits signed to fit one DSP48E2 "
                   "(27 x 18 bits signed), not 19"),
    (27, 17, False, "Multiplier a_width must be at most 26 bits unsigned to fit one DSP48E2 "
                    "(27 x 18 bits signed), not 27"),
    (26, 18, False, "Multiplier b_width must be at most 17 bits unsigned to fit one DSP48E2 "
                    "(27 x 18 bits signed), not 18"),
])
def test_operands_must_fit_one_dsp(a_width, b_width, is_signed, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Multiplier(a_width=a_width, b_width=b_width, signed=is_signed)


@pytest.mark.parametrize("width", [0, -1, 8.0, True, "8", None])
def test_widths_are_checked(width):
    with pytest.raises(ValueError, match=f"Multiplier a_width must be a positive integer, "
                                         f"not {width!r}"):
        Multiplier(a_width=width, b_width=8)
    with pytest.raises(ValueError, match=f"Multiplier b_width must be a positive integer, "
                                         f"not {width!r}"):
        Multiplier(a_width=8, b_width=width)


@pytest.mark.parametrize("latency", [0, 3, 2.0, True, "2"])
def test_latency_is_checked(latency):
    with pytest.raises(ValueError, match=f"Multiplier latency must be 1 or 2 cycles, "
                                         f"not {latency!r}"):
        Multiplier(a_width=8, b_width=8, latency=latency)


def test_signed_is_a_bool():
    with pytest.raises(TypeError, match="Multiplier signed must be a bool, not 1"):
        Multiplier(a_width=8, b_width=8, signed=1)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Multiplier(8, 8)
