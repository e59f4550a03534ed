# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`hw.units.layernorm.LayerNorm` against its twin
:func:`model.units.layernorm.layer_norm` (default numerics).

Run from ``tests/test_hw_layernorm.py``. The design configuration gives the row length, the
lanes, gamma's fraction bits and epsilon, e.g. ``{"dim": 32, "lanes": 4, "gamma_frac": 16,
"eps": 1e-6}``; :func:`layernorm_design` builds it, here and in the pytest file, with the
default activation format for input, beta and output and gamma of ``DEFAULT.small_width`` bits.
"""


import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.units.layernorm import LayerNorm
from model.units.layernorm import layer_norm
from model.numerics import DEFAULT, Fixed, Quantized
from sim.runner import bench_config
from sim.stream import (PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes,
                        pack_struct, unpack_lanes)


def layernorm_design(*, dim, lanes, gamma_frac, eps):
    """The design of a bench configuration."""
    return LayerNorm(dim=dim, lanes=lanes, gamma_fmt=Fixed(DEFAULT.small_width, gamma_frac),
                     eps=eps)


def random_rows(dim, fmt, count, seed):
    """Rows at scales from a few LSBs to the whole range, with negative and positive means and,
    in some, one outlier channel far from the rest; saturated to ``fmt``."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        scale = 2.0 ** rng.uniform(1, fmt.width - 2)
        mean = rng.choice([-1, 1]) * 2.0 ** rng.uniform(0, fmt.width - 2)
        row = mean + scale * rng.standard_normal(dim)
        if index % 3 == 0:
            bits = min(np.log2(scale) + 3, fmt.width - 1)
            row[rng.integers(dim)] = rng.choice([-1, 1]) * 2.0 ** rng.uniform(bits, fmt.width - 1)
        rows.append(np.clip(np.round(row), fmt.min_int, fmt.max_int))
    return np.array(rows, dtype=np.int64)


def corner_rows(dim, fmt):
    """Constant rows (zero, small, both ends), the extremes alternating and in halves, a single
    channel at either end among zeros, and rows of tiny spread where eps dominates."""
    low, high = fmt.min_int, fmt.max_int
    k = np.arange(dim)
    rows = [np.full(dim, value) for value in (0, 1, -1, -12345, 3 << 20, high, low)]
    rows += [np.where(k % 2, high, low), np.where(k < dim // 2, low, high),
             np.where(k == 0, high, 0), np.where(k == dim - 1, low, 0),
             np.where(k == 3, low, high), (k % 2) - 7, (k % 3) * 5 + 1000, k - dim // 2,
             np.where(k % 4 == 0, 1 << 17, -(1 << 17))]
    return np.array(rows, dtype=np.int64)


def parameter_beats(unit, gamma, beta):
    """The beats of ``unit``'s (a :class:`hw.units.layernorm.LayerNorm`) parameter stream ``p`` for
    Quantized ``gamma`` and ``beta``: channel ``k`` in lane ``k % lanes`` of beat ``k // lanes``."""
    layout, lanes = unit.parameter_layout, unit.lanes
    channels = [pack_struct(layout, gamma=int(g), beta=int(b))
                for g, b in zip(gamma.ints, beta.ints)]
    return [pack_lanes(channels[k:k + lanes], layout.size)
            for k in range(0, len(channels), lanes)]


def random_parameters(dim, gamma_fmt, fmt, seed):
    """Gamma around one (and some negative, some large), beta at several scales."""
    rng = np.random.default_rng(seed)
    gamma = np.clip(np.round(rng.normal(1.0, 0.6, dim) * 2 ** gamma_fmt.frac),
                    gamma_fmt.min_int, gamma_fmt.max_int).astype(np.int64)
    gamma[:2] = gamma_fmt.max_int, gamma_fmt.min_int
    beta = np.round(rng.normal(0, 1.0, dim) * 2.0 ** rng.integers(fmt.frac - 8, fmt.frac + 6,
                                                                    dim)).astype(np.int64)
    beta = np.clip(beta, fmt.min_int, fmt.max_int)
    beta[2:4] = fmt.max_int, fmt.min_int
    return Quantized(gamma, gamma_fmt), Quantized(beta, fmt)


class TB:
    """Clock, reset, sources on ``p`` and ``i``, sink on ``o``, and the twin's view."""

    def __init__(self, dut):
        config = bench_config()
        self.unit = layernorm_design(**config)
        self.dim, self.lanes, self.eps = config["dim"], config["lanes"], config["eps"]
        self.fmt, self.gamma_fmt = self.unit.fmt, self.unit.gamma_fmt
        self.beats = self.unit.beats
        if len(dut.i__payload) != self.lanes * self.fmt.width:
            raise AssertionError(
                f"Bench configured for {self.lanes} lanes of {self.fmt} but i__payload is "
                f"{len(dut.i__payload)} bits wide")
        self.dut = dut
        self.source_p = self.source_i = self.sink = None

    async def start(self, *, idle=0.0, backpressure=0.0, seed=0):
        await clock_and_reset(self.dut)
        self.source_p = StreamSource(self.dut, "p", idle=idle, seed=seed)
        self.source_i = StreamSource(self.dut, "i", idle=idle, seed=seed + 1)
        self.sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 2)

    def send_parameters(self, gamma, beta):
        self.source_p.send(parameter_beats(self.unit, gamma, beta))

    def send_rows(self, rows):
        self.source_i.send(pack_lanes(row[k:k + self.lanes], self.fmt.width)
                           for row in rows for k in range(0, self.dim, self.lanes))

    async def check(self, rows, gamma, beta, *, done=0):
        """Wait for the results of ``rows`` (after ``done`` rows already checked) and compare
        them bit for bit with the twin; returns them as integers."""
        first = done * self.beats
        received = await self.sink.wait_for(first + len(rows) * self.beats,
                                            timeout_cycles=20 * self.unit.row_cycles)
        got = np.array([unpack_lanes(word, self.fmt.width, self.lanes)
                        for word in received[first:]]).reshape(len(rows), self.dim)
        want = layer_norm(rows, self.fmt, gamma, beta, self.eps, DEFAULT)
        for index in range(len(rows)):
            wrong = np.flatnonzero(got[index] != want[index])
            assert not len(wrong), (
                f"row {done + index}: channels {wrong.tolist()[:8]} gave "
                f"{got[index][wrong].tolist()[:8]}, twin says {want[index][wrong].tolist()[:8]} "
                f"(row {rows[index].tolist()})")
        return got

    async def settle(self, expected_beats):
        for _ in range(2 * self.unit.latency):
            await RisingEdge(self.dut.clk)
        assert len(self.sink.payloads) == expected_beats, (
            f"expected {expected_beats} beats, got {len(self.sink.payloads)}")


@cocotb.test()
async def test_full_rate(dut):
    """Random rows back to back: bit-exact, one row every ``row_cycles`` (the first two rows
    enter faster, while the normaliser is free), the first row's first result ``latency``
    cycles after its first beat, the beats of a row one per cycle."""
    tb = TB(dut)
    await tb.start()
    gamma, beta = random_parameters(tb.dim, tb.gamma_fmt, tb.fmt, seed=1)
    rows = random_rows(tb.dim, tb.fmt, 24, seed=2)
    tb.send_parameters(gamma, beta)
    tb.send_rows(rows)
    await tb.check(rows, gamma, beta)
    await tb.settle(len(rows) * tb.beats)

    B = tb.beats
    starts = [time / PERIOD_NS for time in tb.source_i.times[::B]]
    outputs = [time / PERIOD_NS for time in tb.sink.times]
    firsts = outputs[::B]
    assert firsts[0] - starts[0] == tb.unit.latency, (
        f"latency {firsts[0] - starts[0]} cycles, expected {tb.unit.latency}")
    periods = {b - a for a, b in zip(firsts, firsts[1:])}
    assert periods == {tb.unit.row_cycles}, f"cycles between rows on o: {sorted(periods)}"
    periods = {b - a for a, b in zip(starts[1:], starts[2:])}
    assert periods == {tb.unit.row_cycles}, f"cycles between rows on i: {sorted(periods)}"
    gaps = {b - a for k in range(0, len(outputs), B) for a, b in
            zip(outputs[k:k + B], outputs[k + 1:k + B])}
    assert gaps <= {1}, f"cycles between the beats of a row: {sorted(gaps)}"


@cocotb.test()
async def test_backpressure(dut):
    """Random idles on ``p`` and ``i`` and back-pressure on ``o``, and a new parameter set
    offered while the rows of the previous one are still in flight."""
    tb = TB(dut)
    await tb.start(idle=0.3, backpressure=0.5, seed=3)
    first = random_parameters(tb.dim, tb.gamma_fmt, tb.fmt, seed=4)
    second = random_parameters(tb.dim, tb.gamma_fmt, tb.fmt, seed=5)
    rows_1 = np.concatenate([random_rows(tb.dim, tb.fmt, 10, seed=6),
                             corner_rows(tb.dim, tb.fmt)[::2]])
    rows_2 = random_rows(tb.dim, tb.fmt, 10, seed=7)
    tb.send_parameters(*first)
    tb.send_rows(rows_1)
    # The second set waits at the next row boundary; the rows after it must wait for it.
    await tb.source_i.wait_sent(timeout_cycles=20 * tb.unit.row_cycles)
    tb.send_parameters(*second)
    await tb.source_p.wait_sent(timeout_cycles=20 * tb.unit.row_cycles)
    tb.send_rows(rows_2)
    await tb.check(rows_1, *first)
    await tb.check(rows_2, *second, done=len(rows_1))
    await tb.settle((len(rows_1) + len(rows_2)) * tb.beats)


@cocotb.test()
async def test_corners(dut):
    """Constant rows (the result is beta exactly when the mean is exact), the extremes of the
    format, outliers and rows of tiny spread, at full rate and under back-pressure."""
    tb = TB(dut)
    await tb.start(backpressure=0.3, seed=8)
    gamma, beta = random_parameters(tb.dim, tb.gamma_fmt, tb.fmt, seed=9)
    rows = corner_rows(tb.dim, tb.fmt)
    tb.send_parameters(gamma, beta)
    tb.send_rows(rows)
    got = await tb.check(rows, gamma, beta)
    if tb.dim & (tb.dim - 1) == 0:
        # A power-of-two row length makes the mean of a constant row exact.
        constant = [index for index, row in enumerate(rows) if (row == row[0]).all()]
        assert len(constant) >= 5
        for index in constant:
            assert (got[index] == beta.ints).all(), f"constant row {index} did not give beta"
    await tb.settle(len(rows) * tb.beats)
