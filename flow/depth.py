"""Logic depth of a mapped UltraScale+ netlist: the longest register-to-register paths.

Reads the JSON netlist that Yosys writes after ``synth_xilinx -family xcup`` (LUTs mapped by
``abc -lut 6``) and walks it bit by bit. A path starts at a flip-flop, a block RAM, the registered
output of a shift register or DSP, or an input port, and ends at the same kinds of cells or an
output port. Along it, :func:`analyse` counts

* **LUT levels**: ``$lut``/``LUTn`` cells, wide multiplexers (``MUXF7/8/9``) and LUT-RAM read
  ports, one level each;
* **carry bits**: 4 per ``CARRY4`` cell (Yosys maps UltraScale+ adders to CARRY4, not CARRY8);
* **DSP48E2 slices** crossed combinationally.

Yosys does not pack registers into a DSP48E2 (every slice it maps has AREG = BREG = MREG = PREG =
0), while Vivado does, when a register feeds only the slice's A or B port, or takes only its
product. This walk applies the same rule: a slice whose A and B come from such registers and
whose product goes only to registers is a **registered DSP** (``A/B, M`` absorbable); it breaks
the path like a register. A slice without that is crossed combinationally and counted.

Each cell output depends on every input of the cell (a conservative rule for carry cells).
"""

from dataclasses import dataclass, field

__all__ = ["Path", "Depth", "analyse", "stitch"]

_FLIP_FLOPS = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
_LUTS = {"$lut", "LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "MUXF7", "MUXF8",
         "MUXF9"}
_CARRIES = {"CARRY4": 4, "CARRY8": 8}
_BLOCK_RAMS = {"RAMB18E2", "RAMB36E2", "RAMB18E1", "RAMB36E1", "URAM288", "URAM288_BASE"}
#: LUT-RAMs and shift registers: synchronous writes, a combinational read from the address pins.
_LUT_RAMS = {"RAM32M", "RAM32M16", "RAM64M", "RAM64M8", "RAM32X1D", "RAM64X1D", "RAM128X1D",
             "RAM256X1D", "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM256X1S", "SRL16E", "SRLC32E"}
_DSPS = {"DSP48E2", "DSP48E1"}
#: Cells without timing meaning.
_IGNORED = {"$scopeinfo", "BUFG", "IBUF", "OBUF", "VCC", "GND"}


def _is_address(port):
    return (port.startswith("ADDR") or port.startswith("DPRA") or port == "A"
            or (port[0] == "A" and port[1:].isdigit()))


def _lut_ram_reads(connections):
    """The read outputs of a LUT-RAM or shift register and the address ports each reads from:
    ``DOx`` from ``ADDRx`` (RAM32M, RAM64M and their wider kin), ``SPO`` from the write
    address and ``DPO`` from ``DPRA`` (dual-port), ``O`` or ``Q`` from ``A`` (single-port,
    shift registers)."""
    ports = [p for p in connections if _is_address(p)]
    for out in connections:
        if out.startswith("DO"):
            yield out, [f"ADDR{out[2:]}"]
        elif out == "DPO":
            yield out, [p for p in ports if p.startswith("DPRA")]
        elif out in ("SPO", "O", "Q"):
            yield out, [p for p in ports if not p.startswith("DPRA")]


def _lut_ram_write_address(kind, connections):
    """The address ports a LUT-RAM writes at: the last port's (``ADDRD`` of a RAM32M, ``ADDRH``
    of a RAM32M16), or ``A`` of a single- or dual-port one; none for a shift register."""
    if kind in ("SRL16E", "SRLC32E"):
        return []
    ports = [p for p in connections if _is_address(p)]
    lettered = sorted(p for p in ports if p.startswith("ADDR"))
    return lettered[-1:] if lettered else [p for p in ports if not p.startswith("DPRA")]


@dataclass(frozen=True)
class Path:
    """One register-to-register path: where it starts and ends (named from the design), its LUT
    levels, carry bits and combinational DSP slices, the cell types along it, and the named
    nets it passes through (what to read when a path has to be cut)."""
    start: str
    end: str
    luts: int
    carry_bits: int
    dsps: int
    cells: tuple = ()
    through: tuple = ()

    def describe(self):
        parts = [f"{self.luts} LUT"]
        if self.carry_bits:
            parts.append(f"{self.carry_bits}-bit carry")
        if self.dsps:
            parts.append(f"{self.dsps} DSP48E2 unregistered")
        return f"{' + '.join(parts)}: {self.start} -> {self.end}"

    def as_dict(self):
        return {"start": self.start, "end": self.end, "luts": self.luts,
                "carry_bits": self.carry_bits, "dsps": self.dsps,
                "through": list(self.through)}


@dataclass
class Depth:
    """What :func:`analyse` finds: the deepest path in LUT levels (``deepest``), the path with
    the longest carry (``longest_carry``), the worst few paths by LUT levels to distinct
    endpoints (``worst``), the DSP48E2 slices by which registers they have or could absorb, and
    cell types the walk does not know (treated as combinational, zero levels)."""
    deepest: Path
    longest_carry: Path
    worst: list
    dsps: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)

    def within(self, luts, carry_bits):
        """Whether every path has at most ``luts`` LUT levels and ``carry_bits`` carry bits, and
        crosses no DSP48E2 without its registers."""
        return (self.deepest.luts <= luts and self.longest_carry.carry_bits <= carry_bits
                and all(p.dsps == 0 for p in (self.deepest, self.longest_carry, *self.worst))
                and self.dsps.get("unregistered", 0) == 0)

    def as_dict(self):
        return {"deepest": self.deepest.as_dict(), "longest_carry": self.longest_carry.as_dict(),
                "worst": [p.as_dict() for p in self.worst], "dsps": self.dsps,
                "unknown": self.unknown}

    @classmethod
    def from_dict(cls, d):
        def path(p):
            return Path(**{**p, "through": tuple(p.get("through", ()))})
        return cls(path(d["deepest"]), path(d["longest_carry"]),
                   [path(p) for p in d["worst"]], d["dsps"], d["unknown"])


def stitch(modules, top):
    """One flat module from ``top`` and the modules its cells instantiate (netlists of
    submodules synthesised on their own, see :func:`flow.timing.depth`): the cells and net
    names of each, with bits renumbered so that an instance's ports are the nets it connects.
    Returns ``(cells, netnames, ports)`` in Yosys JSON form."""
    counter = [0]
    cells, netnames = {}, {}

    def fresh():
        counter[0] += 1
        return ("s", counter[0])

    def add(name, prefix, binding):
        module = modules[name]
        mapping = dict(binding)

        def bit(b):
            if isinstance(b, str):
                return b
            if b not in mapping:
                mapping[b] = fresh()
            return mapping[b]
        for net, info in module.get("netnames", {}).items():
            netnames[prefix + net] = {**info, "bits": [bit(b) for b in info["bits"]]}
        for cname, cell in module.get("cells", {}).items():
            connections = {p: [bit(b) for b in bits] for p, bits in cell["connections"].items()}
            if cell["type"] in modules:
                sub = modules[cell["type"]]
                inner = {}
                for port, info in sub["ports"].items():
                    for b_in, b_out in zip(info["bits"], connections.get(port, [])):
                        if not isinstance(b_in, str):
                            inner[b_in] = b_out
                add(cell["type"], prefix + cname + ".", inner)
            else:
                cells[prefix + cname] = {**cell, "connections": connections}
        return mapping

    mapping = add(top, "", {})
    ports = {p: {**info, "bits": [b if isinstance(b, str) else mapping[b]
                                  for b in info["bits"]]}
             for p, info in modules[top]["ports"].items()}
    return cells, netnames, ports


def _flag(value):
    return int(value, 2) if isinstance(value, str) else int(value)


def analyse(modules, top, *, worst=5):
    """The depth of ``top`` in ``modules`` (Yosys JSON ``modules``; cells whose type is another
    module there are stitched in). See :class:`Depth`."""
    cells, netnames, ports = stitch(modules, top)

    # A readable name for each bit: the shortest public net name, with the bit index.
    names = {}
    for net, info in sorted(netnames.items(), key=lambda kv: (kv[1].get("hide_name", 0),
                                                              kv[0].count("$"), len(kv[0]))):
        for i, b in enumerate(info["bits"]):
            if not isinstance(b, str) and b not in names:
                names[b] = net if len(info["bits"]) == 1 else f"{net}[{i}]"

    drivers, loads = {}, {}
    for cname, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for b in bits:
                if isinstance(b, str):
                    continue
                if dirs.get(port) == "output":
                    drivers[b] = (cname, port)
                else:
                    loads.setdefault(b, []).append((cname, port))

    # DSP48E2 slices: which registers they have, or could absorb as Vivado would.
    dsp_kinds = {"registered": 0, "absorbable": 0, "unregistered": 0}
    dsp_registered = set()
    for cname, cell in cells.items():
        if cell["type"] not in _DSPS:
            continue
        p = cell["parameters"]
        if _flag(p.get("PREG", 0)) or (_flag(p.get("AREG", 0)) and _flag(p.get("BREG", 0))
                                       and _flag(p.get("MREG", 0))):
            dsp_kinds["registered"] += 1
            dsp_registered.add(cname)
            continue
        inputs_ok = all(
            isinstance(b, str) or (drivers.get(b, ("", ""))[1] == "Q"
                                   and cells[drivers[b][0]]["type"] in _FLIP_FLOPS
                                   and all(load == (cname, port) or load[0] == cname
                                           for load in loads.get(b, [])))
            for port in ("A", "B") for b in cell["connections"].get(port, []))
        outputs_ok = all(
            cells[load[0]]["type"] in _FLIP_FLOPS and load[1] == "D"
            for b in cell["connections"].get("P", []) if not isinstance(b, str)
            for load in loads.get(b, []))
        if inputs_ok and outputs_ok:
            dsp_kinds["absorbable"] += 1
            dsp_registered.add(cname)
        else:
            dsp_kinds["unregistered"] += 1

    # The graph: bit nodes, and one node per combinational cell (inputs -> cell -> outputs).
    # Each node's weight is (LUT levels, carry bits, DSP slices) added when a path enters it.
    weight, succ, pred_count = {}, {}, {}
    starts, ends = set(), {}
    unknown = {}

    def edge(a, b):
        succ.setdefault(a, []).append(b)
        pred_count[b] = pred_count.get(b, 0) + 1

    for cname, cell in cells.items():
        kind = cell["type"]
        dirs = cell.get("port_directions", {})
        conns = cell["connections"]
        outs = [b for p, bits in conns.items() if dirs.get(p) == "output" for b in bits
                if not isinstance(b, str)]
        ins = {p: [b for b in bits if not isinstance(b, str)]
               for p, bits in conns.items() if dirs.get(p) != "output"}
        if kind in _IGNORED:
            continue
        sequential = (kind in _FLIP_FLOPS or kind in _BLOCK_RAMS
                      or cname in dsp_registered)
        if sequential:
            starts.update(outs)
            # A path ends at the register it loads, named by what the register drives (a DSP
            # by the product register it feeds).
            out_name = names.get(outs[0]) if outs else None
            if kind in _DSPS:
                out_name = next((names.get(cells[c]["connections"]["Q"][0])
                                 for b in outs for c, port in loads.get(b, ())
                                 if cells[c]["type"] in _FLIP_FLOPS), out_name)
            for p, bits in ins.items():
                label = (out_name if kind in _FLIP_FLOPS else
                         f"{out_name or cname} ({kind}.{p})")
                for b in bits:
                    ends.setdefault(b, label)
            continue
        node = ("c", cname)
        if kind in _LUTS:
            weight[node] = (1, 0, 0)
            sources = [b for bits in ins.values() for b in bits]
        elif kind in _CARRIES:
            weight[node] = (0, _CARRIES[kind], 0)
            sources = [b for bits in ins.values() for b in bits]
        elif kind in _LUT_RAMS:
            # Writes are synchronous: data, enable and write address end paths. Each read
            # output is its own node, reached from its own port's address only (a RAM32M16's
            # write address, ADDRH, reaches only DOH, which Yosys leaves unused). An SRL's last
            # tap is a plain register output.
            written = _lut_ram_write_address(kind, conns)
            for p, bits in ins.items():
                if not _is_address(p) or p in written:
                    for b in bits:
                        ends.setdefault(b, f"{cname}.{p}")
            if kind in ("SRL16E", "SRLC32E"):
                starts.update(b for b in conns.get("Q31", []) if not isinstance(b, str))
            for out_port, address in _lut_ram_reads(conns):
                read = ("c", cname, out_port)
                weight[read] = (1, 0, 0)
                for b in set(b for p in address for b in ins.get(p, ())):
                    edge(b, read)
                for b in conns[out_port]:
                    if not isinstance(b, str):
                        edge(read, b)
            continue
        elif kind in _DSPS:
            weight[node] = (0, 0, 1)
            sources = [b for bits in ins.values() for b in bits]
        else:
            unknown[kind] = unknown.get(kind, 0) + 1
            weight[node] = (0, 0, 0)
            sources = [b for bits in ins.values() for b in bits]
        for b in set(sources):
            edge(b, node)
        for b in outs:
            edge(node, b)

    for port, info in ports.items():
        bits = [b for b in info["bits"] if not isinstance(b, str)]
        if info["direction"] == "input":
            starts.update(bits)
        else:
            for i, b in enumerate(bits):
                ends.setdefault(b, port if len(bits) == 1 else f"{port}[{i}]")

    # Longest paths by two orders at once: (LUT levels, carry) and (carry, LUT levels).
    nodes = set(weight) | set(succ) | set(pred_count) | set(ends) | starts
    zero = (0, 0, 0)
    # A node's arrival before its own weight; None until a path reaches it.
    by_luts = {n: (zero if n in starts else None) for n in nodes}
    by_carry = dict(by_luts)
    from_luts, from_carry = {}, {}
    ready = [n for n in nodes if pred_count.get(n, 0) == 0]
    remaining = dict(pred_count)
    while ready:
        n = ready.pop()
        w = weight.get(n, zero)
        if by_luts[n] is not None:
            by_luts[n] = tuple(a + b for a, b in zip(by_luts[n], w))
            by_carry[n] = tuple(a + b for a, b in zip(by_carry[n], w))
        here_l, here_c = by_luts[n], by_carry[n]
        for s in succ.get(n, ()):
            remaining[s] -= 1
            if remaining[s] == 0:
                ready.append(s)
            if here_l is None or s in starts:
                continue
            if by_luts[s] is None or (here_l[0], here_l[1]) > (by_luts[s][0], by_luts[s][1]):
                by_luts[s] = here_l
                from_luts[s] = n
            if by_carry[s] is None or (here_c[1], here_c[0]) > (by_carry[s][1], by_carry[s][0]):
                by_carry[s] = here_c
                from_carry[s] = n
    stuck = [names.get(n, str(n)) for n, v in remaining.items() if v > 0 and n in names]
    if stuck:
        raise ValueError(f"combinational loop in {top} through {', '.join(sorted(stuck)[:3])}")

    def path(end, arrival, back):
        chain, through, n = [], [], end
        while n in back:
            n = back[n]
            if n in weight:
                chain.append(cells[n[1]]["type"])
            elif n in back and not names.get(n, "$").split(".")[-1].startswith("$"):
                through.append(names[n])
        start = names.get(n, str(n))
        luts, carry, dsps = arrival[end]
        return Path(start, ends[end], luts, carry, dsps, tuple(reversed(chain)),
                    tuple(reversed(through)))

    endpoints = sorted((b for b in ends if by_luts[b] is not None), key=lambda b: by_luts[b],
                       reverse=True)
    if not endpoints:
        empty = Path("-", "-", 0, 0, 0)
        return Depth(empty, empty, [], dsp_kinds, unknown)
    worst_paths, seen = [], set()
    for b in endpoints:
        p = path(b, by_luts, from_luts)
        key = (p.start.split("[")[0], p.end.split("[")[0])
        if key in seen:
            continue
        seen.add(key)
        worst_paths.append(p)
        if len(worst_paths) == worst:
            break
    carry_end = max(endpoints, key=lambda b: (by_carry[b][1], by_carry[b][0]))
    return Depth(worst_paths[0], path(carry_end, by_carry, from_carry), worst_paths, dsp_kinds,
                 unknown)
