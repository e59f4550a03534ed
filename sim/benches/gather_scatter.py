"""cocotb bench of :class:`hw.streams.gather.Gather` and :class:`hw.streams.scatter.Scatter` on one
buffer, against :func:`model.streams.gather.gather` and :func:`model.streams.scatter.scatter`."""

import numpy as np

import cocotb
from amaranth import Module
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.streams.gather import Gather
from hw.streams.scatter import Scatter
from model.streams.gather import gather
from model.numerics import DEFAULT, PROB_FRAC
from model.streams.scatter import scatter
from sim.runner import bench_config
from sim.stream import (PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct,
                        unpack_lanes)

ACT = DEFAULT.act


def initial_buffer(rows, row_beats, lanes, seed):
    rng = np.random.default_rng(seed)
    return ACT.quantize(rng.normal(0, 50, (rows, row_beats * lanes)))[0]


class BufferHarness(wiring.Component):
    """A buffer with a Gather and a Scatter on it, and a read port for the bench to peek."""

    def __init__(self, *, lanes, rows, row_beats, seed):
        self._init = initial_buffer(rows, row_beats, lanes, seed)
        self.gather = Gather(lanes=lanes, width=ACT.width, rows=rows, row_beats=row_beats)
        self.scatter = Scatter(lanes=lanes, rows=rows, row_beats=row_beats)
        self._shape = data.ArrayLayout(ACT.width, lanes)
        super().__init__({
            "g_idx": In(self.gather.idx.signature.flip()),
            "g_o": Out(self.gather.o.signature),
            "s_idx": In(self.scatter.idx.signature.flip()),
            "s_i": In(self.scatter.i.signature.flip()),
            "peek_addr": In(range(rows * row_beats)),
            "peek_data": Out(data.ArrayLayout(ACT.width, lanes)),
            "g_error": Out(1), "s_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.gather, m.submodules.scatter = self.gather, self.scatter
        words = self._init.reshape(-1, self.gather.o.payload.shape().length)
        m.submodules.buffer = mem = memory.Memory(
            shape=self._shape, depth=len(words),
            init=[[int(v) & ((1 << ACT.width) - 1) for v in w] for w in words])
        g_rd, s_rd, peek, wr = mem.read_port(), mem.read_port(), mem.read_port(), mem.write_port()
        wiring.connect(m, wiring.flipped(self.g_idx), self.gather.idx)
        wiring.connect(m, self.gather.o, wiring.flipped(self.g_o))
        wiring.connect(m, wiring.flipped(self.s_idx), self.scatter.idx)
        wiring.connect(m, wiring.flipped(self.s_i), self.scatter.i)
        m.d.comb += [
            g_rd.addr.eq(self.gather.rd_addr), self.gather.rd_data.eq(g_rd.data),
            s_rd.addr.eq(self.scatter.rd_addr), self.scatter.rd_data.eq(s_rd.data),
            wr.addr.eq(self.scatter.wr_addr), wr.data.eq(self.scatter.wr_data),
            wr.en.eq(self.scatter.wr_en),
            peek.addr.eq(self.peek_addr), self.peek_data.eq(peek.data),
            self.g_error.eq(self.gather.error), self.s_error.eq(self.scatter.error),
        ]
        return m


class TB:
    def __init__(self, dut):
        self.c = bench_config()
        self.dut = dut
        self.lanes, self.rows, self.row_beats = self.c["lanes"], self.c["rows"], self.c["row_beats"]
        self.buffer = initial_buffer(self.rows, self.row_beats, self.lanes, self.c["seed"])

    async def peek_all(self):
        words = []
        for addr in range(self.rows * self.row_beats):
            self.dut.peek_addr.value = addr
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            words.append(unpack_lanes(int(self.dut.peek_data.value), ACT.width, self.lanes))
            await RisingEdge(self.dut.clk)
        return np.array(words).reshape(self.rows, -1)


async def run_gather(dut, *, idle, backpressure):
    tb = TB(dut)
    rng = np.random.default_rng(1)
    await clock_and_reset(dut)
    src = StreamSource(dut, "g_idx", idle=idle, seed=2)
    sink = StreamSink(dut, "g_o", backpressure=backpressure, seed=3)
    rows = rng.integers(0, tb.rows, 12)
    beats = rng.integers(1, tb.row_beats + 1, 12)
    beats[:3] = tb.row_beats
    src.send(pack_struct(dut_layout(), row=r, beats=b) for r, b in zip(rows, beats))
    want = [row[:b * tb.lanes].reshape(b, tb.lanes) for row, b in zip(gather(tb.buffer, rows),
                                                                        beats)]
    want = np.concatenate(want)
    got = await sink.wait_for(len(want))
    for n, (g, w) in enumerate(zip(got, want)):
        assert unpack_lanes(g, ACT.width, tb.lanes) == list(w), f"beat {n} differs"
    if idle == 0 and backpressure == 0:
        # Rows follow each other without a gap: one beat per cycle.
        assert sink.times[-1] - sink.times[0] == (len(want) - 1) * PERIOD_NS


@cocotb.test()
async def test_gather_full_rate(dut):
    await run_gather(dut, idle=0.0, backpressure=0.0)


@cocotb.test()
async def test_gather_backpressure(dut):
    await run_gather(dut, idle=0.3, backpressure=0.5)


def dut_layout():
    c = bench_config()
    return Gather(lanes=c["lanes"], width=ACT.width, rows=c["rows"],
                  row_beats=c["row_beats"]).idx.payload.shape()


def scatter_layout():
    c = bench_config()
    return Scatter(lanes=c["lanes"], rows=c["rows"], row_beats=c["row_beats"]).index_layout


async def run_scatter(dut, *, idle):
    tb = TB(dut)
    rng = np.random.default_rng(4)
    expected = tb.buffer.copy()
    await clock_and_reset(dut)
    src = StreamSource(dut, "s_idx", idle=idle, seed=5)
    beats_src = StreamSource(dut, "s_i", idle=idle, seed=6)
    for accumulate in (False, True, True):
        rows = rng.permutation(tb.rows)[:5]
        scores = rng.integers(0, 1 << PROB_FRAC, 5)
        scores[0] = (1 << PROB_FRAC) - 1
        y = ACT.quantize(rng.normal(0, 100, (5, tb.row_beats * tb.lanes)))[0]
        y[1] = ACT.max_int
        src.send(pack_struct(scatter_layout(), row=r, beats=tb.row_beats, score=s,
                             accumulate=int(accumulate)) for r, s in zip(rows, scores))
        beats_src.send(pack_lanes(b, ACT.width) for b in y.reshape(-1, tb.lanes))
        await beats_src.wait_sent(timeout_cycles=1000)
        await ClockCycles(dut.clk, Scatter.LATENCY + 2)
        expected = scatter(expected, rows, y, ACT, DEFAULT, scores if accumulate else None)
        got = await tb.peek_all()
        bad = np.argwhere(got != expected)
        assert bad.size == 0, f"{len(bad)} buffer values differ, first at {bad[0]}"
    assert (expected == ACT.max_int).any(), "saturation not exercised"
    assert int(dut.s_error.value) == 0


@cocotb.test()
async def test_scatter_full_rate(dut):
    await run_scatter(dut, idle=0.0)


@cocotb.test()
async def test_scatter_with_idles(dut):
    await run_scatter(dut, idle=0.4)


@cocotb.test()
async def test_bad_index_sets_error(dut):
    tb = TB(dut)
    await clock_and_reset(dut)
    src = StreamSource(dut, "g_idx")
    sink = StreamSink(dut, "g_o")
    src.send([pack_struct(dut_layout(), row=tb.rows, beats=1),
              pack_struct(dut_layout(), row=0, beats=1)])
    got = await sink.wait_for(1)
    assert unpack_lanes(got[0], ACT.width, tb.lanes) == list(tb.buffer[0][:tb.lanes])
    assert int(dut.g_error.value) == 1
