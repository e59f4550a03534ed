# amaranth: UnusedElaboratable=no
"""The shared compute unit: cocotb bench against the golden model, and construction checks."""

import pytest

from hw.units.compute_unit import ComputeUnit
from sim.benches.compute_unit import make_unit
from sim.runner import cocotb_tests

SMALL = dict(rows=4, cols=4, max_in=20, max_out=12, max_weights=None, max_tokens=16,
             weight_lanes=4)

#: Wider than tall, with its results in beats of its rows, and three weight banks (as the
#: 512-MAC machine).
WIDE = dict(SMALL, cols=8, out_lanes=4, weight_lanes=8, max_weights=320, banks=3,
            with_gelu=True)

test_compute_unit = cocotb_tests("sim.benches.compute_unit", lambda **c: make_unit(c),
                                 configs=[SMALL, dict(SMALL, with_gelu=True), WIDE])


@pytest.mark.parametrize("change, message", [
    (dict(rows=6), "rows must be a power of two"),
    (dict(cols=0), "cols must be a positive integer"),
    (dict(weight_lanes=3), "weight_lanes .3. must divide rows . cols .16."),
    (dict(out_lanes=3), "out_lanes must be a power of two"),
    (dict(out_lanes=8), r"out_lanes \(8\) must divide cols \(4\)"),
    (dict(max_in=-1), "max_in must be a positive integer"),
    (dict(banks=1), "banks must be an integer of at least 2"),
])
def test_bad_construction(change, message):
    with pytest.raises(ValueError, match=message):
        ComputeUnit(**{**SMALL, **change})


@pytest.mark.parametrize("change, message", [
    (dict(in_dim=21), r"in_dim must be an integer in 1..20"),
    (dict(out_dim=0), r"out_dim must be an integer in 1..12"),
    (dict(tokens=0), r"tokens must be an integer in 1..16"),
    (dict(shift=0), r"shift must be an integer in 1"),
    (dict(out_width=40), r"out_width must be an integer in 2..26"),
    (dict(gelu=True), "built without GELU"),
])
def test_bad_call(change, message):
    unit = ComputeUnit(**SMALL)
    call = dict(in_dim=20, out_dim=12, tokens=3, shift=15)
    with pytest.raises(ValueError, match=message):
        unit.command(**{**call, **change})


def test_matrix_beyond_the_weight_buffer():
    unit = ComputeUnit(**{**SMALL, "max_weights": 100})
    assert unit.max_tiles == 7
    unit.command(in_dim=8, out_dim=12, tokens=1, shift=15)      # 2 x 3 tiles
    with pytest.raises(ValueError, match="does not fit the weight buffer"):
        unit.command(in_dim=12, out_dim=12, tokens=1, shift=15)   # 3 x 3


def test_default_buffer_holds_m3vit_tiny_largest_matrix():
    assert ComputeUnit().max_tiles == 768 * 192 // 256


def test_latency_counts_the_pipeline_stages():
    # Issue/read 1, multiply 3, adder tree log2(rows), accumulate, last carry, shift, compare and
    # select 1 each, then GELU.
    from hw.arith.gelu import Gelu
    assert ComputeUnit(**SMALL).latency == 1 + 3 + 2 + 5
    assert ComputeUnit().latency == 1 + 3 + 4 + 5 == 13
    assert ComputeUnit(gelu=Gelu).latency == 13 + Gelu.LATENCY
