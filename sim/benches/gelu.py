"""cocotb bench of :class:`hw.arith.gelu.Gelu` against its twin :func:`model.arith.gelu.gelu`.

Run from ``tests/test_hw_gelu.py``. The design configuration gives the lane count and names the
numerics preset whose activation format the unit takes, e.g. ``{"lanes": 2, "numerics":
"default"}``; :func:`gelu_design` builds it, here and in the pytest file.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.arith.gelu import Gelu
from model.arith.gelu import D_TABLE, LIMIT, gelu
from model.numerics import numerics_by_name
from sim.runner import bench_config
from sim.stream import (
    PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes, unpack_lanes,
)


def gelu_design(*, lanes, numerics):
    """The design of a bench configuration."""
    return Gelu(lanes=lanes, fmt=numerics_by_name(numerics).act)


def _trailing_zeros(value):
    return (value & -value).bit_length() - 1


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twin's view of the design."""

    def __init__(self, dut):
        config = bench_config()
        self.lanes = config["lanes"]
        self.fmt = numerics_by_name(config["numerics"]).act
        self.width = self.fmt.width
        if len(dut.i__payload) != self.lanes * self.width:
            raise AssertionError(
                f"Bench configured for {self.lanes} lanes of {self.fmt} but i__payload is "
                f"{len(dut.i__payload)} bits wide")
        self.dut = dut
        self.limit = round(LIMIT * 2 ** self.fmt.frac)
        #: Bits of |x| below the table step, and below the table's precision.
        self.b = self.fmt.frac - D_TABLE.step_log2
        self.extra = D_TABLE.frac - self.fmt.frac

    async def run(self, words, *, idle=0.0, backpressure=0.0, seed=0):
        """Send ``words`` (lists of ``lanes`` values) and check every lane bit for bit, and the
        count.

        Returns the source and sink, whose ``times`` let tests check cycle counts.
        """
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(pack_lanes(word, self.width) for word in words)
        received = await sink.wait_for(len(words))

        for index, (word, got) in enumerate(zip(words, received)):
            got = unpack_lanes(got, self.width, self.lanes)
            want = gelu(word, self.fmt).tolist()
            assert got == want, (
                f"transfer {index} of {len(words)}: GELU of {word} ({self.fmt}) gave {got}, "
                f"twin says {want}")
        # Nothing extra may trickle out after the last expected result.
        for _ in range(2 * Gelu.LATENCY + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(words), (
            f"expected {len(words)} results, got {len(sink.payloads)}")
        return source, sink

    def random_words(self, count, seed):
        """Half the values anywhere in the format, half around the table's range, where all
        the arithmetic happens."""
        rng = random.Random(seed)
        near = self.limit + 64
        low, high = max(self.fmt.min_int, -near), min(self.fmt.max_int, near)
        return [[rng.randint(self.fmt.min_int, self.fmt.max_int) if rng.random() < 0.5
                 else rng.randint(low, high) for _ in range(self.lanes)]
                for _ in range(count)]

    def corner_values(self):
        """Zero, both ends of the format, the table's limit and its neighbours, segment
        boundaries, and magnitudes where the interpolation or the final rounding meets an exact
        half; each with both signs."""
        b, limit = self.b, self.limit
        magnitudes = [0, 1, 2, limit - 2, limit - 1, limit, limit + 1]
        for i in sorted({1, 2, D_TABLE.segments // 2, D_TABLE.segments - 1}):
            magnitudes += [(i << b) - 1, i << b, (i << b) + 1]
        # Interpolation halves: step * r ends in a 1 followed by b - 1 zeros.
        steps = [int(step) for step in np.diff(D_TABLE.entries)]
        self.interp_halves = 0
        for i in range(0, len(steps), 7):  # every 7th segment is plenty
            step = steps[i]
            if step == 0 or b == 0 or _trailing_zeros(step) > b - 1:
                continue
            magnitudes.append((i << b) + (1 << (b - 1 - _trailing_zeros(step))))
            self.interp_halves += 1
        # Final halves: (ReLU(x) << extra) - d ends in a 1 followed by extra - 1 zeros.
        self.final_halves = 0
        if self.extra > 0:
            rng = np.random.default_rng(0)
            a = rng.integers(0, limit, 20000)
            d = D_TABLE.evaluate(a, self.fmt.frac)
            found = a[(d & ((1 << self.extra) - 1)) == 1 << (self.extra - 1)][:20]
            magnitudes += found.tolist()
            self.final_halves = len(found)
        values = {sign * magnitude for magnitude in magnitudes for sign in (1, -1)}
        values |= {self.fmt.min_int, self.fmt.min_int + 1, self.fmt.max_int - 1,
                   self.fmt.max_int}
        return sorted(v for v in values if self.fmt.min_int <= v <= self.fmt.max_int)

    def corner_words(self, seed):
        """Every corner value in every lane, the other lanes random."""
        rng = random.Random(seed)
        words = []
        for value in self.corner_values():
            for lane in range(self.lanes):
                word = [rng.randint(self.fmt.min_int, self.fmt.max_int)
                        for _ in range(self.lanes)]
                word[lane] = value
                words.append(word)
        return words


@cocotb.test()
async def test_full_rate(dut):
    """One result per cycle, each ``Gelu.LATENCY`` cycles after its input."""
    tb = TB(dut)
    source, sink = await tb.run(tb.random_words(300, seed=1))
    cycles = [(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)]
    assert set(cycles) == {Gelu.LATENCY}, f"latencies in cycles: {sorted(set(cycles))}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idle cycles on ``i`` and random back-pressure on ``o`` lose and reorder nothing;
    the corner values are mixed in."""
    tb = TB(dut)
    words = tb.random_words(500, seed=2) + tb.corner_words(seed=3)
    random.Random(4).shuffle(words)
    await tb.run(words, idle=0.3, backpressure=0.5, seed=5)


@cocotb.test()
async def test_corners(dut):
    """Every corner value in every lane, back to back."""
    tb = TB(dut)
    words = tb.corner_words(seed=6)
    assert tb.interp_halves >= 8, "corner values must hit interpolation halves"
    assert tb.extra <= 0 or tb.final_halves >= 8, "corner values must hit final halves"
    source, sink = await tb.run(words)
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"
