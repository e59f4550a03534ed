# amaranth: UnusedElaboratable=no
"""The MoE gate (softmax over experts, top-k) against model.units.gate.route."""

import pytest

from hw.units.gate import Gate
from sim.benches.gate import make_design
from sim.runner import cocotb_tests

test_gate = cocotb_tests("sim.benches.gate", lambda **c: make_design(c),
                         configs=[dict(experts=4, k=2, lanes=4, max_tokens=17),
                                  dict(experts=16, k=2, lanes=16, max_tokens=129)])


@pytest.mark.parametrize("kwargs, message", [
    (dict(experts=4, k=5, lanes=4, max_tokens=8), r"k \(5\) must not exceed experts"),
    (dict(experts=8, k=2, lanes=4, max_tokens=8), r"experts \(8\) must fit one beat of 4"),
])
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Gate(**kwargs)
