# amaranth: UnusedElaboratable=no
"""The AXI4 write DMA against cocotbext-axi's AxiRam, its twin, and construction checks."""

import pytest

from hw.movers.axi_writer import AxiWriter
from model.movers.axi_writer import write_beats
from sim.benches.axi_writer import make_design
from sim.runner import cocotb_tests

test_axi_writer = cocotb_tests(
    "sim.benches.axi_writer", lambda **c: make_design(c),
    configs=[dict(addr_width=32, data_width=32, max_beats=1024, max_outstanding=2),
             dict(addr_width=32, data_width=128, max_beats=1024)])


def test_write_beats_little_endian():
    memory = bytes(range(16))
    assert write_beats(memory, 4, [0x11223344, 0x55667788], 4) == (
        bytes(range(4)) + bytes([0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55])
        + bytes(range(12, 16)))
    assert memory == bytes(range(16)), "the input was changed"


def test_write_beats_nothing():
    assert write_beats(bytearray(8), 0, [], 8) == bytes(8)


def test_write_beats_bad_arguments():
    with pytest.raises(ValueError, match="not aligned to 4 bytes"):
        write_beats(bytes(16), 2, [0], 4)
    with pytest.raises(ValueError, match="past the memory"):
        write_beats(bytes(16), 8, [0, 0, 0], 4)
    with pytest.raises(ValueError, match="does not fit 4 bytes"):
        write_beats(bytes(16), 0, [1 << 32], 4)


def test_bad_construction():
    with pytest.raises(ValueError, match="data_width must be a power of two"):
        AxiWriter(data_width=100)
    with pytest.raises(ValueError, match="data_width must be a power of two"):
        AxiWriter(data_width=4)
    with pytest.raises(ValueError, match="addr_width must be a positive integer"):
        AxiWriter(addr_width=0)
    with pytest.raises(ValueError, match="max_beats must be a positive integer"):
        AxiWriter(max_beats=True)
    with pytest.raises(ValueError, match="max_outstanding must be a positive integer"):
        AxiWriter(max_outstanding=0)
