"""cocotb bench of :class:`hw.units.gate.Gate` against :func:`model.units.gate.route`."""

import numpy as np

import cocotb

from hw.units.gate import Gate
from model.units.gate import route
from model.numerics import DEFAULT
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct

ACT = DEFAULT.act


def make_design(config):
    return Gate(**config)


def _unpack(word, layout, k):
    experts, scores = [], []
    ew = layout["experts"].shape.elem_shape.width
    sw = layout["scores"].shape.elem_shape.width
    for j in range(k):
        experts.append((word >> (layout["experts"].offset + j * ew)) & ((1 << ew) - 1))
        scores.append((word >> (layout["scores"].offset + j * sw)) & ((1 << sw) - 1))
    return experts, scores


async def run(dut, layers, *, idle=0.0, backpressure=0.0):
    c = bench_config()
    design = make_design(c)
    E, K, L = c["experts"], c["k"], c["lanes"]
    rng = np.random.default_rng(5)
    await clock_and_reset(dut)
    cmd = StreamSource(dut, "cmd", idle=idle, seed=1)
    src = StreamSource(dut, "i", idle=idle, seed=2)
    sink = StreamSink(dut, "o", backpressure=backpressure, seed=3)
    for tokens, spread in layers:
        logits = ACT.quantize(rng.normal(0, spread, (tokens, E)))[0]
        logits[0] = 0                                # a tie between every expert
        cmd.send([pack_struct(design.cmd.payload.shape(), tokens=tokens)])
        padded = np.zeros((tokens, L), dtype=np.int64)
        padded[:, :E] = logits
        src.send(pack_lanes(row, ACT.width) for row in padded)
        chosen, probs = route(logits, ACT, K)
        got = await sink.wait_for(len(sink.payloads) + tokens, timeout_cycles=3000)
        got = [_unpack(w, design.o.payload.shape(), K) for w in got[-tokens:]]
        for t, (experts, scores) in enumerate(got):
            assert experts == chosen[t].tolist(), f"token {t}: experts {experts}, twin {chosen[t]}"
            assert scores == probs[t, chosen[t]].tolist(), (
                f"token {t}: scores {scores}, twin {probs[t, chosen[t]]}")


@cocotb.test()
async def test_full_rate(dut):
    await run(dut, [(17, 3.0), (7, 0.5), (1, 10.0), (9, 20.0)])


@cocotb.test()
async def test_backpressure(dut):
    await run(dut, [(17, 3.0), (8, 1.0)], idle=0.3, backpressure=0.5)
