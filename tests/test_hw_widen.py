# amaranth: UnusedElaboratable=no
"""Widening the dense weight beats to the compute unit's beat of several memory ports."""

import pytest
from amaranth import signed

from hw.streams.widen import Widen
from sim.benches.widen import make_design
from sim.runner import cocotb_tests

test_widen = cocotb_tests("sim.benches.widen", lambda **c: make_design(c),
                          configs=[dict(lanes=8, ratio=2), dict(lanes=4, ratio=3)])
# ratio 1 is a wire (no clock); the machine with one expert port runs it (test_hw_selftest).


def test_bad_ratio():
    with pytest.raises(ValueError, match="ratio must be a positive integer"):
        Widen(signed(16), 8, 0)
