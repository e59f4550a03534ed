# amaranth: UnusedElaboratable=no
"""Top-k in RTL against the twin (ties to the lower index, every k), and construction checks."""

import pytest

from hw.units.top_k import TopK
from sim.benches.top_k import make_design
from sim.runner import cocotb_tests

test_top_k = cocotb_tests("sim.benches.top_k", lambda **c: make_design(c),
                          configs=[dict(experts=16, k=2), dict(experts=5, k=5),
                                   dict(experts=4, k=1)])


def test_bad_construction():
    with pytest.raises(ValueError, match=r"k \(3\) must not exceed experts \(2\)"):
        TopK(experts=2, k=3)
