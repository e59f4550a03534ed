"""cocotb bench of :class:`hw.units.top_k.TopK` against :func:`model.units.gate.top_k`."""

import numpy as np

import cocotb

from hw.units.top_k import TopK
from model.units.gate import top_k
from model.numerics import DEFAULT
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_struct, unpack_lanes

ACT = DEFAULT.act


def make_design(config):
    return TopK(**config)


async def run(dut, *, idle=0.0, backpressure=0.0):
    c = bench_config()
    design = make_design(c)
    E, K = c["experts"], c["k"]
    rng = np.random.default_rng(7)
    logits = np.concatenate([
        rng.integers(-3, 3, (30, E)),                       # many ties
        ACT.quantize(rng.normal(0, 4, (30, E)))[0],         # distinct values
        np.full((2, E), ACT.min_int), np.full((2, E), ACT.max_int),
        np.tile(np.arange(E)[::-1], (2, 1)), np.tile(np.arange(E), (2, 1)),
    ])
    await clock_and_reset(dut)
    src = StreamSource(dut, "i", idle=idle, seed=1)
    sink = StreamSink(dut, "o", backpressure=backpressure, seed=2)
    layout = design.i.payload.shape()
    src.send(pack_struct(layout, logit=v, last=int(e == E - 1))
             for row in logits for e, v in enumerate(row))
    got = await sink.wait_for(len(logits))
    width = design.o.payload.shape().elem_shape.width
    got = [[x & ((1 << width) - 1) for x in unpack_lanes(w, width, K)] for w in got]
    want = top_k(logits, K).tolist()
    bad = [n for n, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"token {bad[0]}: RTL {got[bad[0]]}, twin {want[bad[0]]}, logits {logits[bad[0]]}"
    if idle == 0 and backpressure == 0:
        # One logit per cycle: results E cycles apart.
        assert all(b - a == E * 10 for a, b in zip(sink.times, sink.times[1:]))


@cocotb.test()
async def test_full_rate(dut):
    await run(dut)


@cocotb.test()
async def test_backpressure(dut):
    await run(dut, idle=0.3, backpressure=0.5)
