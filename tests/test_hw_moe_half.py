# amaranth: UnusedElaboratable=no
"""The MoE half-block in RTL (LN2, gate, expert queues, expert engine) against the golden model,
for micro with synthetic weights, both tasks, at full rate and under back-pressure."""

from sim.benches.moe_half import make_design
from sim.runner import cocotb_tests

MICRO = dict(model="micro", lanes=4)

test_moe_half = cocotb_tests("sim.benches.moe_half", lambda **c: make_design(c),
                             configs=[MICRO, dict(MICRO, task=1, idle=0.3, backpressure=0.5)])
