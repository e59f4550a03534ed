# amaranth: UnusedElaboratable=no
"""Gather and scatter on one activation buffer: cocotb bench, twins, construction checks."""

import numpy as np
import pytest

from hw.streams.gather import Gather
from hw.streams.scatter import Scatter
from model.streams.gather import gather
from model.numerics import DEFAULT
from model.streams.scatter import scatter
from sim.benches.gather_scatter import BufferHarness
from sim.runner import cocotb_tests

test_gather_scatter = cocotb_tests("sim.benches.gather_scatter", BufferHarness,
                                   configs=[dict(lanes=4, rows=9, row_beats=3, seed=1)])


def test_twins_check_indices():
    buf = np.arange(12).reshape(4, 3)
    assert gather(buf, [3, 0]).tolist() == [[9, 10, 11], [0, 1, 2]]
    with pytest.raises(ValueError, match="outside 0..3"):
        gather(buf, [4])
    with pytest.raises(ValueError, match="distinct"):
        scatter(buf, [1, 1], buf[:2], DEFAULT.act, DEFAULT)
    assert scatter(buf, [2], [[7, 7, 7]], DEFAULT.act, DEFAULT)[2].tolist() == [7, 7, 7]


@pytest.mark.parametrize("cls", [Gather, Scatter])
def test_bad_construction(cls):
    kwargs = dict(lanes=4, rows=0, row_beats=3)
    if cls is Gather:
        kwargs["width"] = 26
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        cls(**kwargs)
