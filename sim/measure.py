"""Measured cycle counts of hardware units, from cycle-accurate simulation.

    python -m sim.measure compute_unit [--json]

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


MEASUREMENTS = {"compute_unit": _compute_unit}


def measure(name):
    factory, config, bench = MEASUREMENTS[name]()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "measure.json")
        start = time.perf_counter()
        run(factory(), bench, config=config, extra_env={"EDGEMOE_MEASURE_OUT": out})
        with open(out) as f:
            report = json.load(f)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    return report


def _print(name, r):
    print(f"{name}: {r['array']} array, {r['weight_lanes']} weights per beat, "
          f"{r['tokens']} tokens (simulated in {r['wall_seconds']} s including any build)")
    for call in r["calls"]:
        cycles = call.get("cycles_after_previous_call", call.get("cycles_first_to_last_result"))
        how = ("after the previous call's last result" if "cycles_after_previous_call" in call
               else "first to last result")
        print(f"  {call['shape']:16s} {cycles:9.0f} cycles ({how}), ideal {call['ideal']}, "
              f"utilisation {call['ideal'] / cycles:6.1%}")
    print(f"  total from reset {r['total_cycles_from_reset']:.0f} cycles "
          f"(the first matrix's {r['weight_load_cycles_first_call']}-cycle load is not hidden)")


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
            _print(name, reports[name])
    if args.json:
        json.dump(reports, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
