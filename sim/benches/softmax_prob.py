"""cocotb bench of :class:`hw.units.softmax.SoftmaxProb` against its twin
:func:`model.units.softmax.probabilities`.

Run from ``tests/test_hw_softmax.py``. The design configuration gives the lane count and names
the numerics preset whose activation format the scores take, e.g. ``{"lanes": 2, "numerics":
"default"}``; :func:`softmax_prob_design` builds it, here and in the pytest file.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.units.softmax import SoftmaxProb
from model.numerics import PROB_FRAC, SUM_FRAC, SUM_WIDTH, numerics_by_name
from model.arith.reciprocal import reciprocal
from model.units.softmax import probabilities, running_stats
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_struct


ONE = 1 << SUM_FRAC


def softmax_prob_design(*, lanes, numerics):
    """The design of a bench configuration."""
    return SoftmaxProb(lanes=lanes, fmt=numerics_by_name(numerics).act)


def twin(a, m, s, frac):
    """:func:`model.units.softmax.probabilities` of single scores ``a`` with their rows' ``m`` and
    ``s``, and the hardware's documented answer for ``a > m``: that of ``a = m``."""
    a = np.minimum(np.asarray(a, dtype=np.int64), m)
    return probabilities(a[:, None], np.asarray(m, dtype=np.int64), s, frac)[:, 0].tolist()


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twin's view of the design."""

    def __init__(self, dut):
        config = bench_config()
        self.lanes = config["lanes"]
        self.fmt = numerics_by_name(config["numerics"]).act
        unit = softmax_prob_design(**config)
        self.lane_layout = unit.lane_layout
        if len(dut.i__payload) != self.lanes * self.lane_layout.size:
            raise AssertionError(
                f"Bench configured for {config} but i__payload is {len(dut.i__payload)} bits")
        self.dut = dut
        self.rng = np.random.default_rng(0)

    def pack(self, lanes):
        word = 0
        for index, (a, m, r, k) in enumerate(lanes):
            word |= pack_struct(self.lane_layout, a=a, m=m, r=r, k=k) << (
                index * self.lane_layout.size)
        return word

    async def run(self, cases, *, idle=0.0, backpressure=0.0, seed=0):
        """``cases`` are ``(a, m, s)``; lane ``l`` of transfer ``t`` takes case ``t * lanes +
        l``. Checks every probability bit for bit, and the count."""
        cases = cases + cases[:(-len(cases)) % self.lanes]
        a, m, s = (np.array(column, dtype=np.int64) for column in zip(*cases))
        r, k = reciprocal(s)
        want = twin(a, m, s, self.fmt.frac)
        inputs = list(zip(a.tolist(), m.tolist(), r.tolist(), k.tolist()))
        words = [inputs[start:start + self.lanes] for start in range(0, len(inputs), self.lanes)]
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(self.pack(word) for word in words)
        received = await sink.wait_for(len(words))
        mask = (1 << PROB_FRAC) - 1
        for index, got in enumerate(received):
            for lane in range(self.lanes):
                case = index * self.lanes + lane
                p = (got >> (lane * PROB_FRAC)) & mask
                assert p == want[case], (
                    f"transfer {index}, lane {lane}: (a, m, r, k) = {inputs[case]} gave p = "
                    f"{p}, twin says {want[case]}")
        for _ in range(2 * SoftmaxProb.LATENCY + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(words), (
            f"expected {len(words)} results, got {len(sink.payloads)}")
        return source, sink

    def real_cases(self, rows, length=129):
        """The scores of ``rows`` real-looking rows (spreads 0.1 to 20) with their rows' stats."""
        cases = []
        for _ in range(rows):
            row = np.round(self.rng.normal(0.0, self.rng.uniform(0.1, 20.0), length)
                           * 2.0 ** self.fmt.frac)
            row = np.clip(row, self.fmt.min_int, self.fmt.max_int).astype(np.int64)
            m, s = running_stats([row], self.fmt.frac)
            cases += [(int(a), int(m[0]), int(s[0])) for a in row]
        return cases

    def corner_cases(self):
        """``a = m`` and just below, far below, both ends of the format, at sums of 1.0, powers
        of two (every ``k``) and the largest sum."""
        fmt, one = self.fmt, 1 << self.fmt.frac
        sums = [ONE, ONE + 1, (1 << (SUM_WIDTH - 1)) - 1] + [
            (1 << bit) + offset for bit in range(SUM_FRAC, SUM_WIDTH - 1) for offset in (-1, 0)]
        pairs = [(0, 0), (-1, 0), (-one, 0), (-one // 2, 0), (-33 * one, 0), (fmt.min_int, 0),
                 (fmt.min_int, fmt.max_int), (fmt.max_int, fmt.max_int),
                 (fmt.min_int, fmt.min_int), (fmt.max_int - 1, fmt.max_int)]
        return [(a, m, s) for a, m in pairs for s in sums if s >= ONE]

    def random_cases(self, count, seed):
        """Random ``a <= m`` (gaps of every size) and random sums."""
        rng = random.Random(seed)
        fmt, cases = self.fmt, []
        for _ in range(count):
            m = rng.randint(fmt.min_int, fmt.max_int)
            a = max(m - rng.randint(0, 1 << rng.randint(0, fmt.frac + 6)), fmt.min_int)
            s = rng.randint(ONE, (1 << rng.randint(SUM_FRAC + 1, SUM_WIDTH - 1)) - 1)
            cases.append((a, m, s))
        return cases


@cocotb.test()
async def test_full_rate(dut):
    """Rows of 129 real-looking scores: one transfer per cycle, ``LATENCY`` cycles each."""
    tb = TB(dut)
    source, sink = await tb.run(tb.real_cases(4))
    cycles = {(out - into) / PERIOD_NS for into, out in zip(source.times, sink.times)}
    assert cycles == {SoftmaxProb.LATENCY}, f"latencies in cycles: {sorted(cycles)}"
    gaps = {(b - a) / PERIOD_NS for a, b in zip(sink.times, sink.times[1:])}
    assert gaps == {1}, f"cycles between results: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idles on ``i`` and back-pressure on ``o``, corners and random cases mixed in."""
    tb = TB(dut)
    cases = tb.real_cases(2) + tb.corner_cases() + tb.random_cases(400, seed=1)
    random.Random(2).shuffle(cases)
    await tb.run(cases, idle=0.3, backpressure=0.5, seed=3)


@cocotb.test()
async def test_corners(dut):
    """Scores at and far below the maximum, both ends of the format, every ``k``."""
    tb = TB(dut)
    await tb.run(tb.corner_cases())


@cocotb.test()
async def test_score_above_max(dut):
    """``a > m`` (the twin raises) gives the probability of ``a = m``."""
    tb = TB(dut)
    fmt = tb.fmt
    cases = [(1, 0, ONE), (fmt.max_int, fmt.min_int, ONE), (1 << fmt.frac, 0, 3 * ONE),
             (5, 4, (1 << (SUM_WIDTH - 1)) - 1), (0, 0, 3 * ONE)]
    await tb.run(cases)
