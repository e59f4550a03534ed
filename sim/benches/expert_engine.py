"""cocotb bench of :class:`hw.units.expert_engine.ExpertEngine` against
:func:`model.system.moe_half.experts_combine`: micro's MoE block with synthetic weights, the expert
records in cocotbext-axi's AxiRam, ``h`` and ``x`` in on-chip buffers of a harness."""

import json
import logging
import os
import warnings

import numpy as np

import cocotb
from amaranth import Module
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus

from hw.units.expert_engine import ExpertEngine
from model.config import config_by_name
from model.machine import ZCU102
from model.units.expert_queues import expert_queues
from model.units.compute_unit import linear
from model.units.gate import gate
from model.golden import attention_half
from model.units.layernorm import layer_norm
from model.system.mlp_half import mlp_half
from model.system.moe_half import experts_combine
from model.numerics import DEFAULT
from model.packer import moe_layer_image
from model.units.patch_embed import patch_embed
from model.quantize import quantize
from model.weights import (load_edge_moe, load_image, shared_weights_dir, synthetic,
                           synthetic_image)
from sim.runner import bench_config
from sim.stream import StreamSink, StreamSource, clock_and_reset, pack_struct, unpack_lanes

ACT = DEFAULT.act


def layer_data(config):
    """Golden ``h``, ``x``, queues and the expected result of the model's first MoE block."""
    model = config_by_name(config["model"])
    if config.get("weights") == "edge-moe":
        directory = shared_weights_dir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = load_edge_moe(directory, model)
        image = load_image(directory, model)
    else:
        weights = synthetic(model, seed=config.get("seed", 3))
        image = synthetic_image(model, seed=config.get("seed", 3))
    qm = quantize(weights, DEFAULT)
    x = patch_embed(image, model.patch, qm["patch_weight"], qm["patch_bias"],
                    qm["pos_embed"].ints, ACT, DEFAULT)
    x = mlp_half(qm, 0, attention_half(qm, 0, x, ZCU102))
    b = model.moe_blocks[0]
    x = attention_half(qm, b, x, ZCU102)
    h = layer_norm(x, ACT, qm.block(b, "norm2_weight"), qm.block(b, "norm2_bias"),
                   model.ln_eps, DEFAULT)
    chosen, probs = gate(h, ACT, qm.block(b, "gate0_weight"), model.top_k, DEFAULT)
    if config.get("routing") == "one_expert_takes_all":
        chosen[:, 0] = 1
        chosen[:, 1] = np.where(chosen[:, 1] == 1, 2, chosen[:, 1])
        chosen[chosen[:, 1] == 1, 1] = 2
    queues = expert_queues(chosen, probs, model.experts)
    return qm, b, h, x, queues, experts_combine(qm, b, h, x, queues)


class ExpertHarness(wiring.Component):
    """The engine with its ``h`` and ``x`` buffers (initialised with golden values)."""

    def __init__(self, **config):
        model = config_by_name(config["model"])
        self.L = config["lanes"]
        self.engine = ExpertEngine(dim=model.dim, expert_hidden=model.expert_hidden,
                                   experts=model.experts, max_tokens=model.tokens, lanes=self.L,
                                   data_width=config.get("data_width", 128), addr_width=32,
                                   banks=config.get("banks", 2),
                                   queue_banks=config.get("queue_banks", 4))
        _, _, self._h, self._x, _, _ = layer_data(config)
        e = self.engine
        super().__init__({
            "cmd": In(e.cmd.signature.flip()), "q": In(e.q.signature.flip()),
            "bus": Out(e.bus.signature),
            "peek_addr": In(range(len(self._x.reshape(-1, self.L)))),
            "peek_data": Out(data.ArrayLayout(ACT.width, self.L)),
            "logits": Out(e.logits.signature),
            "experts_done": Out(16), "array_busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        mask = (1 << ACT.width) - 1
        words = lambda a: [[int(v) & mask for v in w] for w in a.reshape(-1, self.L)]  # noqa
        shape = data.ArrayLayout(ACT.width, self.L)
        m.submodules.h = hmem = memory.Memory(shape=shape, depth=len(words(self._h)),
                                              init=words(self._h))
        m.submodules.x = xmem = memory.Memory(shape=shape, depth=len(words(self._x)),
                                              init=words(self._x))
        h_rd, x_rd, peek, x_wr = hmem.read_port(), xmem.read_port(), xmem.read_port(), \
            xmem.write_port()
        wiring.connect(m, wiring.flipped(self.cmd), e.cmd)
        wiring.connect(m, wiring.flipped(self.q), e.q)
        wiring.connect(m, e.bus, wiring.flipped(self.bus))
        wiring.connect(m, e.logits, wiring.flipped(self.logits))
        m.d.comb += [h_rd.addr.eq(e.h_rd_addr), e.h_rd_data.eq(h_rd.data),
                     e.h_rows.eq(len(self._h)),
                     x_rd.addr.eq(e.x_rd_addr), e.x_rd_data.eq(x_rd.data),
                     x_wr.addr.eq(e.x_wr_addr), x_wr.data.eq(e.x_wr_data),
                     x_wr.en.eq(e.x_wr_en), peek.addr.eq(self.peek_addr),
                     self.peek_data.eq(peek.data), self.experts_done.eq(e.experts_done),
                     self.array_busy.eq(e.array_busy),
                     self.error.eq(e.error)]
        return m


def memory_image(qm, b, lanes, tokens, task=0, data_width=128, ports=1):
    """The layer's records as one byte image, each record in ``ports`` planes, and the engine's
    layer command fields."""
    records, fields = moe_layer_image(qm, b, task, lanes, lanes, beat_bytes=data_width // 8,
                                      ports=ports)
    image = bytearray(max(a + len(r) for a, r in records.items()))
    for address, record in records.items():
        image[address:address + len(record)] = record
    return bytes(image), dict(fields, tokens=tokens)


@cocotb.test()
async def test_experts_combine(dut):
    config = bench_config()
    harness = ExpertHarness(**config)
    engine = harness.engine
    model = config_by_name(config["model"])
    qm, b, h, x, queues, expected = layer_data(config)
    image, fields = memory_image(qm, b, harness.L, len(x),
                                 data_width=config.get("data_width", 128))
    await clock_and_reset(dut)
    ram = AxiRamRead(AxiReadBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=len(image))
    ram.log.setLevel(logging.WARNING)     # a line per burst slows long runs down
    ram.write(0, image)
    cmd = StreamSource(dut, "cmd")
    q = StreamSource(dut, "q", idle=config.get("idle", 0.0), seed=1)
    logits_sink = StreamSink(dut, "logits", backpressure=config.get("idle", 0.0), seed=2)
    cmd.send([pack_struct(engine.command_layout, **fields)])
    # The gate job first: every token's logits, as the golden model computes them.
    want = linear(h, ACT.frac, qm.block(b, "gate0_weight"), None, ACT, DEFAULT)
    got = await logits_sink.wait_for(len(x), timeout_cycles=20000)
    got = np.array([unpack_lanes(w, ACT.width, harness.L)[:model.experts] for w in got])
    assert (got == want).all(), "gate logits differ from the golden model"
    for e, tokens, scores in queues:
        q.send(pack_struct(engine.entry_layout, expert=e, token=t, score=s,
                           last=int(n == len(tokens) - 1))
               for n, (t, s) in enumerate(zip(tokens, scores)))
    cycles = busy = beats = 0
    for cycles in range(1, 2000000):
        await RisingEdge(dut.clk)
        await ReadOnly()
        busy += int(dut.array_busy.value)
        beats += int(dut.bus__rvalid.value) & int(dut.bus__rready.value)
        if int(dut.experts_done.value) == len(queues):
            break
    else:
        raise AssertionError(f"only {int(dut.experts_done.value)} of {len(queues)} experts done")
    await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 4)
    got = []
    for addr in range(len(x.reshape(-1, harness.L))):
        dut.peek_addr.value = addr
        await RisingEdge(dut.clk)
        await ReadOnly()
        got.append(unpack_lanes(int(dut.peek_data.value), ACT.width, harness.L))
        await RisingEdge(dut.clk)
    got = np.array(got).reshape(x.shape)
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{len(bad)} values of x differ from the golden model, first at "
                           f"token {bad[0][0]} channel {bad[0][1]}: RTL {got[tuple(bad[0])]}, "
                           f"golden {expected[tuple(bad[0])]}")
    assert int(dut.error.value) == 0
    dut._log.info(f"{len(queues)} active experts, {cycles} cycles, array busy {busy}")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        C = harness.L
        ideal = sum(len(t) * 2 * (model.expert_hidden // C) * (model.dim // C)
                    for _, t, _ in queues)
        fc2_beats = fields["fc2_weight_beats"] + fields["fc2_bias_beats"]
        per_expert = fields["fc2_offset"] + fc2_beats * engine.bus.rdata.shape().width // 8
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump({"model": config["model"], "block": int(b),
                       "data_width": config.get("data_width", 128),
                       "active_experts": len(queues), "routed_tokens":
                       int(sum(len(t) for _, t, _ in queues)), "cycles": cycles,
                       "array_busy_cycles": busy, "ideal_cycles": ideal,
                       "bytes_read": beats * config.get("data_width", 128) // 8,
                       "bytes_per_expert": per_expert}, f)
