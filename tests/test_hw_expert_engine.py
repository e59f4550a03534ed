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
             dict(MICRO, banks=3), dict(MICRO, banks=3, idle=0.5, seed=4, queue_banks=8),
             dict(MICRO, queue_banks=2)])


def test_dimensions_must_be_lane_multiples():
    with pytest.raises(ValueError, match="expert_hidden must be a positive multiple of lanes"):
        ExpertEngine(dim=32, expert_hidden=30, experts=4, max_tokens=17, lanes=4)


@pytest.mark.parametrize("queue_banks", [1, 3, 6, 4.0])
def test_queue_banks_must_be_a_power_of_two(queue_banks):
    with pytest.raises(ValueError, match="queue_banks must be a power of two of at least 2"):
        ExpertEngine(dim=32, expert_hidden=32, experts=4, max_tokens=17, lanes=4,
                     queue_banks=queue_banks)
