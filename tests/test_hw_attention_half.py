# amaranth: UnusedElaboratable=no
"""The attention half-block in RTL against the golden model: micro (synthetic weights) at full
rate and under random idles and back-pressure, and m3vit-tiny block 0 with the published
weights when present."""

import pytest

from hw.system.attention_half import AttentionHalf
from model.weights import shared_weights_dir
from sim.benches.attention_half import make_design
from sim.runner import cocotb_tests

MICRO = dict(model="micro", lanes=4, weight_lanes=4)

test_micro = cocotb_tests("sim.benches.attention_half", lambda **c: make_design(c),
                          configs=[MICRO, dict(MICRO, idle=0.3, backpressure=0.5, slots=2)])

# A batch of three images in one run: each image's attention over its own rows only.
test_micro_batch = cocotb_tests(
    "sim.benches.attention_half", lambda **c: make_design(c),
    configs=[dict(MICRO, images=3), dict(MICRO, images=2, idle=0.3, backpressure=0.5)])

if shared_weights_dir() is not None:
    test_m3vit_tiny_block0 = cocotb_tests(
        "sim.benches.attention_half", lambda **c: make_design(c),
        configs=[dict(model="m3vit-tiny", weights="edge-moe", lanes=16, weight_lanes=8)])
else:
    @pytest.mark.skip(reason="Edge-MoE weights not present (../shared/edge-moe/weights)")
    def test_m3vit_tiny_block0():
        pass


def test_bad_dimensions():
    with pytest.raises(ValueError, match="dim must be a positive multiple of lanes"):
        AttentionHalf(dim=30, heads=2, max_tokens=4, lanes=4)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        AttentionHalf(dim=32, heads=3, max_tokens=4, lanes=4)
