"""cocotb bench of :class:`hw.units.patch_embed.PatchEmbed` against
:func:`model.units.patch_embed.patch_embed`.

The configuration names the model (``micro`` with synthetic weights and image, or ``m3vit-tiny``
with the published Edge-MoE weights and image), the unit's widths and the stream conditions
(``idle`` of the sources, ``backpressure`` on ``o``). The image goes in as the host lays it out,
:func:`model.units.patch_embed.image_bytes` cut into little-endian beats.
"""

import warnings

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles

from hw.units.patch_embed import PatchEmbed
from model.config import config_by_name
from model.numerics import DEFAULT
from model.packer import bias_words, linear_weight_tiles, weight_beats
from model.units.patch_embed import PIXEL_FRAC, image_bytes, patch_embed
from model.quantize import quantize
from model.weights import (load_edge_moe, load_image, shared_weights_dir, synthetic,
                           synthetic_image)
from sim.runner import bench_config
from sim.stream import (StreamSink, StreamSource, clock_and_reset, pack_lanes, pack_struct,
                        unpack_lanes)

ACT = DEFAULT.act


def make_design(config):
    """The design under test (the pytest side and the bench build it the same way)."""
    model = config_by_name(config["model"])
    return PatchEmbed(channels=model.image_channels, patch=model.patch, dim=model.dim,
                      max_patches=model.patches, lanes=config["lanes"],
                      weight_lanes=config["weight_lanes"], data_width=config["data_width"])


def model_and_image(config):
    """Quantized model and pixel codes of the configuration (published or synthetic)."""
    model = config_by_name(config["model"])
    if config.get("weights") == "edge-moe":
        directory = shared_weights_dir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = load_edge_moe(directory, model)
        image = load_image(directory, model)
    else:
        weights, image = synthetic(model, seed=11), synthetic_image(model, seed=11)
    return quantize(weights, DEFAULT), np.asarray(image)


class TB:
    """Clock, reset, the five sources and the sink; :meth:`send_run` queues one run."""

    def __init__(self, dut, config, design):
        self.dut, self.design = dut, design
        idle = config.get("idle", 0.0)
        self.src = {n: StreamSource(dut, n, idle=idle, seed=i) for i, n in
                    enumerate(("cmd", "image", "w", "b", "pos"))}
        self.sink = StreamSink(dut, "o", backpressure=config.get("backpressure", 0.0), seed=9)

    def send_command(self, patches, shift):
        self.src["cmd"].send([pack_struct(self.design.command_layout, patches=patches,
                                          shift=shift)])

    def send_run(self, qm, image, patch, *, command=True):
        """Queue a whole run (without its command if ``command`` is false); return ``(expected
        tokens, command fields)``."""
        design, L = self.design, self.design.lanes
        cu = design.compute
        w, b, pos = qm["patch_weight"], qm["patch_bias"], qm["pos_embed"].ints
        shift = PIXEL_FRAC + w.fmt.frac - ACT.frac
        patches = pos.shape[0] - 1
        fields = design.command(patches=patches, shift=shift)
        if command:
            self.send_command(**fields)
        self.src["w"].send(pack_lanes(beat, cu.weight_width)
                           for beat in weight_beats(linear_weight_tiles(w.ints, L, L),
                                                    cu.weight_lanes))
        self.src["b"].send(pack_lanes(word, cu.acc_width) for word in
                           bias_words(b, design.dim, L, PIXEL_FRAC + w.fmt.frac, shift))
        data = image_bytes(image, patch)
        size = len(data) // (design.image_beats_per_patch * patches)
        self.src["image"].send(int.from_bytes(data[i:i + size], "little")
                               for i in range(0, len(data), size))
        self.src["pos"].send(pack_lanes(beat, ACT.width) for beat in pos.reshape(-1, L))
        return patch_embed(image, patch, w, b, pos, ACT, DEFAULT), fields

    async def receive(self, expected, timeout_cycles):
        L = self.design.lanes
        T, D = expected.shape
        got = await self.sink.wait_for(T * D // L, timeout_cycles=timeout_cycles)
        y = np.array([unpack_lanes(word, ACT.width, L) for word in got]).reshape(T, D)
        bad = np.argwhere(y != expected)
        assert bad.size == 0, (
            f"{len(bad)} of {y.size} values differ from the golden model, first at token "
            f"{bad[0][0]} channel {bad[0][1]}: RTL {y[tuple(bad[0])]}, golden "
            f"{expected[tuple(bad[0])]}")


def ideal_cycles(design, patches):
    """The compute unit's products alone: patches * ceil(dim/lanes) * ceil(in/lanes)."""
    L = design.lanes
    return patches * (-(-design.dim // L)) * (-(-design.in_dim // L))


def timeout(design, idle):
    # The longest gap without an output beat: loading the weights, then the first patch.
    cu = design.compute
    weights = design.dim * design.in_dim // cu.weight_lanes
    return int((weights + ideal_cycles(design, 1) + 1000) / (1 - idle) * 2)


@cocotb.test()
async def test_tokens(dut):
    """A whole image, bit for bit against the golden model; ``cycles`` at the compute rate."""
    config = bench_config()
    design = make_design(config)
    model = config_by_name(config["model"])
    qm, image = model_and_image(config)
    await clock_and_reset(dut)
    tb = TB(dut, config, design)
    expected, _ = tb.send_run(qm, image, model.patch)
    await tb.receive(expected, timeout(design, config.get("idle", 0.0)))
    assert int(dut.error.value) == 0
    cycles, ideal = int(dut.cycles.value), ideal_cycles(design, model.patches)
    dut._log.info(f"patch embedding of {config['model']} ({model.patches} patches, "
                  f"lanes {design.lanes}): {cycles} cycles, {ideal} of products")
    assert cycles >= ideal
    if not config.get("idle") and not config.get("backpressure"):
        # Full rate: only the first patch's load and the pipeline beyond the products.
        assert cycles == (ideal + design.in_dim // design.lanes + design.compute.latency + 3), \
            cycles


@cocotb.test()
async def test_bad_commands_are_dropped(dut):
    """Zero patches, too many and shift 0 set ``error`` and do nothing; a good run follows."""
    config = bench_config()
    design = make_design(config)
    model = config_by_name(config["model"])
    qm, image = model_and_image(config)
    await clock_and_reset(dut)
    tb = TB(dut, config, design)
    for patches, shift in ((0, 9), (design.max_patches + 1, 9), (4, 0)):
        tb.send_command(patches, shift)
        await tb.src["cmd"].wait_sent(timeout_cycles=100)
        await ClockCycles(dut.clk, 2)
        assert int(dut.error.value) == 1, (patches, shift)
    expected, fields = tb.send_run(qm, image, model.patch, command=False)
    await ClockCycles(dut.clk, 100)
    assert tb.sink.payloads == [], "a dropped command ran"
    assert tb.src["pos"].sent == tb.src["image"].sent == 0, "a dropped command took data"
    tb.send_command(**fields)
    await tb.receive(expected, timeout(design, config.get("idle", 0.0)))
    assert int(dut.error.value) == 1
