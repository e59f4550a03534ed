"""cocotb bench of :class:`hw.units.compute_mux.ComputeMux`: several clients share one
:class:`hw.units.compute_unit.ComputeUnit`; each must get exactly its own results
(:func:`model.units.compute_mux.serve`), whatever the interleaving of their commands and streams.

The design is :class:`SharedCompute`, the mux with its unit; the configuration sets the number of
clients, the array and optional ``idle``/``backpressure``.
"""

import numpy as np

import cocotb
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.units.compute_mux import ComputeMux
from hw.units.compute_unit import ComputeUnit
from hw.arith.gelu import Gelu
from model.units.compute_mux import serve
from model.numerics import DEFAULT
from model.packer import bias_words, linear_weight_tiles, tiles, weight_beats
from sim.benches.compute_unit import Call
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct, unpack_lanes

ACT = DEFAULT.act


class SharedCompute(wiring.Component):
    """A compute unit behind a mux of ``clients`` clients (the clients' ports are the top's)."""

    def __init__(self, *, clients, lanes=4, max_dim=32, max_tokens=9):
        self.unit = ComputeUnit(rows=lanes, cols=lanes, max_in=max_dim, max_out=max_dim,
                                max_weights=max_dim * max_dim, max_tokens=max_tokens,
                                weight_lanes=lanes, gelu=Gelu)
        self.mux = ComputeMux(self.unit, clients=clients)
        super().__init__({"clients": Out(self.unit.signature).array(clients)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit, m.submodules.mux = self.unit, self.mux
        wiring.connect(m, self.mux.unit, self.unit)
        for index, port in enumerate(self.clients):
            wiring.connect(m, wiring.flipped(port), self.mux.clients[index])
        return m


def make_design(config):
    return SharedCompute(clients=config["clients"])


@cocotb.test()
async def test_clients_share_the_unit(dut):
    config = bench_config()
    design = make_design(config)
    u = design.unit
    R, C = u.rows, u.cols
    rng = np.random.default_rng(config.get("seed", 1))
    await clock_and_reset(dut)
    idle, backpressure = config.get("idle", 0.0), config.get("backpressure", 0.0)
    calls, sinks, expected_beats = [], [], []
    for client in range(config["clients"]):
        prefix = f"clients__{client}__"
        srcs = {n: StreamSource(dut, prefix + n, idle=idle, seed=10 * client + i)
                for i, n in enumerate(("cmd", "w", "b", "x"))}
        sinks.append(StreamSink(dut, prefix + "o", backpressure=backpressure, seed=client))
        beats = 0
        for _ in range(int(rng.integers(1, 4))):
            tokens = int(rng.integers(1, 10))
            in_dim, out_dim = (int(d) for d in rng.integers(1, 33, size=2))
            gelu = bool(rng.integers(0, 2))
            call = Call(rng, tokens, in_dim, out_dim, gelu=gelu)
            calls.append((client, call.x, ACT.frac, call.w, call.b, ACT, gelu))
            srcs["cmd"].send([pack_struct(u.command_layout, **u.command(
                in_dim=in_dim, out_dim=out_dim, tokens=tokens, shift=call.shift, gelu=gelu))])
            srcs["w"].send(pack_lanes(beat, u.weight_width) for beat in
                           weight_beats(linear_weight_tiles(call.w.ints, R, C), u.weight_lanes))
            srcs["b"].send(pack_lanes(word, u.acc_width) for word in
                           bias_words(call.b, out_dim, C, ACT.frac + call.w.fmt.frac, call.shift))
            padded = np.zeros((tokens, tiles(in_dim, R) * R), dtype=np.int64)
            padded[:, :in_dim] = call.x
            srcs["x"].send(pack_lanes(chunk, ACT.width) for chunk in padded.reshape(-1, R))
            beats += tokens * tiles(out_dim, C)
        expected_beats.append(beats)

    expected = serve(calls, DEFAULT)
    for client, sink in enumerate(sinks):
        got = await sink.wait_for(expected_beats[client], timeout_cycles=20000)
        values = np.array([unpack_lanes(word, ACT.width, C) for word in got]).reshape(-1, C)
        row = 0
        for n, want in enumerate(expected[client]):
            tokens, out_dim = want.shape
            width = tiles(out_dim, C) * C
            block = values[row:row + tokens * tiles(out_dim, C)].reshape(tokens, width)
            row += tokens * tiles(out_dim, C)
            assert (block[:, :out_dim] == want).all(), (
                f"client {client} call {n}: RTL differs from model.units.compute_unit.linear")
    assert int(dut.clients__0__error.value) == 0
