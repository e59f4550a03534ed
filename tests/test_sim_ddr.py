# amaranth: UnusedElaboratable=no
"""The DRAM timing model of the benches (sim/ddr.py): its figures, and (in a bench of two real
read DMAs) its latency, shared bandwidth and outstanding bursts against those figures."""

import math

import pytest

from sim.benches.ddr import make_design
from sim.ddr import IDEAL, MEMORIES, ZCU102_DDR4, MemoryModel, memory_by_name, waited
from sim.runner import cocotb_tests

test_ddr_bench = cocotb_tests("sim.benches.ddr", lambda **c: make_design(c),
                              configs=[dict(addr_width=32, data_width=128, max_beats=4096)])


def test_zcu102_figures_at_the_machine_clock():
    assert ZCU102_DDR4.latency_cycles(300) == 60
    assert ZCU102_DDR4.bytes_per_cycle(300) == pytest.approx(42.67, abs=0.01)
    assert "60 cycles at 300 MHz" in ZCU102_DDR4.describe(300)
    assert not ZCU102_DDR4.ideal and IDEAL.ideal and math.isinf(IDEAL.gbytes_per_second)


def test_unknown_memory_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown memory 'ddr5'; choose one of: " +
                       ", ".join(MEMORIES)):
        memory_by_name("ddr5")


class _Port:
    def __init__(self, *intervals):
        self.intervals = list(intervals)


def test_waits_are_a_union_over_ports_within_the_run():
    ports = [_Port((0, 10), (20, 30)), _Port((5, 15), (40, 50)), _Port()]
    assert waited(ports, 0, 100) == 15 + 10 + 10
    assert waited(ports, 8, 45) == 7 + 10 + 5
    assert waited([_Port()], 0, 10) == 0
    assert MemoryModel("x", latency_ns=10).latency_cycles(250) == 3
