# amaranth: UnusedElaboratable=no
"""The MoE half-block in RTL (LN2, gate, expert queues, expert engine) against the golden model:
micro with synthetic weights, both tasks, at full rate and under back-pressure, over one and two
memory ports; m3vit-tiny's
first MoE block with the published gates (synthetic experts) for both tasks, when present."""

import pytest

from model.weights import shared_weights_dir
from sim.benches.moe_half import make_design
from sim.runner import cocotb_tests

MICRO = dict(model="micro", lanes=4)

test_moe_half = cocotb_tests("sim.benches.moe_half", lambda **c: make_design(c),
                             configs=[MICRO, dict(MICRO, task=1, idle=0.3, backpressure=0.5),
                                      dict(MICRO, ports=2, idle=0.3, backpressure=0.5)])

if shared_weights_dir() is not None:
    M3VIT = dict(model="m3vit-tiny", weights="edge-moe", lanes=16, data_width=256)
    test_m3vit_tiny = cocotb_tests("sim.benches.moe_half", lambda **c: make_design(c),
                                   configs=[M3VIT, dict(M3VIT, task=1)])
else:
    @pytest.mark.skip(reason="Edge-MoE weights not present (../shared/edge-moe/weights)")
    def test_m3vit_tiny():
        pass
