# amaranth: UnusedElaboratable=no
"""Clients sharing one compute unit through hw.units.compute_mux, against
model.units.compute_mux.serve."""

import pytest

from hw.units.compute_mux import ComputeMux
from hw.units.compute_unit import ComputeUnit
from sim.benches.compute_mux import make_design
from sim.runner import cocotb_tests

test_shared = cocotb_tests(
    "sim.benches.compute_mux", lambda **c: make_design(c),
    configs=[dict(clients=3), dict(clients=3, idle=0.4, backpressure=0.5, seed=2),
             dict(clients=1, seed=3)])


def test_bad_parameters():
    unit = ComputeUnit(rows=4, cols=4, max_in=8, max_out=8, max_tokens=4, weight_lanes=4)
    with pytest.raises(ValueError, match="clients must be a positive integer"):
        ComputeMux(unit, clients=0)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        ComputeMux(unit, clients=2, depth=0)


def test_beats_of_a_call():
    unit = ComputeUnit(rows=4, cols=4, max_in=32, max_out=64, max_tokens=17, weight_lanes=4)
    beats = unit.beats(unit.command(in_dim=30, out_dim=64, tokens=17, shift=16))
    assert beats == {"w": 8 * 16 * 4, "b": 16, "x": 17 * 8, "o": 17 * 16}
