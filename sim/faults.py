"""Fault campaign: the whole accelerator in cycle-accurate simulation, driven through bus faults
and host mistakes, each followed by a good inference that must be bit-exact.

    python -m sim.faults [--config micro] [--machine zcu102] [--scenarios 26] [--seed 1] [--json]

The kinds of scenario (:data:`sim.benches.faults.KINDS`, taken in turn): SLVERR and DECERR on a
random read port at a random address of its buffer, and on the output writes; random stalls on
random channels; a read or write channel that stops answering (ended by the watchdog; after
BUS_HUNG the bench resets the PL); SOFT_RESET at a random cycle and during the output write;
START while busy; a bad buffer address (zero, unaligned, beyond the address width, past the end);
a task out of range; a watchdog shorter than the run. Every bus transfer is checked against the
VALID/READY rule and the DMA windows. The report counts scenarios, hangs, stray accesses, wrong
outputs and handshake breaches, and the outcomes seen (error codes, DONE); the command exits
non-zero on any hang, stray access, wrong output or breach.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

from model.machine import ZCU102
from sim.bench import add_model_arguments, check_model_arguments

__all__ = ["campaign", "main"]

FAILURES = ("hangs", "stray_accesses", "wrong_outputs", "handshake_breaches")


def campaign(config_name="micro", scenarios=26, seed=1, machine_name=ZCU102.name, progress=None):
    """Run the campaign; returns its report (a dict). ``progress(done, scenarios)`` is called as
    scenarios finish."""
    from sim.benches.accelerator import make_design
    from sim.runner import CocotbTestFailure, _tail, run
    config = dict(model=config_name, machine=machine_name, scenarios=scenarios, seed=seed,
                  max_cycles=400_000)
    with tempfile.TemporaryDirectory() as tmp:
        out, marks = os.path.join(tmp, "faults.json"), os.path.join(tmp, "progress")
        log = os.path.join(tmp, "simulation.log")
        done = threading.Event()

        def poll():
            while not done.wait(2.0):
                if progress and os.path.exists(marks):
                    try:
                        progress(int(open(marks).read() or 0), scenarios)
                    except ValueError:
                        continue
        threading.Thread(target=poll, daemon=True).start()
        try:
            run(make_design(config), "sim.benches.faults", testcase="test_fault_campaign",
                config=config, extra_env={"EDGEMOE_MEASURE_OUT": out, "EDGEMOE_PROGRESS": marks},
                log_file=log)
        except CocotbTestFailure:
            if not os.path.exists(out):         # it failed before writing its report
                sys.stderr.write(f"\nthe simulation's last lines:\n{_tail(Path(log))}\n")
                raise
        finally:
            done.set()
        with open(out) as f:
            report = json.load(f)
    report.update(config=config_name, machine=machine_name, seed=seed)
    return report


def _bar(done, total, width=30):
    filled = int(width * done / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} scenarios")
    sys.stderr.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.faults",
                                     description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, config="micro")
    parser.add_argument("--scenarios", type=int, default=26,
                        help="scenarios to run (default 26: every kind twice)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    if args.scenarios < 1:
        parser.error(f"--scenarios must be at least 1, not {args.scenarios}")
    show = not args.json and sys.stderr.isatty()
    if not args.json:
        print(f"{args.config} on {args.machine}: building the machine (cached) and running "
              f"{args.scenarios} fault scenarios (seed {args.seed}) ...", file=sys.stderr,
              flush=True)
    r = campaign(args.config, args.scenarios, args.seed, args.machine,
                 progress=_bar if show else None)
    if show:
        print(file=sys.stderr)
    if args.json:
        json.dump(r, sys.stdout, indent=1)
        print()
    else:
        print(f"{r['scenarios']} scenarios on {r['config']} ({r['machine']}, seed {r['seed']}):")
        for key in FAILURES:
            print(f"  {key.replace('_', ' ')}: {r[key]}")
        print(f"  PL resets after BUS_HUNG: {r['pl_resets_after_bus_hung']}")
        print("  scenarios per kind: " + ", ".join(f"{k} {v}" for k, v in r["kinds"].items()))
        print("  outcomes of the faulty runs: " + ", ".join(
            f"{k} {v}" for k, v in sorted(r["outcomes"].items())))
        for key in FAILURES:
            for example in r["examples"][key]:
                print(f"  {key.replace('_', ' ')}: {example}")
    return 1 if any(r[key] for key in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
