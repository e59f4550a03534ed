"""Measured cycle counts of hardware units, from cycle-accurate simulation.

    python -m sim.measure [compute_unit] [mlp_half] [moe_experts[_256]]
                          [moe_half[_256|_2ports]]
                          [attention_p1|p2|p4|p8] [attention_half] [--json]

Each measurement is a cocotb bench (``sim/benches/*_cycles.py``) on the unit's default
configuration that also checks its results bit for bit against the golden model; the cycle
counts are what the simulation took, not estimates.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from .runner import run

__all__ = ["MEASUREMENTS", "measure", "main"]


def _compute_unit():
    from sim.benches.compute_unit import make_unit
    config = dict(with_gelu=True)
    return (lambda: make_unit(config)), config, "sim.benches.compute_unit_cycles"


def _mlp_half():
    from model.weights import shared_weights_dir
    from sim.benches.mlp_half import make_design
    config = dict(model="m3vit-tiny", lanes=16, weight_lanes=8)
    if shared_weights_dir() is not None:
        config["weights"] = "edge-moe"
    return (lambda: make_design(config)), config, "sim.benches.mlp_half"


def _moe_experts(data_width):
    def make():
        from model.weights import shared_weights_dir
        from sim.benches.expert_engine import ExpertHarness
        config = dict(model="m3vit-tiny", lanes=16, data_width=data_width)
        if shared_weights_dir() is not None:
            config["weights"] = "edge-moe"
        return (lambda: ExpertHarness(**config)), config, "sim.benches.expert_engine"
    return make


def _moe_half(data_width, ports=1):
    def make():
        from model.weights import shared_weights_dir
        from sim.benches.moe_half import make_design
        config = dict(model="m3vit-tiny", lanes=16, data_width=data_width, ports=ports)
        if shared_weights_dir() is not None:
            config["weights"] = "edge-moe"
        return (lambda: make_design(config)), config, "sim.benches.moe_half"
    return make


def _m3vit_config(**config):
    from model.weights import shared_weights_dir
    config = dict(model="m3vit-tiny", **config)
    if shared_weights_dir() is not None:
        config["weights"] = "edge-moe"
    return config


def _attention(slots):
    def make():
        from sim.benches.attention import make_design
        config = _m3vit_config(lanes=16, slots=slots)
        return (lambda: make_design(config)), config, "sim.benches.attention", "test_block0"
    return make


def _attention_half():
    from sim.benches.attention_half import make_design
    config = _m3vit_config(lanes=16, weight_lanes=8, slots=4)
    return (lambda: make_design(config)), config, "sim.benches.attention_half"


MEASUREMENTS = {"compute_unit": _compute_unit, "mlp_half": _mlp_half,
                "moe_half": _moe_half(128), "moe_half_256": _moe_half(256),
                "moe_half_2ports": _moe_half(128, ports=2),
                "moe_experts": _moe_experts(128), "moe_experts_256": _moe_experts(256),
                **{f"attention_p{p}": _attention(p) for p in (1, 2, 4, 8)},
                "attention_half": _attention_half}


def measure(name):
    factory, config, bench, *testcase = MEASUREMENTS[name]()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "measure.json")
        start = time.perf_counter()
        run(factory(), bench, config=config, extra_env={"EDGEMOE_MEASURE_OUT": out},
            **({"testcase": testcase[0]} if testcase else {}))
        with open(out) as f:
            report = json.load(f)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    return report


def _print_compute_unit(r):
    print(f"compute_unit: {r['array']} array, {r['weight_lanes']} weights per beat, "
          f"{r['tokens']} tokens (simulated in {r['wall_seconds']} s including any build)")
    for call in r["calls"]:
        cycles = call.get("cycles_after_previous_call", call.get("cycles_first_to_last_result"))
        how = ("after the previous call's last result" if "cycles_after_previous_call" in call
               else "first to last result")
        print(f"  {call['shape']:16s} {cycles:9.0f} cycles ({how}), ideal {call['ideal']}, "
              f"utilisation {call['ideal'] / cycles:6.1%}")
    print(f"  total from reset {r['total_cycles_from_reset']:.0f} cycles "
          f"(the first matrix's {r['weight_load_cycles_first_call']}-cycle load is not hidden)")


def _print_mlp_half(r):
    print(f"mlp_half: {r['model']} block 0, {r['tokens']} tokens, {r['lanes']}x{r['lanes']} "
          f"array: {r['cycles']} cycles (LN2, fc1 + GELU, fc2, residual; the two matmuls alone "
          f"{r['matmul_cycles_at_100%']} at 100%) (simulated in {r['wall_seconds']} s "
          f"including any build)")


def _print_moe_experts(r):
    waits = r["cycles"] - r["array_busy_cycles"]
    print(f"moe_experts: {r['model']} block {r['block']}, one {r['data_width']}-bit AXI port: "
          f"{r['active_experts']} active experts, {r['routed_tokens']} routed tokens; "
          f"{r['cycles']} cycles, array busy {r['array_busy_cycles']} (ideal {r['ideal_cycles']}), "
          f"waiting {waits}; {r['bytes_read']} bytes read = {r['active_experts']} x "
          f"{r['bytes_per_expert']} (simulated in {r['wall_seconds']} s including any build)")


def _print_moe_half(r):
    ports = r.get("ports", 1)
    print(f"moe_half: {r['model']} block {r['block']} task {r['task']}, "
          f"{'one' if ports == 1 else ports} {r['data_width']}-bit AXI port{'s' * (ports > 1)}: "
          f"{r['cycles']} cycles (LN2, gate, queues, {r['active_experts']} active "
          f"experts; their matmuls alone {r['ideal_expert_cycles']} at 100%) (simulated in "
          f"{r['wall_seconds']} s including any build)")


def _print_attention(r):
    steps = r["sweep_steps"]
    words = (r["q_blocks"] + r["k_blocks"]) * r["head_dim"]
    print(f"attention: {r['model']} {r['tokens']} tokens, {r['heads']} x {r['head_dim']}, "
          f"P = {r['slots']} slots: {r['passes']} passes, {steps} steps per sweep; "
          f"Q K^T {r['qk_cycles']} cycles, A V {r['av_cycles']} cycles; reads Q {r['q_blocks']} "
          f"+ K {r['k_blocks']} blocks = {words / steps:.2f} words per step "
          f"({words / r['qk_cycles']:.2f} per cycle of Q K^T) (simulated in "
          f"{r['wall_seconds']} s including any build)")


def _print_attention_half(r):
    print(f"attention_half: {r['model']} block 0, {r['tokens']} tokens, {r['lanes']}x{r['lanes']} "
          f"array, P = {r['slots']}: {r['cycles']} cycles (LN1, K, Q, V, attention, proj, "
          f"residual; the four linear layers alone {r['linear_cycles_at_100%']} at 100%, one "
          f"attention sweep {r['attention_sweep_steps']}) (simulated in {r['wall_seconds']} s "
          f"including any build)")


_PRINTERS = {**{f"attention_p{p}": _print_attention for p in (1, 2, 4, 8)},
             "attention_half": _print_attention_half,
             "compute_unit": _print_compute_unit, "mlp_half": _print_mlp_half,
             "moe_half": _print_moe_half, "moe_half_256": _print_moe_half,
             "moe_half_2ports": _print_moe_half,
             "moe_experts": _print_moe_experts, "moe_experts_256": _print_moe_experts}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.measure",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("units", nargs="*", help=f"default: all ({', '.join(MEASUREMENTS)})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = [u for u in args.units if u not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown unit {unknown[0]!r}; choose from: {', '.join(MEASUREMENTS)}")
    reports = {}
    for name in args.units or list(MEASUREMENTS):
        if not args.json:
            print(f"{name}: building (cached) and simulating ...", file=sys.stderr, flush=True)
        reports[name] = measure(name)
        if not args.json:
            _PRINTERS[name](reports[name])
    if args.json:
        json.dump(reports, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
