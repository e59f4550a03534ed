"""cocotb bench of :class:`hw.arith.exp.Exp2` against its twin :func:`model.arith.exp.exp2`.

Run from ``tests/test_hw_exp.py``. The design configuration gives the lane count and the input
format, e.g. ``{"lanes": 2, "width": 26, "frac": 16}``; :func:`exp_design` builds it, here and
in the pytest file.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.arith.exp import EXP_WIDTH, Exp2
from model.arith.exp import EXP2_TABLE, FLOOR, exp2
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes, unpack_lanes


def exp_design(*, lanes, width, frac):
    """The design of a bench configuration."""
    return Exp2(lanes=lanes, width=width, frac=frac)


def twin(x, frac):
    """:func:`model.arith.exp.exp2`, with the hardware's documented answer for ``x > 0``: 1.0."""
    return exp2([min(int(v), 0) for v in x], frac).tolist()


def corner_inputs(width, frac):
    """0, tiny negatives, every integer from 0 to below FLOOR with its neighbours, table nodes
    and the points halfway between them, values below FLOOR, and the most negative input."""
    low = -(1 << (width - 1))
    b = frac - EXP2_TABLE.step_log2
    inputs = {0, -1, -2, -3, low, low + 1, (FLOOR << frac) - 1, FLOOR << frac}
    for n in range(0, FLOOR - 3, -1):
        inputs.update({(n << frac) - 1, n << frac, (n << frac) + 1})
    for n in (0, -1, -5, FLOOR + 1):
        for node in range(EXP2_TABLE.segments):
            for offset in (0, 1, 1 << (b - 1), (1 << b) - 1):
                inputs.add((n << frac) - (node << b) - offset)
    return sorted((x for x in inputs if low <= x <= 0), reverse=True)


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twin's view of the design."""

    def __init__(self, dut):
        config = bench_config()
        self.lanes, self.width, self.frac = config["lanes"], config["width"], config["frac"]
        if len(dut.i__payload) != self.lanes * self.width:
            raise AssertionError(
                f"Bench configured for {self.lanes} lanes of {self.width} bits but i__payload "
                f"is {len(dut.i__payload)} bits wide")
        self.dut = dut

    def words(self, inputs):
        """``inputs`` in transfers of ``lanes``, lane k starting k values further on."""
        inputs = list(inputs)
        return [[inputs[(start + lane) % len(inputs)] for lane in range(self.lanes)]
                for start in range(len(inputs))]

    async def run(self, words, *, idle=0.0, backpressure=0.0, seed=0):
        """Send ``words`` and check every lane bit for bit, and the count."""
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(pack_lanes(word, self.width) for word in words)
        received = await sink.wait_for(len(words))
        for index, (word, got) in enumerate(zip(words, received)):
            # Results are unsigned: unpack them one bit wider so that none reads as negative.
            got = [v & ((1 << EXP_WIDTH) - 1) for v in unpack_lanes(got, EXP_WIDTH, self.lanes)]
            want = twin(word, self.frac)
            assert got == want, (
                f"transfer {index} of {len(words)}: exp2({word}) with {self.frac} fraction bits "
                f"gave {got}, twin says {want}")
        for _ in range(2 * Exp2.LATENCY + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(words), (
            f"expected {len(words)} results, got {len(sink.payloads)}")
        return source, sink

    def random_inputs(self, count, seed):
        """Half in [FLOOR - 1, 0] (where results are not 0), half over the whole negative range."""
        rng = random.Random(seed)
        low = -(1 << (self.width - 1))
        near = max((FLOOR - 1) << self.frac, low)
        return [rng.randint(near, 0) if rng.random() < 0.5 else rng.randint(low, 0)
                for _ in range(count)]


@cocotb.test()
async def test_full_rate(dut):
    """One transfer per cycle, each ``Exp2.LATENCY`` cycles after its input."""
    tb = TB(dut)
    source, sink = await tb.run(tb.words(tb.random_inputs(400, seed=1)))
    cycles = {(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)}
    assert cycles == {Exp2.LATENCY}, f"latencies in cycles: {sorted(cycles)}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idles on ``i`` and back-pressure on ``o``, corners mixed in."""
    tb = TB(dut)
    inputs = tb.random_inputs(500, seed=2) + corner_inputs(tb.width, tb.frac)
    random.Random(3).shuffle(inputs)
    await tb.run(tb.words(inputs), idle=0.3, backpressure=0.5, seed=4)


@cocotb.test()
async def test_corners(dut):
    """0, tiny negatives, integers, table nodes, below FLOOR, most negative: back to back."""
    tb = TB(dut)
    await tb.run(tb.words(corner_inputs(tb.width, tb.frac)))


@cocotb.test()
async def test_positive_inputs_give_one(dut):
    """The twin rejects ``x > 0``; the unit answers 1.0, as for ``x = 0``."""
    tb = TB(dut)
    high = (1 << (tb.width - 1)) - 1
    inputs = [1, 2, 1 << tb.frac, high, high - 1, 0, -1] + [
        random.Random(5).randint(1, high) for _ in range(20)]
    await tb.run(tb.words(inputs))
