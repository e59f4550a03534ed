"""cocotb bench of :class:`hw.units.residual.ResidualAdd` against its twin
:func:`model.units.residual.residual_add` (default numerics: saturation).

Run from ``tests/test_hw_residual.py``; the design configuration gives the lane count, e.g.
``{"lanes": 3}``; :func:`residual_design` builds it, here and in the pytest file.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.units.residual import ResidualAdd
from model.numerics import DEFAULT
from model.units.residual import residual_add
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes


def residual_design(*, lanes):
    """The design of a bench configuration."""
    return ResidualAdd(lanes=lanes)


class TB:
    """Clock, reset, sources on ``x`` and ``y``, sink on ``o``, and the twin's view."""

    def __init__(self, dut):
        self.lanes = bench_config()["lanes"]
        self.fmt = DEFAULT.act
        if len(dut.o__payload) != self.lanes * self.fmt.width:
            raise AssertionError(
                f"Bench configured for {self.lanes} lanes of {self.fmt} but o__payload is "
                f"{len(dut.o__payload)} bits wide")
        self.dut = dut

    async def run(self, xs, ys, *, idle_x=0.0, idle_y=0.0, backpressure=0.0, seed=0):
        """Send beats ``xs`` and ``ys`` (lists of ``lanes`` values) and check every sum bit for
        bit, and the count. Returns the sources and the sink."""
        await clock_and_reset(self.dut)
        width = self.fmt.width
        source_x = StreamSource(self.dut, "x", idle=idle_x, seed=seed)
        source_y = StreamSource(self.dut, "y", idle=idle_y, seed=seed + 1)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 2)
        source_x.send(pack_lanes(beat, width) for beat in xs)
        source_y.send(pack_lanes(beat, width) for beat in ys)
        received = await sink.wait_for(len(xs))

        expected = residual_add(xs, ys, self.fmt, DEFAULT)
        for index, (x, y, want, got) in enumerate(zip(xs, ys, expected, received)):
            assert got == pack_lanes(want, width), (
                f"beat {index} of {len(xs)}: {x} + {y} gave {got:#x}, twin says "
                f"{pack_lanes(want, width):#x} ({want.tolist()})")
        for _ in range(2 * ResidualAdd.LATENCY + 4):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(xs), (
            f"expected {len(xs)} sums, got {len(sink.payloads)}")
        return source_x, source_y, sink

    def random_beats(self, count, seed):
        """Beats at several scales, so that sums saturate now and then but not always."""
        rng = random.Random(seed)
        beats = []
        for _ in range(count):
            scale = rng.choice([8, 16, self.fmt.width - 2, self.fmt.width - 1])
            beats.append([rng.randint(-(1 << scale), (1 << scale) - 1)
                          for _ in range(self.lanes)])
        return beats


@cocotb.test()
async def test_full_rate(dut):
    """One beat of sums per cycle, each ``LATENCY`` cycles after its operands."""
    tb = TB(dut)
    xs, ys = tb.random_beats(200, seed=1), tb.random_beats(200, seed=2)
    source_x, source_y, sink = await tb.run(xs, ys)
    assert source_x.times == source_y.times, "x and y must be taken together"
    cycles = {(out - into) / PERIOD_NS for into, out in zip(source_x.times, sink.times)}
    assert cycles == {ResidualAdd.LATENCY}, f"latencies in cycles: {sorted(cycles)}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Independent random idles on ``x`` and ``y`` and back-pressure on ``o`` lose, duplicate
    and misalign nothing."""
    tb = TB(dut)
    xs, ys = tb.random_beats(400, seed=3), tb.random_beats(400, seed=4)
    source_x, source_y, _ = await tb.run(xs, ys, idle_x=0.5, idle_y=0.2, backpressure=0.4,
                                         seed=5)
    assert source_x.times == source_y.times, "x and y must be taken together"


@cocotb.test()
async def test_one_input_late(dut):
    """``y`` mostly idle, ``x`` at full rate: ``x`` waits for its partner."""
    tb = TB(dut)
    xs, ys = tb.random_beats(100, seed=6), tb.random_beats(100, seed=7)
    await tb.run(xs, ys, idle_y=0.8, seed=8)


@cocotb.test()
async def test_corners(dut):
    """Both ends of the range against each other and against small values: sums that saturate
    at each end, that just fit, and that cancel."""
    tb = TB(dut)
    low, high = tb.fmt.min_int, tb.fmt.max_int
    pairs = [(low, low), (low, -1), (low, 0), (low, high), (high, high), (high, 1), (high, 0),
             (high, low), (-1, 1), (0, 0), (high - 5, 5), (high - 5, 6), (low + 5, -5),
             (low + 5, -6)]
    rng = random.Random(9)
    xs, ys = [], []
    for start in range(len(pairs)):
        beat = [pairs[(start + lane) % len(pairs)] for lane in range(tb.lanes)]
        if rng.random() < 0.5:
            beat = [(y, x) for x, y in beat]
        xs.append([x for x, _ in beat])
        ys.append([y for _, y in beat])
    sums = residual_add(xs, ys, tb.fmt, DEFAULT)
    assert (sums == high).any() and (sums == low).any(), "corners must saturate at both ends"
    await tb.run(xs * 2, ys * 2, idle_x=0.2, backpressure=0.5, seed=10)
