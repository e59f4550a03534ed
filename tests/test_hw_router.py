# amaranth: UnusedElaboratable=no
"""Tests of the stream router (hw/streams/router.py) against its twin (model/streams/router.py):
the cocotb bench ``sim.benches.router`` under Verilator, and the twin's own checks."""

import pytest

from model.streams.router import route
from sim.benches.router import router_design
from sim.runner import cocotb_tests

test_router = cocotb_tests("sim.benches.router", router_design,
                           configs=[dict(destinations=3, depth=4), dict(destinations=1, depth=2)])


def test_twin_routes_in_job_order():
    assert route([(1, 2), (0, 0), (0, 1), (1, 1)], [10, 11, 12, 13], 2) == [[12], [10, 11, 13]]


def test_twin_refuses_bad_jobs():
    with pytest.raises(ValueError, match="destination 2 outside 0..1"):
        route([(2, 1)], [1], 2)
    with pytest.raises(ValueError, match="ask for 3 payloads, only 2 given"):
        route([(0, 3)], [1, 2], 1)
