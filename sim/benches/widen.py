"""cocotb bench of :class:`hw.streams.widen.Widen`: the weight beats of random tiles, narrow in,
must come out as :func:`model.packer.weight_beats` groups them at the wide beat."""

import numpy as np

import cocotb
from amaranth import signed

from hw.streams.widen import Widen
from model.packer import weight_beats
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_lanes


def make_design(config):
    return Widen(signed(16), config["lanes"], config["ratio"])


async def run(dut, *, idle=0.0, backpressure=0.0):
    c = bench_config()
    lanes, ratio = c["lanes"], c["ratio"]
    tiles = np.random.default_rng(5).integers(-1 << 15, 1 << 15, (6, lanes * ratio, 2))
    tiles[0] = -1 << 15                          # corner cases: the extremes
    tiles[1] = (1 << 15) - 1
    await clock_and_reset(dut)
    source = StreamSource(dut, "i", idle=idle, seed=1)
    sink = StreamSink(dut, "o", backpressure=backpressure, seed=2)
    source.send(pack_lanes(beat, 16) for beat in weight_beats(tiles, lanes))
    want = [pack_lanes(beat, 16) for beat in weight_beats(tiles, lanes * ratio)]
    got = await sink.wait_for(len(want), timeout_cycles=4 * len(want) * ratio + 100)
    assert got == want, "wide beats differ from model.packer.weight_beats"


@cocotb.test()
async def test_full_rate(dut):
    await run(dut)


@cocotb.test()
async def test_idles_and_backpressure(dut):
    await run(dut, idle=0.3, backpressure=0.5)
