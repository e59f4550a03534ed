"""cocotb bench of :class:`sim.example.AddConstant` against its twin
:func:`sim.example.add_constant`.

Run from ``tests/test_sim_runner.py``; the design configuration (``width``, ``constant``) comes
from the runner through :func:`sim.runner.bench_config`.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from sim.example import AddConstant, add_constant
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twin's view of the design."""

    def __init__(self, dut):
        config = bench_config()
        self.width = config["width"]
        self.constant = config["constant"]
        if len(dut.i__payload) != self.width:
            raise AssertionError(
                f"Bench configured for width {self.width} but i__payload is "
                f"{len(dut.i__payload)} bits wide")
        self.dut = dut
        self.low, self.high = -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1

    async def run(self, operands, *, idle=0.0, backpressure=0.0, seed=0):
        """Send ``operands`` and check every result bit for bit, and the count.

        Returns the source and sink, whose ``times`` let tests check cycle counts.
        """
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(operands)
        received = await sink.wait_for(len(operands))

        mask = (1 << self.width) - 1
        expected = [int(value) & mask for value in
                    add_constant(operands, width=self.width, constant=self.constant)]
        for index, (operand, want, got) in enumerate(zip(operands, expected, received)):
            assert got == want, (
                f"result {index} of {len(operands)}: {operand} + {self.constant} gave "
                f"{got:#x}, twin says {want:#x}")
        # Nothing extra may trickle out after the last expected result.
        for _ in range(2 * AddConstant.latency + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(operands), (
            f"expected {len(operands)} results, got {len(sink.payloads)}")
        return source, sink

    def random_operands(self, count, seed):
        rng = random.Random(seed)
        return [rng.randint(self.low, self.high) for _ in range(count)]


@cocotb.test()
async def test_full_rate(dut):
    """One result per cycle, each ``AddConstant.latency`` cycles after its operand."""
    tb = TB(dut)
    source, sink = await tb.run(tb.random_operands(200, seed=1))
    cycles = [(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)]
    assert set(cycles) == {AddConstant.latency}, f"latencies in cycles: {sorted(set(cycles))}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idle cycles on ``i`` and random back-pressure on ``o`` lose and reorder nothing."""
    tb = TB(dut)
    await tb.run(tb.random_operands(400, seed=2), idle=0.3, backpressure=0.5, seed=3)


@cocotb.test()
async def test_corners(dut):
    """Both ends of the range, around zero, and sums just inside and just past each limit."""
    tb = TB(dut)
    c = tb.constant
    around_limits = [tb.high - c - 1, tb.high - c, tb.high - c + 1,
                     tb.low - c - 1, tb.low - c, tb.low - c + 1]
    operands = [tb.low, tb.low + 1, -1, 0, 1, tb.high - 1, tb.high] + [
        value for value in around_limits if tb.low <= value <= tb.high]
    sums = add_constant(operands, width=tb.width, constant=c)
    # The constant's sign decides which end saturates; the configurations cover both.
    saturated_end = tb.high if c > 0 else tb.low
    assert c == 0 or list(sums).count(saturated_end) >= 2, "corner operands must saturate"
    await tb.run(operands * 2, backpressure=0.5, seed=4)
