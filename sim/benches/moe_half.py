"""cocotb bench of :class:`hw.system.moe_half.MoeHalf` against
:func:`model.system.moe_half.moe_half`: the
model's first MoE block, its input from the golden model, gate and expert records in
cocotbext-axi's AxiRam. With ``$EDGEMOE_MEASURE_OUT`` set, the run's figures go there as JSON."""

import json
import logging
import mmap
import os

import numpy as np

import cocotb
from cocotbext.axi import AxiRamRead, AxiReadBus

from hw.movers.linear_fetch import bus_name
from hw.system.moe_half import MoeHalf
from model.config import config_by_name
from model.system.moe_half import moe_half
from model.numerics import DEFAULT
from sim.benches.expert_engine import layer_data, memory_image
from sim.benches.layernorm import parameter_beats
from sim.runner import bench_config
from sim.stream import (StreamSink, StreamSource, assert_bit_exact, clock_and_reset,
                        pack_lanes, pack_struct, unpack_lanes)

ACT = DEFAULT.act


def make_design(config):
    model = config_by_name(config["model"])
    return MoeHalf(dim=model.dim, expert_hidden=model.expert_hidden, experts=model.experts,
                   top_k=model.top_k, max_tokens=model.tokens, lanes=config["lanes"],
                   data_width=config.get("data_width", 128), addr_width=32,
                   ports=config.get("ports", 1), eps=model.ln_eps)


@cocotb.test()
async def test_moe_half_block(dut):
    config = bench_config()
    design = make_design(config)
    model = config_by_name(config["model"])
    task = config.get("task", 0)
    qm, b, _, x, _, _ = layer_data(config)
    expected, chosen, probs = moe_half(qm, b, x, task)
    L = config["lanes"]
    ports = config.get("ports", 1)
    image, fields = memory_image(qm, b, L, len(x), task=task,
                                 data_width=config.get("data_width", 128), ports=ports)
    await clock_and_reset(dut)
    memory = mmap.mmap(-1, len(image))
    memory[:] = image
    for p in range(ports):               # one memory behind every port
        ram = AxiRamRead(AxiReadBus.from_prefix(dut, f"{bus_name(p)}_"), dut.clk, dut.rst,
                         mem=memory)
        ram.log.setLevel(logging.WARNING)
    srcs = {n: StreamSource(dut, n, idle=config.get("idle", 0.0), seed=i)
            for i, n in enumerate(("cmd", "x", "p"))}
    sink = StreamSink(dut, "o", backpressure=config.get("backpressure", 0.0), seed=5)
    gamma, beta = qm.block(b, "norm2_weight"), qm.block(b, "norm2_bias")
    srcs["cmd"].send([pack_struct(design.engine.command_layout, **fields)])
    srcs["p"].send(parameter_beats(design.layernorm, gamma, beta))
    srcs["x"].send(pack_lanes(row, ACT.width) for row in x.reshape(-1, L))
    got = await sink.wait_for(x.size // L, timeout_cycles=400000)
    y = np.array([unpack_lanes(w, ACT.width, L) for w in got]).reshape(x.shape)
    assert_bit_exact(y, expected)
    assert int(dut.error.value) == 0
    cycles = int(dut.cycles.value)
    active = len(set(chosen.reshape(-1).tolist()))
    dut._log.info(f"MoE half-block: {cycles} cycles, {active} active experts")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump({"model": config["model"], "block": int(b), "task": task,
                       "data_width": config.get("data_width", 128), "ports": ports,
                       "cycles": cycles,
                       "active_experts": active,
                       "ideal_expert_cycles": int(len(chosen.reshape(-1)) * 2 *
                                                  (model.expert_hidden // L) *
                                                  (model.dim // L))}, f)
