# amaranth: UnusedElaboratable=no
"""Two AXI4 read DMAs on one port through AxiReadShare, and construction checks."""

import pytest

from hw.movers.axi_read_share import AxiReadShare
from sim.benches.axi_read_share import make_design
from sim.runner import cocotb_tests

test_axi_read_share = cocotb_tests("sim.benches.axi_read_share", lambda **c: make_design(c),
                                   configs=[dict(addr_width=32, data_width=128, max_beats=4096)])


def test_bad_construction():
    with pytest.raises(ValueError, match="masters must be an integer of at least 2, not 1"):
        AxiReadShare(masters=1)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        AxiReadShare(masters=2, depth=0)
