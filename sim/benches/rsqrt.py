# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`hw.arith.rsqrt.Rsqrt` against its twin :func:`model.arith.rsqrt.rsqrt`.

Run from ``tests/test_hw_rsqrt.py``; the design configuration gives the input width, e.g.
``{"width": 46}``; :func:`rsqrt_design` builds it, here and in the pytest file.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.arith.rsqrt import Rsqrt
from model.arith.rsqrt import M_FRAC, RSQRT_TABLE
from model.arith.rsqrt import rsqrt as rsqrt_twin
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset


def rsqrt_design(*, width):
    """The design of a bench configuration."""
    return Rsqrt(width=width)


def corner_inputs(width):
    """Both ends of the range, every power of two with its neighbours (``m`` at 1, 2 and just
    below 4, and the left and right shifts of the normalisation around ``2e = M_FRAC``), and
    inputs that land exactly on table nodes and between them."""
    top = (1 << width) - 1
    inputs = {1, 2, 3, top, top - 1}
    for k in range(width):
        inputs.update({(1 << k) - 1, 1 << k, (1 << k) + 1})
    b = M_FRAC - RSQRT_TABLE.step_log2
    for e in sorted({0, M_FRAC // 2 - 1, M_FRAC // 2, M_FRAC // 2 + 1, (width - 1) // 2}):
        for node in (0, 1, RSQRT_TABLE.segments // 2, RSQRT_TABLE.segments - 1):
            for offset in (0, 1, 1 << (b - 1), (1 << b) - 1):
                m = (1 << M_FRAC) + (node << b) + offset
                inputs.add(m << 2 * e >> M_FRAC)
    return sorted(s for s in inputs if 1 <= s <= top)


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twin's view of the design."""

    def __init__(self, dut):
        self.width = bench_config()["width"]
        unit = rsqrt_design(width=self.width)
        self.layout = unit.result_layout
        if len(dut.i__payload) != self.width or len(dut.o__payload) != self.layout.size:
            raise AssertionError(
                f"Bench configured for width {self.width} but the design's ports are "
                f"{len(dut.i__payload)} and {len(dut.o__payload)} bits wide")
        self.dut = dut

    async def run(self, inputs, *, idle=0.0, backpressure=0.0, seed=0):
        """Send ``inputs`` and check every ``(r, e)`` bit for bit, and the count."""
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(inputs)
        received = await sink.wait_for(len(inputs))

        r_field, e_field = self.layout["r"], self.layout["e"]
        r_want, e_want = rsqrt_twin(inputs)
        for index, (s, r, e, got) in enumerate(zip(inputs, r_want, e_want, received)):
            r_got = (got >> r_field.offset) & ((1 << r_field.width) - 1)
            e_got = (got >> e_field.offset) & ((1 << e_field.width) - 1)
            assert (r_got, e_got) == (r, e), (
                f"result {index} of {len(inputs)}: rsqrt({s}) gave (r, e) = ({r_got}, "
                f"{e_got}), twin says ({r}, {e})")
        for _ in range(2 * Rsqrt.LATENCY + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(inputs), (
            f"expected {len(inputs)} results, got {len(sink.payloads)}")
        return source, sink

    def random_inputs(self, count, seed):
        """Log-uniform over the whole range: every exponent equally often."""
        rng = random.Random(seed)
        inputs = []
        for _ in range(count):
            bits = rng.randint(1, self.width)
            inputs.append(rng.randint(1 << (bits - 1), (1 << bits) - 1))
        return inputs


@cocotb.test()
async def test_full_rate(dut):
    """One result per cycle, each ``Rsqrt.LATENCY`` cycles after its input."""
    tb = TB(dut)
    source, sink = await tb.run(tb.random_inputs(300, seed=1))
    cycles = {(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)}
    assert cycles == {Rsqrt.LATENCY}, f"latencies in cycles: {sorted(cycles)}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idles on ``i`` and back-pressure on ``o``, corners mixed in."""
    tb = TB(dut)
    inputs = tb.random_inputs(500, seed=2) + corner_inputs(tb.width)
    random.Random(3).shuffle(inputs)
    await tb.run(inputs, idle=0.3, backpressure=0.5, seed=4)


@cocotb.test()
async def test_corners(dut):
    """Smallest and largest inputs, powers of two and table nodes, back to back."""
    tb = TB(dut)
    await tb.run(corner_inputs(tb.width))
