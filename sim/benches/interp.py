"""cocotb bench of :class:`hw.arith.interp.Interp` against its twin
``model.arith.interp.InterpTable.evaluate``.

Run from ``tests/test_hw_interp.py``. The design configuration names the table by its import
path and gives the input's fraction bits, e.g. ``{"table": "model.arith.reciprocal.RECIP_TABLE",
"t_frac": 18}``; :func:`table_by_name` resolves it, here and in the pytest file.
"""

import importlib
import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.arith.interp import Interp
from model.arith.interp import InterpTable
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset


def table_by_name(name):
    """The ``InterpTable`` at import path ``name`` (``"package.module.ATTRIBUTE"``)."""
    module, _, attribute = name.rpartition(".")
    table = getattr(importlib.import_module(module), attribute)
    if not isinstance(table, InterpTable):
        raise TypeError(f"{name} is not an InterpTable but {table!r}")
    return table


def interp_design(*, table, t_frac):
    """The design of a bench configuration."""
    return Interp(table=table_by_name(table), t_frac=t_frac)


def _trailing_zeros(value):
    return (value & -value).bit_length() - 1


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twin's view of the design."""

    def __init__(self, dut):
        config = bench_config()
        self.table = table_by_name(config["table"])
        self.t_frac = config["t_frac"]
        unit = interp_design(**config)
        self.latency = unit.LATENCY
        self.width = unit.width
        if len(dut.i__payload) != unit.t_width or len(dut.o__payload) != unit.width:
            raise AssertionError(
                f"Bench configured for {config} (t {unit.t_width} bits, result {unit.width}) "
                f"but the design's ports are {len(dut.i__payload)} and {len(dut.o__payload)} "
                f"bits wide")
        self.dut = dut
        self.b = self.t_frac - self.table.step_log2
        #: The end of the table, the largest valid input.
        self.top = self.table.segments << self.b

    async def run(self, offsets, *, idle=0.0, backpressure=0.0, seed=0):
        """Send ``offsets`` and check every result bit for bit, and the count.

        Returns the source and sink, whose ``times`` let tests check cycle counts.
        """
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(offsets)
        received = await sink.wait_for(len(offsets))

        mask = (1 << self.width) - 1
        expected = [int(value) & mask for value in self.table.evaluate(offsets, self.t_frac)]
        for index, (t, want, got) in enumerate(zip(offsets, expected, received)):
            assert got == want, (
                f"result {index} of {len(offsets)}: t = {t} (segment {t >> self.b}, "
                f"r = {t & ((1 << self.b) - 1)}) gave {got:#x}, twin says {want:#x}")
        # Nothing extra may trickle out after the last expected result.
        for _ in range(2 * self.latency + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(offsets), (
            f"expected {len(offsets)} results, got {len(sink.payloads)}")
        return source, sink

    def random_offsets(self, count, seed):
        rng = random.Random(seed)
        return [rng.randint(0, self.top) for _ in range(count)]

    def corner_offsets(self):
        """Both ends, segment boundaries, and offsets whose product has exactly the rounding
        half-bit set below the shift, for rising and for falling segments."""
        b, top = self.b, self.top
        offsets = [0, 1, top - 1, top]
        for i in sorted({1, 2, self.table.segments // 2, self.table.segments - 1}):
            start = i << b
            offsets += [start - 1, start, start + 1, start + (1 << b) - 1]
        self.half_rising = self.half_falling = 0
        steps = [int(step) for step in self.table.entries[1:] - self.table.entries[:-1]]
        for i, step in enumerate(steps):
            # step * r ends in a 1 followed by b - 1 zeros when r = 2**(b-1-k) times an odd
            # number, k being the trailing zeros of step.
            if step == 0 or b == 0 or _trailing_zeros(step) > b - 1:
                continue
            r = 1 << (b - 1 - _trailing_zeros(step))
            offsets += [(i << b) + odd * r for odd in (1, 3) if odd * r < 1 << b]
            self.half_rising += step > 0
            self.half_falling += step < 0
        return offsets


@cocotb.test()
async def test_full_rate(dut):
    """One result per cycle, each ``latency`` cycles after its input."""
    tb = TB(dut)
    source, sink = await tb.run(tb.random_offsets(300, seed=1))
    cycles = [(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)]
    assert set(cycles) == {tb.latency}, f"latencies in cycles: {sorted(set(cycles))}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idle cycles on ``i`` and random back-pressure on ``o`` lose and reorder nothing;
    the corner offsets are mixed in."""
    tb = TB(dut)
    offsets = tb.random_offsets(600, seed=2) + tb.corner_offsets()
    random.Random(5).shuffle(offsets)
    await tb.run(offsets, idle=0.3, backpressure=0.5, seed=3)


@cocotb.test()
async def test_corners(dut):
    """Ends of the table, segment boundaries and exact rounding halves, back to back."""
    tb = TB(dut)
    offsets = tb.corner_offsets()
    assert tb.half_rising + tb.half_falling >= 8, "corner offsets must hit rounding halves"
    source, sink = await tb.run(offsets)
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"
