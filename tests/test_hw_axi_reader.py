# amaranth: UnusedElaboratable=no
"""The AXI4 read DMA against cocotbext-axi's AxiRam, and construction checks."""

import pytest

from hw.movers.axi_reader import AxiReader
from sim.benches.axi_reader import make_design
from sim.runner import cocotb_tests

test_axi_reader = cocotb_tests("sim.benches.axi_reader", lambda **c: make_design(c),
                               configs=[dict(addr_width=32, data_width=128, max_beats=4096)])


def test_bad_construction():
    with pytest.raises(ValueError, match="data_width must be a power of two"):
        AxiReader(data_width=100)
    with pytest.raises(ValueError, match="max_outstanding must be a positive integer"):
        AxiReader(max_outstanding=0)
