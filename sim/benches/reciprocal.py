"""cocotb bench of :class:`hw.arith.reciprocal.Reciprocal` against its twin
:func:`model.arith.reciprocal.reciprocal`.

Run from ``tests/test_hw_reciprocal.py``; the unit has no parameters (the configuration is
empty); :func:`reciprocal_design` builds it, here and in the pytest file.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.arith.reciprocal import RESULT_LAYOUT, Reciprocal
from model.numerics import SUM_FRAC, SUM_WIDTH
from model.arith.reciprocal import RECIP_TABLE, reciprocal
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset


ONE = 1 << SUM_FRAC
TOP = (1 << (SUM_WIDTH - 1)) - 1


def reciprocal_design():
    """The design of the (empty) bench configuration."""
    return Reciprocal()


def twin(inputs):
    """:func:`model.arith.reciprocal.reciprocal`, with the hardware's documented answer for
    ``s < 1.0``: that of 1.0."""
    r, k = reciprocal([max(s, ONE) for s in inputs])
    return list(zip(r.tolist(), k.tolist()))


def corner_inputs():
    """1.0, the maximum, every power of two with its neighbours, table nodes and halves
    at every shift ``k``."""
    inputs = {ONE, ONE + 1, TOP, TOP - 1}
    for bit in range(SUM_FRAC, SUM_WIDTH - 1):
        inputs.update({(1 << bit) - 1, 1 << bit, (1 << bit) + 1})
    b = SUM_FRAC - RECIP_TABLE.step_log2
    for k in range(SUM_WIDTH - 1 - SUM_FRAC):
        for node in (0, 1, RECIP_TABLE.segments // 2, RECIP_TABLE.segments - 1):
            for offset in (0, 1, 1 << (b - 1), (1 << b) - 1):
                for low in (0, (1 << k) - 1):
                    inputs.add((((1 << SUM_FRAC) + (node << b) + offset) << k) + low)
    return sorted(s for s in inputs if ONE <= s <= TOP)


def below_one():
    """Inputs the twin rejects: 0, just below 1.0, negatives down to the most negative."""
    return [0, 1, ONE - 1, ONE >> 1, -1, -ONE, -(1 << (SUM_WIDTH - 1))]


class TB:
    """Clock, reset, source on ``i``, sink on ``o``."""

    def __init__(self, dut):
        if len(dut.i__payload) != SUM_WIDTH or len(dut.o__payload) != RESULT_LAYOUT.size:
            raise AssertionError(
                f"Expected ports of {SUM_WIDTH} and {RESULT_LAYOUT.size} bits, got "
                f"{len(dut.i__payload)} and {len(dut.o__payload)}")
        self.dut = dut

    async def run(self, inputs, *, idle=0.0, backpressure=0.0, seed=0):
        """Send ``inputs`` and check every ``(r, k)`` bit for bit, and the count."""
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(inputs)
        received = await sink.wait_for(len(inputs))
        r_field, k_field = RESULT_LAYOUT["r"], RESULT_LAYOUT["k"]
        for index, (s, want, got) in enumerate(zip(inputs, twin(inputs), received)):
            r_got = (got >> r_field.offset) & ((1 << r_field.width) - 1)
            k_got = (got >> k_field.offset) & ((1 << k_field.width) - 1)
            assert (r_got, k_got) == want, (
                f"result {index} of {len(inputs)}: reciprocal({s}) gave (r, k) = ({r_got}, "
                f"{k_got}), twin says {want}")
        for _ in range(2 * Reciprocal.LATENCY + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(inputs), (
            f"expected {len(inputs)} results, got {len(sink.payloads)}")
        return source, sink


def random_inputs(count, seed):
    """Log-uniform over [1.0, max]: every shift ``k`` equally often."""
    rng = random.Random(seed)
    inputs = []
    for _ in range(count):
        bits = rng.randint(SUM_FRAC + 1, SUM_WIDTH - 1)
        inputs.append(rng.randint(1 << (bits - 1), (1 << bits) - 1))
    return inputs


@cocotb.test()
async def test_full_rate(dut):
    """One result per cycle, each ``Reciprocal.LATENCY`` cycles after its input."""
    tb = TB(dut)
    source, sink = await tb.run(random_inputs(300, seed=1))
    cycles = {(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)}
    assert cycles == {Reciprocal.LATENCY}, f"latencies in cycles: {sorted(cycles)}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idles on ``i`` and back-pressure on ``o``, corners and inputs below 1.0 mixed in."""
    tb = TB(dut)
    inputs = random_inputs(500, seed=2) + corner_inputs() + below_one()
    random.Random(3).shuffle(inputs)
    await tb.run(inputs, idle=0.3, backpressure=0.5, seed=4)


@cocotb.test()
async def test_corners(dut):
    """1.0, powers of two, the maximum and table nodes, back to back."""
    tb = TB(dut)
    await tb.run(corner_inputs())


@cocotb.test()
async def test_below_one(dut):
    """Inputs below 1.0 (the twin raises) give the result of 1.0."""
    tb = TB(dut)
    assert twin(below_one()) == [tuple(x.item() for x in reciprocal(ONE))] * len(below_one())
    await tb.run(below_one() + [ONE])
