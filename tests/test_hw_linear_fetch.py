# amaranth: UnusedElaboratable=no
"""Fetching a linear layer's record from memory into compute-unit streams."""

import pytest

from hw.movers.linear_fetch import LinearFetch
from sim.benches.linear_fetch import make_design
from sim.runner import cocotb_tests

test_linear_fetch = cocotb_tests("sim.benches.linear_fetch", lambda **c: make_design(c),
                                 configs=[dict(cols=4, acc_width=49, data_width=128,
                                               addr_width=32),
                                          dict(cols=2, acc_width=49, data_width=128,
                                               addr_width=32),
                                          dict(cols=4, acc_width=49, data_width=128,
                                               addr_width=32, ports=2),
                                          dict(cols=6, acc_width=49, data_width=64,
                                               addr_width=32, ports=3),
                                          # plane 3 at 4 - 1 planes on (no multiplier)
                                          dict(cols=8, acc_width=49, data_width=64,
                                               addr_width=32, ports=4)])


def test_bad_construction():
    with pytest.raises(ValueError, match="whole 64-bit bias words"):
        LinearFetch(cols=3, acc_width=49)
    with pytest.raises(ValueError, match="acc_width must be at most 64"):
        LinearFetch(cols=4, acc_width=70)
    with pytest.raises(ValueError, match="ports must be a positive integer"):
        LinearFetch(cols=4, acc_width=49, ports=0)
