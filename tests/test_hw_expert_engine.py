# amaranth: UnusedElaboratable=no
"""The expert engine (patch-reorder DMA and expert compute) against the golden model."""

import pytest

from hw.units.expert_engine import ExpertEngine
from sim.benches.expert_engine import ExpertHarness
from sim.runner import cocotb_tests

MICRO = dict(model="micro", lanes=4)

test_expert_engine = cocotb_tests(
    "sim.benches.expert_engine", ExpertHarness,
    configs=[MICRO, dict(MICRO, idle=0.5, seed=4),
             dict(MICRO, routing="one_expert_takes_all"), dict(MICRO, data_width=256),
             dict(MICRO, banks=3), dict(MICRO, banks=3, idle=0.5, seed=4)])


def test_dimensions_must_be_lane_multiples():
    with pytest.raises(ValueError, match="expert_hidden must be a positive multiple of lanes"):
        ExpertEngine(dim=32, expert_hidden=30, experts=4, max_tokens=17, lanes=4)
