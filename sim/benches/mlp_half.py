"""cocotb bench of :class:`hw.system.mlp_half.MlpHalf` against
:func:`model.system.mlp_half.mlp_half`.

The configuration names the model (``micro`` with synthetic weights, or ``m3vit-tiny`` with the
published Edge-MoE weights) and the dense block; the block's input is the golden model's own
(patch embedding and the block's attention half), so the whole chain is the integer
specification. With ``$EDGEMOE_MEASURE_OUT`` set, the run's cycle count is written there as JSON.
"""

import json
import os
import warnings

import numpy as np

import cocotb

from hw.system.mlp_half import GAMMA_FORMAT, MlpHalf
from model.config import config_by_name
from model.machine import ZCU102
from model.golden import attention_half
from model.system.mlp_half import mlp_half
from model.numerics import DEFAULT
from model.packer import bias_words, linear_weight_tiles, weight_beats
from model.units.compute_unit import linear
from model.units.layernorm import layer_norm
from model.units.residual import residual_add
from model.units.patch_embed import patch_embed
from model.quantize import quantize
from model.weights import (load_edge_moe, load_image, shared_weights_dir, synthetic,
                           synthetic_image)
from sim.benches.layernorm import parameter_beats
from sim.runner import bench_config
from sim.stream import (assert_bit_exact, StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct,
                        unpack_lanes)

ACT = DEFAULT.act


def make_design(config):
    """The design under test (the pytest side and the bench build it the same way)."""
    model = config_by_name(config["model"])
    return MlpHalf(dim=model.dim, hidden=model.mlp_hidden, max_tokens=model.tokens,
                   lanes=config["lanes"], weight_lanes=config["weight_lanes"], eps=model.ln_eps)


def embedded_image(config):
    """Quantized model and the golden model's patch embedding of the configuration's image
    (published weights and image with ``weights="edge-moe"``, else synthetic ones)."""
    model = config_by_name(config["model"])
    if config.get("weights") == "edge-moe":
        directory = shared_weights_dir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = load_edge_moe(directory, model)
        image = load_image(directory, model)
    else:
        weights, image = synthetic(model, seed=11), synthetic_image(model, seed=11)
    qm = quantize(weights, DEFAULT)
    x = patch_embed(image, model.patch, qm["patch_weight"], qm["patch_bias"],
                    qm["pos_embed"].ints, ACT, DEFAULT)
    return qm, x


def block_input(config):
    """Quantized model and the golden model's input to the block's MLP half."""
    qm, x = embedded_image(config)
    # Block 0 is dense in every configuration; its input comes from the patch embedding.
    x = attention_half(qm, 0, x, ZCU102)
    return qm, 0, x


@cocotb.test()
async def test_mlp_half_block(dut):
    config = bench_config()
    qm, block, x = block_input(config)
    design = make_design(config)
    L = design._lanes
    T, D = x.shape
    expected = mlp_half(qm, block, x)
    gamma, beta = qm.block(block, "norm2_weight"), qm.block(block, "norm2_bias")
    assert gamma.fmt == GAMMA_FORMAT and beta.fmt == ACT
    w1, b1 = qm.block(block, "fc1_weight"), qm.block(block, "fc1_bias")
    w2, b2 = qm.block(block, "fc2_weight"), qm.block(block, "fc2_bias")

    await clock_and_reset(dut)
    idle = config.get("idle", 0.0)
    srcs = {n: StreamSource(dut, n, idle=idle, seed=i) for i, n in
            enumerate(("cmd", "x", "p", "w", "b"))}
    sink = StreamSink(dut, "o", backpressure=config.get("backpressure", 0.0), seed=9)

    srcs["cmd"].send([pack_struct(design.command_layout, tokens=T, fc1_shift=w1.fmt.frac,
                                  fc2_shift=w2.fmt.frac)])
    srcs["p"].send(parameter_beats(design.layernorm, gamma, beta))
    cu = design.compute
    for n, (w, b) in enumerate(((w1, b1), (w2, b2))):
        srcs["w"].send(pack_lanes(beat, cu.weight_width)
                       for beat in weight_beats(linear_weight_tiles(w.ints, L, L),
                                                cu.weight_lanes))
        words = bias_words(b, w.ints.shape[0], L, ACT.frac + w.fmt.frac, w.fmt.frac)
        srcs["b"].send(pack_lanes(word, cu.acc_width) for word in words)
        if n == 0:
            # fc1's weights load first, as they do in the machine while the attention
            # projection computes; then the rows arrive and the run's cycles start.
            await srcs["w"].wait_sent(timeout_cycles=1000)
            srcs["x"].send(pack_lanes(beat, ACT.width) for beat in x.reshape(-1, L))

    # The first result leaves only after fc1 has run over every token.
    model = config_by_name(config["model"])
    ideal = 2 * T * (-(-model.mlp_hidden // L)) * (-(-D // L))
    got = await sink.wait_for(T * D // L, timeout_cycles=2 * ideal + 20000)
    y = np.array([unpack_lanes(word, ACT.width, L) for word in got]).reshape(T, D)
    assert_bit_exact(y, expected)
    assert int(dut.error.value) == 0
    cycles = int(dut.cycles.value)
    dut._log.info(f"MLP half-block of {config['model']}: {cycles} cycles")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump({"model": config["model"], "lanes": L, "tokens": T, "cycles": cycles,
                       "matmul_cycles_at_100%": ideal}, f)


@cocotb.test()
async def test_next_run_queued_early(dut):
    """Two runs queued at once, as a sequencer running ahead issues them: the second run's
    command and its LayerNorm parameters (block 1's ``norm2``, another set) wait while the first
    run normalises its rows with its own set; both runs are bit-exact and neither hangs."""
    config = bench_config()
    qm, block, x = block_input(config)
    design = make_design(config)
    L, cu = design._lanes, design.compute
    T, D = x.shape
    num = qm.numerics
    w1, b1 = qm.block(block, "fc1_weight"), qm.block(block, "fc1_bias")
    w2, b2 = qm.block(block, "fc2_weight"), qm.block(block, "fc2_bias")
    sets = [(qm.block(b, "norm2_weight"), qm.block(b, "norm2_bias")) for b in (block, block + 1)]

    def golden(x, gamma, beta):
        h = layer_norm(x, ACT, gamma, beta, qm.config.ln_eps, num)
        hid = linear(h, ACT.frac, w1, b1, ACT, num, apply_gelu=True)
        return residual_add(x, linear(hid, ACT.frac, w2, b2, ACT, num), ACT, num)

    first = golden(x, *sets[0])
    assert_bit_exact(first, mlp_half(qm, block, x))
    second = golden(first, *sets[1])

    await clock_and_reset(dut)
    srcs = {n: StreamSource(dut, n, seed=i) for i, n in enumerate(("cmd", "x", "p", "w", "b"))}
    sink = StreamSink(dut, "o")
    for gamma, beta in sets:
        srcs["cmd"].send([pack_struct(design.command_layout, tokens=T, fc1_shift=w1.fmt.frac,
                                      fc2_shift=w2.fmt.frac)])
        srcs["p"].send(parameter_beats(design.layernorm, gamma, beta))
        for w, b in ((w1, b1), (w2, b2)):
            srcs["w"].send(pack_lanes(beat, cu.weight_width)
                           for beat in weight_beats(linear_weight_tiles(w.ints, L, L),
                                                    cu.weight_lanes))
            words = bias_words(b, w.ints.shape[0], L, ACT.frac + w.fmt.frac, w.fmt.frac)
            srcs["b"].send(pack_lanes(word, cu.acc_width) for word in words)
    srcs["x"].send(pack_lanes(beat, ACT.width) for beat in x.reshape(-1, L))
    got = await sink.wait_for(T * D // L, timeout_cycles=200_000)
    y = np.array([unpack_lanes(word, ACT.width, L) for word in got]).reshape(T, D)
    assert_bit_exact(y, first)
    # The second run's rows are the first run's results, fed back as the machine would.
    srcs["x"].send(pack_lanes(row, ACT.width) for row in np.asarray(first).reshape(-1, L))
    got = await sink.wait_for(2 * T * D // L, timeout_cycles=200_000)
    y = np.array([unpack_lanes(word, ACT.width, L) for word in got[T * D // L:]]).reshape(T, D)
    assert_bit_exact(y, second)
    assert int(dut.error.value) == 0
