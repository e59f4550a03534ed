# amaranth: UnusedElaboratable=no
"""The dense MLP half-block in RTL against the golden model: micro (synthetic weights), and
m3vit-tiny block 0 with the published weights when present."""

import pytest

from hw.system.mlp_half import MlpHalf
from model.weights import shared_weights_dir
from sim.benches.mlp_half import make_design
from sim.runner import cocotb_tests

MICRO = dict(model="micro", lanes=4, weight_lanes=4)

test_micro = cocotb_tests("sim.benches.mlp_half", lambda **c: make_design(c),
                          configs=[MICRO, dict(MICRO, idle=0.3, backpressure=0.5)])

if shared_weights_dir() is not None:
    test_m3vit_tiny_block0 = cocotb_tests(
        "sim.benches.mlp_half", lambda **c: make_design(c),
        configs=[dict(model="m3vit-tiny", weights="edge-moe", lanes=16, weight_lanes=8)])
else:
    @pytest.mark.skip(reason="Edge-MoE weights not present (../shared/edge-moe/weights)")
    def test_m3vit_tiny_block0():
        pass


def test_dimensions_must_be_lane_multiples():
    with pytest.raises(ValueError, match="hidden must be a positive multiple of lanes"):
        MlpHalf(dim=32, hidden=60, max_tokens=4, lanes=8)
