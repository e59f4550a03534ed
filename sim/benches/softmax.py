"""cocotb bench of :class:`hw.units.softmax.SoftmaxStats` against its twins
:func:`model.units.softmax.running_stats` and :func:`model.arith.reciprocal.reciprocal`.

Run from ``tests/test_hw_softmax.py``. The design configuration gives the number of interleaved
rows and names the numerics preset whose activation format the scores take, e.g. ``{"rows": 3,
"numerics": "default"}``; :func:`softmax_stats_design` builds it, here and in the pytest file.
The second pass, :class:`hw.units.softmax.SoftmaxProb`, has its own bench,
``sim.benches.softmax_prob``.
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.units.softmax import SoftmaxStats
from model.numerics import numerics_by_name
from model.arith.reciprocal import reciprocal
from model.units.softmax import running_stats
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_struct


def softmax_stats_design(*, rows, numerics):
    """The design of a bench configuration."""
    return SoftmaxStats(rows=rows, fmt=numerics_by_name(numerics).act)


def interleave(slots):
    """Round-robin beats from per-slot lists of rows (each slot's rows concatenated; every slot
    the same number of scores in all).

    Returns ``(beats, ends)``: ``(score, last)`` per beat, and ``(slot, row)`` per row in the
    order the rows end, the order of the unit's results.
    """
    streams = [[(score, index == len(row) - 1, row) for row in rows
                for index, score in enumerate(row)] for rows in slots]
    total = len(streams[0])
    if any(len(stream) != total for stream in streams):
        raise ValueError("every slot needs the same number of scores")
    beats, ends = [], []
    for step in range(total):
        for slot, stream in enumerate(streams):
            score, last, row = stream[step]
            beats.append((score, last))
            if last:
                ends.append((slot, row))
    return beats, ends


def expected(ends, frac):
    """``(row, m, s, r, k)`` per row from the twins."""
    results = []
    for slot, row in ends:
        m, s = running_stats([row], frac)
        r, k = reciprocal(s)
        results.append((slot, int(m[0]), int(s[0]), int(r[0]), int(k[0])))
    return results


class TB:
    """Clock, reset, source on ``i``, sink on ``o``, and the twins' view of the design."""

    def __init__(self, dut):
        config = bench_config()
        self.rows = config["rows"]
        self.fmt = numerics_by_name(config["numerics"]).act
        unit = softmax_stats_design(**config)
        self.score_layout, self.result_layout = unit.score_layout, unit.result_layout
        if (len(dut.i__payload) != self.score_layout.size
                or len(dut.o__payload) != self.result_layout.size):
            raise AssertionError(
                f"Bench configured for {config} but the design's ports are "
                f"{len(dut.i__payload)} and {len(dut.o__payload)} bits wide")
        self.dut = dut
        self.rng = np.random.default_rng(0)

    def field(self, word, name, signed=False):
        field = self.result_layout[name]
        value = (word >> field.offset) & ((1 << field.width) - 1)
        if signed and value >> (field.width - 1):
            value -= 1 << field.width
        return value

    async def run(self, slots, *, idle=0.0, backpressure=0.0, seed=0):
        """Stream the rows of ``slots`` interleaved and check every result bit for bit, and the
        count. Returns the source, the sink and the index of each row's last beat."""
        beats, ends = interleave(slots)
        want = expected(ends, self.fmt.frac)
        await clock_and_reset(self.dut)
        source = StreamSource(self.dut, "i", idle=idle, seed=seed)
        sink = StreamSink(self.dut, "o", backpressure=backpressure, seed=seed + 1)
        source.send(pack_struct(self.score_layout, score=score, last=last)
                    for score, last in beats)
        received = await sink.wait_for(len(want), timeout_cycles=len(beats) + 1000)
        for index, (word, (slot, row), result) in enumerate(zip(received, ends, want)):
            got = (self.field(word, "row"), self.field(word, "m", signed=True),
                   self.field(word, "s"), self.field(word, "r"), self.field(word, "k"))
            assert got == result, (
                f"row {index} of {len(want)} (slot {slot}, {len(row)} scores, starting "
                f"{row[:4]}): (row, m, s, r, k) = {got}, twins say {result}")
        for _ in range(2 * SoftmaxStats.LATENCY + 2):
            await RisingEdge(self.dut.clk)
        assert len(sink.payloads) == len(want), (
            f"expected {len(want)} results, got {len(sink.payloads)}")
        last_beats = [index for index, (_, last) in enumerate(beats) if last]
        return source, sink, last_beats

    def scores(self, count, spread):
        """``count`` real-looking scores: normal with standard deviation ``spread``."""
        values = self.rng.normal(0.0, spread, count) * 2.0 ** self.fmt.frac
        return np.clip(np.round(values), self.fmt.min_int, self.fmt.max_int).astype(int).tolist()

    def real_rows(self, length, rows_per_slot):
        """Rows of ``length`` real-looking scores, spreads from 0.1 to 20, per slot."""
        return [[self.scores(length, self.rng.uniform(0.1, 20.0))
                 for _ in range(rows_per_slot)] for _ in range(self.rows)]

    def mixed_rows(self, total):
        """Rows of random lengths (1 included) and spreads, ``total`` scores per slot."""
        slots = []
        for _ in range(self.rows):
            rows, count = [], 0
            while count < total:
                length = min(int(self.rng.choice([1, 2, 3, 5, 17, 40, 129])), total - count)
                rows.append(self.scores(length, self.rng.uniform(0.1, 20.0)))
                count += length
            slots.append(rows)
        return slots


@cocotb.test()
async def test_full_rate(dut):
    """Rows of 129 real-looking scores: one score per cycle, each result ``LATENCY`` cycles after
    its row's last score."""
    tb = TB(dut)
    source, sink, last_beats = await tb.run(tb.real_rows(129, 3))
    gaps = {(b - a) / PERIOD_NS for a, b in zip(source.times, source.times[1:])}
    assert gaps == {1}, f"cycles between scores taken: {sorted(gaps)}"
    cycles = {(sink.times[row] - source.times[beat]) / PERIOD_NS
              for row, beat in enumerate(last_beats)}
    assert cycles == {SoftmaxStats.LATENCY}, f"latencies in cycles: {sorted(cycles)}"


@cocotb.test()
async def test_backpressure(dut):
    """Rows of every length from 1 to 129, random idles on ``i`` and back-pressure on ``o``."""
    tb = TB(dut)
    await tb.run(tb.mixed_rows(600), idle=0.3, backpressure=0.5, seed=1)


def shapes(tb):
    """Equal scores, a new maximum at every step, one dominating score, extreme scores
    alternating, falling rows: rows of 129, spread over the slots."""
    fmt, length = tb.fmt, 129
    one = 1 << fmt.frac
    kinds = [
        [[5 * one] * length, [fmt.min_int] * length, [fmt.max_int] * length],
        [list(range(-length * one // 8, 0, one // 8)),
         [fmt.min_int + step for step in range(length)], list(range(length))],
        [[0] * 64 + [20 * one] + [0] * 64, [20 * one] + [-one] * (length - 1),
         [-one] * (length - 1) + [20 * one]],
        [[fmt.min_int, fmt.max_int] * (length // 2) + [0],
         [fmt.max_int, fmt.min_int] * (length // 2) + [0], [-one, one] * (length // 2) + [0]],
        [list(range(0, -length * one // 4, -one // 4)), list(range(length, 0, -1)),
         [0, -one // 1000, one // 1000] * (length // 3)],
    ]
    slots = [[row for kind in kinds[slot::tb.rows] for row in kind]
             for slot in range(tb.rows)]
    # Equal totals per slot: pad the shorter ones with real-looking rows of up to 129.
    total = max(sum(map(len, rows)) for rows in slots)
    for rows in slots:
        missing = total - sum(map(len, rows))
        while missing:
            rows.append(tb.scores(min(missing, length), 3.0))
            missing -= len(rows[-1])
    return slots


@cocotb.test()
async def test_shapes(dut):
    """The rows of :func:`shapes`, back to back."""
    tb = TB(dut)
    await tb.run(shapes(tb))


@cocotb.test()
async def test_shapes_backpressure(dut):
    """The rows of :func:`shapes` under random idles and back-pressure."""
    tb = TB(dut)
    await tb.run(shapes(tb), idle=0.2, backpressure=0.6, seed=2)
