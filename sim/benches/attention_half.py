"""cocotb bench of :class:`hw.system.attention_half.AttentionHalf` against
:func:`model.system.attention_half.attention_half`.

The configuration names the model (``micro`` with synthetic weights, or ``m3vit-tiny`` with the
published Edge-MoE weights when ``weights="edge-moe"``), the lanes, the attention slots and
optional ``idle``/``backpressure``; block 0's input is the golden model's patch embedding. With
``$EDGEMOE_MEASURE_OUT`` set, the run's cycles (whole half-block and the engine's sweeps) are
written there as JSON.
"""

import json
import os

import cocotb
import numpy as np

from hw.system.attention_half import CALLS, AttentionHalf
from model.system.attention_half import attention_half
from model.config import config_by_name
from model.machine import ZCU102
from model.numerics import DEFAULT
from model.packer import bias_words, linear_weight_tiles, weight_beats
from sim.benches.layernorm import parameter_beats
from sim.benches.mlp_half import embedded_image
from sim.runner import bench_config
from sim.stream import (assert_bit_exact, StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct,
                        unpack_lanes)

ACT = DEFAULT.act
GAMMA = DEFAULT.small_format


def make_design(config):
    """The design under test (the pytest side and the bench build it the same way)."""
    model = config_by_name(config["model"])
    return AttentionHalf(dim=model.dim, heads=model.heads, max_tokens=model.tokens,
                         images=config.get("images", 1), slots=config.get("slots", 4),
                         lanes=config["lanes"],
                         weight_lanes=config["weight_lanes"], eps=model.ln_eps)


def call_shift(qm, block, call):
    """The compute unit's output shift of one call: the sum's fraction bits less the output's."""
    w = qm.block(block, f"{call}_weight")
    out = DEFAULT.query if call == "q" else ACT
    return ACT.frac + w.fmt.frac - out.frac


@cocotb.test()
async def test_attention_half_block(dut):
    config = bench_config()
    qm, x = embedded_image(config)
    block = 0
    design = make_design(config)
    L = design._lanes
    T, D = x.shape
    machine = ZCU102.replace(attention_slots=config.get("slots", 4))
    # A batch: the image's embedding, then the same rows in another order for each further
    # image (each image's attention must see only its own rows).
    images = config.get("images", 1)
    rng = np.random.default_rng(5)
    xs = [x] + [x[rng.permutation(T)] for _ in range(images - 1)]
    x = np.concatenate(xs)
    expected = np.concatenate([attention_half(qm, block, xi, machine) for xi in xs])
    gamma, beta = qm.block(block, "norm1_weight"), qm.block(block, "norm1_bias")
    assert gamma.fmt == GAMMA and beta.fmt == ACT

    await clock_and_reset(dut)
    idle = config.get("idle", 0.0)
    srcs = {n: StreamSource(dut, n, idle=idle, seed=i) for i, n in
            enumerate(("cmd", "x", "p", "w", "b"))}
    sink = StreamSink(dut, "o", backpressure=config.get("backpressure", 0.0), seed=9)

    srcs["cmd"].send([pack_struct(design.command_layout, tokens=images * T, images=images,
                                  image_tokens=T,
                                  **{f"{c}_shift": call_shift(qm, block, c) for c in CALLS})])
    srcs["p"].send(parameter_beats(design.layernorm, gamma, beta))
    cu = design.compute
    for n, call in enumerate(CALLS * images):
        w, b = qm.block(block, f"{call}_weight"), qm.block(block, f"{call}_bias")
        srcs["w"].send(pack_lanes(beat, cu.weight_width)
                       for beat in weight_beats(linear_weight_tiles(w.ints, L, L),
                                                cu.weight_lanes))
        words = bias_words(b, D, L, ACT.frac + w.fmt.frac, call_shift(qm, block, call))
        srcs["b"].send(pack_lanes(word, cu.acc_width) for word in words)
        if n == 0:
            # K's weights load first, as they do in the machine during the previous block;
            # then the rows arrive and the run's cycles start.
            await srcs["w"].wait_sent(timeout_cycles=1000)
            srcs["x"].send(pack_lanes(beat, ACT.width) for beat in x.reshape(-1, L))

    linears = 4 * images * T * (D // L) ** 2
    got = await sink.wait_for(images * T * D // L, timeout_cycles=2 * linears + 20000)
    y = np.array([unpack_lanes(word, ACT.width, L) for word in got]).reshape(images * T, D)
    assert_bit_exact(y, expected)
    assert int(dut.error.value) == 0
    cycles = int(dut.cycles.value)
    dut._log.info(f"attention half-block of {config['model']}: {cycles} cycles "
                  f"(the four linear layers at 100%: {linears})")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump({"model": config["model"], "lanes": L, "tokens": T,
                       "slots": design.engine.slots, "cycles": cycles,
                       "linear_cycles_at_100%": linears,
                       "attention_sweep_steps": design.engine.sweep_cycles(T)}, f)
