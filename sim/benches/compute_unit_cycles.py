"""Cycle measurement of the shared compute unit on m3vit-tiny's dense MLP calls.

Run by ``python -m sim.measure compute_unit``: 129 tokens through 192 -> 768 with GELU, then
768 -> 192, back to back, bit-exact against the golden model; writes the cycle counts to the
JSON file named by ``$EDGEMOE_MEASURE_OUT``.
"""

import json
import os

import numpy as np

import cocotb

from model.config import M3VIT_TINY
from model.packer import tiles
from sim.benches.compute_unit import TB, Call
from sim.stream import PERIOD_NS


@cocotb.test()
async def measure_mlp_calls(dut):
    tb = TB(dut)
    u = tb.unit
    rng = np.random.default_rng(0)
    T, D, H = M3VIT_TINY.tokens, M3VIT_TINY.dim, M3VIT_TINY.mlp_hidden
    gelu = tb.config.get("with_gelu", False)
    calls = [Call(rng, T, D, H, gelu=gelu), Call(rng, T, H, D)]
    sink = await tb.run(calls)
    beats1 = T * tiles(H, u.cols)
    ideal = [T * tiles(o, u.cols) * tiles(i, u.rows) for i, o in ((D, H), (H, D))]
    # Call 1 from reset (its weights load first, nothing to hide them behind): report the
    # stretch from its first result; call 2 from call 1's last result (weights were loaded
    # while call 1 computed).
    first = (sink.times[beats1 - 1] - sink.times[0]) / PERIOD_NS
    second = (sink.times[-1] - sink.times[beats1 - 1]) / PERIOD_NS
    report = {
        "array": f"{u.rows}x{u.cols}", "weight_lanes": u.weight_lanes, "tokens": T,
        "calls": [
            {"shape": f"{D}->{H}" + (" +GELU" if gelu else ""), "ideal": ideal[0],
             "cycles_first_to_last_result": first},
            {"shape": f"{H}->{D}", "ideal": ideal[1],
             "cycles_after_previous_call": second},
        ],
        "total_cycles_from_reset": sink.times[-1] / PERIOD_NS,
        "weight_load_cycles_first_call": tiles(H, u.cols) * tiles(D, u.rows) * u.rows * u.cols
        // u.weight_lanes,
    }
    with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
        json.dump(report, f, indent=1)
