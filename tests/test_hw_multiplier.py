# amaranth: UnusedElaboratable=no
"""Tests of the multiplier (hw/arith/multiplier.py): its products and clock enable in Amaranth's own
simulator (a Verilator build would cost more than it checks), and its argument checks."""

import random
import re

import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hw.arith.multiplier import Multiplier


def simulate(unit, operands, enables):
    """Drive ``(a, b)`` pairs with the clock enable of each cycle; return ``p`` after each edge
    and what a register model of the unit says it should be."""
    got, want = [], []
    # Register model: the operands, then the products in flight, the newest first.
    operand_regs, products = (0, 0), [0] * (unit.latency - 1)

    async def bench(ctx):
        nonlocal operand_regs, products
        for (a, b), en in zip(operands, enables):
            ctx.set(unit.a, a)
            ctx.set(unit.b, b)
            ctx.set(unit.en, en)
            await ctx.tick()
            if en:
                if unit.latency == 1:
                    products = [a * b]
                else:
                    a_reg, b_reg = operand_regs
                    operand_regs, products = (a, b), [a_reg * b_reg] + products[:-1]
            got.append(ctx.get(unit.p))
            want.append(products[-1])

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


# (18, 18): the ECP5's MULT18X18D, where a product of a wider `a` is cut in two (latency 3).
@pytest.mark.parametrize("a_width,b_width,is_signed,latency,slice_widths", [
    (27, 18, True, 2, None), (27, 18, True, 1, None), (26, 17, False, 2, None),
    (3, 1, True, 1, None), (27, 18, True, 3, None), (26, 17, False, 3, None),
    (27, 18, True, 3, (18, 18)), (26, 16, True, 3, (18, 18)), (26, 17, False, 3, (18, 18)),
    (19, 18, True, 3, (18, 18)), (18, 18, True, 3, (18, 18)), (18, 17, False, 3, (18, 18))])
def test_products_at_full_rate(a_width, b_width, is_signed, latency, slice_widths):
    unit = Multiplier(a_width=a_width, b_width=b_width, signed=is_signed, latency=latency,
                      slice_widths=slice_widths)
    pairs = operands(a_width, b_width, is_signed, 200, seed=1)
    got, want = simulate(unit, pairs, [1] * len(pairs))
    assert got == want
    # Each product appears exactly `latency` edges after its operands.
    assert got[latency - 1:] == [a * b for a, b in pairs][:len(pairs) - latency + 1]


@pytest.mark.parametrize("latency,slice_widths", [(1, None), (2, None), (3, None),
                                                  (3, (18, 18))])
def test_clock_enable_stalls_every_register(latency, slice_widths):
    unit = Multiplier(a_width=27, b_width=18, latency=latency, slice_widths=slice_widths)
    pairs = operands(27, 18, True, 300, seed=2)
    rng = random.Random(3)
    enables = [int(rng.random() < 0.5) for _ in pairs]
    got, want = simulate(unit, pairs, enables)
    assert got == want


@pytest.mark.parametrize("latency,slice_widths", [(2, None), (3, None), (3, (18, 18))])
def test_operand_enable_holds_a_only(latency, slice_widths):
    unit = Multiplier(a_width=24, b_width=16, a_enable=True, latency=latency,
                      slice_widths=slice_widths)
    pairs = operands(24, 16, True, 300, seed=4)
    rng = random.Random(5)
    enables = [(int(rng.random() < 0.8), int(rng.random() < 0.5)) for _ in pairs]
    got, want, a_reg, b_reg, products = [], [], 0, 0, [0] * (latency - 1)

    async def bench(ctx):
        nonlocal a_reg, b_reg, products
        for (a, b), (en, a_en) in zip(pairs, enables):
            ctx.set(unit.a, a)
            ctx.set(unit.b, b)
            ctx.set(unit.en, en)
            ctx.set(unit.a_en, a_en)
            await ctx.tick()
            if en:
                products = [a_reg * b_reg] + products[:-1]
                b_reg, a_reg = b, (a if a_en else a_reg)
            got.append(ctx.get(unit.p))
            want.append(products[-1])

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert got == want


class _HardMultipliers:
    """A stand-in for a platform whose hard multipliers are 18 x 18 bits signed, as
    ``boards.ulx3s.ULX3SPlatform`` says."""
    multiplier_slice = (18, 18)


@pytest.mark.parametrize("a_width,latency,platform,products", [
    (27, 3, None, 1), (27, 3, _HardMultipliers(), 2), (18, 3, _HardMultipliers(), 1),
    (27, 2, _HardMultipliers(), 1)])
def test_platform_slices_a_wide_product(a_width, latency, platform, products):
    """With latency 3, a platform's narrower hard multiplier takes a wide ``a`` in two parts."""
    unit = Multiplier(a_width=a_width, b_width=18, latency=latency)
    text = rtlil.convert(unit, platform=platform)
    assert text.count("cell $mul ") == products


def test_b_must_fit_the_slice():
    unit = Multiplier(a_width=27, b_width=18, latency=3, slice_widths=(18, 12))
    with pytest.raises(ValueError, match="^Multiplier b_width 18 does not fit the platform's "
                                         "18 x 12 multiplier$"):
        rtlil.convert(unit)


def test_operand_enable_needs_the_operand_register():
    with pytest.raises(ValueError, match="a_enable needs latency 2 or 3"):
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


@pytest.mark.parametrize("latency", [0, 4, 2.0, True, "2"])
def test_latency_is_checked(latency):
    with pytest.raises(ValueError, match=f"Multiplier latency must be 1, 2 or 3 cycles, "
                                         f"not {latency!r}"):
        Multiplier(a_width=8, b_width=8, latency=latency)


def test_signed_is_a_bool():
    with pytest.raises(TypeError, match="Multiplier signed must be a bool, not 1"):
        Multiplier(a_width=8, b_width=8, signed=1)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        Multiplier(8, 8)
