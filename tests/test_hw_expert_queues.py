# amaranth: UnusedElaboratable=no
"""Expert queues in RTL against the twin, and construction checks."""

import pytest

from hw.units.expert_queues import ExpertQueues
from sim.benches.expert_queues import make_design
from sim.runner import cocotb_tests

test_expert_queues = cocotb_tests("sim.benches.expert_queues", lambda **c: make_design(c),
                                  configs=[dict(experts=4, top_k=2, max_tokens=17),
                                           dict(experts=16, top_k=2, max_tokens=40)])


@pytest.mark.parametrize("kwargs, message", [
    (dict(experts=4, top_k=5, max_tokens=8), r"top_k \(5\) must not exceed experts \(4\)"),
    (dict(experts=0, top_k=1, max_tokens=8), "experts must be a positive integer"),
])
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExpertQueues(**kwargs)
