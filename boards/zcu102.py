"""The Xilinx ZCU102 (XCZU9EG-2FFVB1156E) for Amaranth's Vivado flow, with the Zynq UltraScale+ PS.

amaranth-boards has no ZCU102, so it is defined here. The programmable logic takes its clock, its
reset, its DRAM and its host from the processing system (PS), which is configured in a Vivado
block design; :func:`ps_block_design_tcl` writes the Tcl that creates it and the platform sources
it through the ``script_after_read`` override, before ``synth_design``. :class:`ZynqShell` is the
PL top level: it instantiates the block design's wrapper and places the accelerator under it:

- ``pl_clk0`` (``clock_mhz``, default 300 MHz) clocks the ``sync`` domain; ``pl_resetn0``, through
  a reset synchroniser, resets it;
- each entry of ``hp_masters`` is an AXI4 master member of the top (signals named as in
  :mod:`hw.movers.axi`), or a tuple of members that share one port (read-only and write-only
  masters; several read masters take the port in turn through
  :class:`hw.movers.axi_read_share.AxiReadShare`), connected to the next high-performance
  port, ``S_AXI_HP0_FPD`` to ``HP3``, then ``S_AXI_HPC0_FPD`` and ``HPC1`` (128-bit, 49-bit
  addresses, at most six); channels no member drives are tied off;
- ``register_port``, if named, is an AXI4-Lite slave member of the top (the register block),
  driven by ``M_AXI_HPM0_FPD`` (32-bit data) through Vivado's AXI protocol converter, so the
  host can start the accelerator; Vivado's address assignment puts it at the start of the HPM0
  window, ``0xA000_0000``;
- the top's ``irq`` member, if it has one, drives ``pl_ps_irq0[0]``;
- every other port goes through :class:`boards.exerciser.Exerciser`, whose folded output lights
  LED 0, so that Vivado keeps what drives it.

The PS settings (DDR4, MIO, reference clocks) come from the ZCU102 board files' preset, which
Vivado ships (``xilinx.com:zcu102:part0:*``); the Tcl stops with a message when they are missing
rather than guess DDR timings. None of this Tcl has run in Vivado on this project's machines yet.
"""

import os

from amaranth import (C, Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal,
                      Value)
from amaranth.build import Attrs
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import LEDResources

from hw.movers.axi_read_share import AxiReadShare

from .board import Board
from .exerciser import Exerciser

__all__ = ["ZCU102Board", "ZCU102Platform", "ZynqShell", "ps_block_design_tcl", "hp_port_name", "HP_PORTS",
           "XCZU9EG"]

#: High-performance slave ports of the PS, in the order ``hp_masters`` takes them:
#: (interface pin, PSU enable parameter index, clock pin). HP0-3, then the two HPC ports (the
#: same 128-bit AXI4 slaves, able to be cache-coherent, which is not asked for here).
HP_PORTS = ([(f"S_AXI_HP{i}_FPD", 2 + i, f"saxihp{i}_fpd_aclk") for i in range(4)]
            + [(f"S_AXI_HPC{i}_FPD", i, f"saxihpc{i}_fpd_aclk") for i in range(2)])

#: Capacity of the XCZU9EG (DS891), against which estimates are reported.
XCZU9EG = {"DSP48E2": 2520, "RAMB36": 912, "RAMB18": 1824, "LUT": 274080, "FF": 548160}

#: Widths of the AXI4 ports on the PS side: (id, address, data).
HP_WIDTHS = (6, 49, 128)
HPM0_WIDTHS = (16, 40, 32)


def _axi4_signals(id_width, addr_width, data_width):
    """AXI4 signals and widths, split by who drives them: ``(master_out, master_in)``."""
    out = {"awid": id_width, "awaddr": addr_width, "awlen": 8, "awsize": 3, "awburst": 2,
           "awlock": 1, "awcache": 4, "awprot": 3, "awqos": 4, "awvalid": 1,
           "wdata": data_width, "wstrb": data_width // 8, "wlast": 1, "wvalid": 1, "bready": 1,
           "arid": id_width, "araddr": addr_width, "arlen": 8, "arsize": 3, "arburst": 2,
           "arlock": 1, "arcache": 4, "arprot": 3, "arqos": 4, "arvalid": 1, "rready": 1}
    into = {"awready": 1, "wready": 1, "bid": id_width, "bresp": 2, "bvalid": 1,
            "arready": 1, "rid": id_width, "rdata": data_width, "rresp": 2, "rlast": 1,
            "rvalid": 1}
    return out, into


def _axi4_lite_signals(addr_width, data_width):
    """AXI4-Lite signals and widths, split by who drives them: ``(master_out, master_in)``."""
    out = {"awaddr": addr_width, "awprot": 3, "awvalid": 1, "wdata": data_width,
           "wstrb": data_width // 8, "wvalid": 1, "bready": 1,
           "araddr": addr_width, "arprot": 3, "arvalid": 1, "rready": 1}
    into = {"awready": 1, "wready": 1, "bresp": 2, "bvalid": 1, "arready": 1,
            "rdata": data_width, "rresp": 2, "rvalid": 1}
    return out, into


def hp_port_name(entry):
    """The block design's name for an ``hp_masters`` entry: the member's name, or the names of
    the members sharing the port joined by ``_``."""
    return entry if isinstance(entry, str) else "_".join(entry)


def ps_block_design_tcl(*, clock_mhz=300.0, hp_masters=(), register_port=None, bd_name="zynq_ps",
                        board_part="xilinx.com:zcu102:part0:*"):
    """Vivado Tcl that creates the PS block design ``bd_name`` and adds its wrapper to the project.

    The wrapper's ports: ``pl_clk0``, ``pl_resetn0``, ``pl_ps_irq0[0:0]``, the AXI4 signals
    ``<name>_<signal>`` of each HP master (named by :func:`hp_port_name`) and the AXI4-Lite
    signals of the register port.
    """
    hp_masters = [hp_port_name(entry) for entry in hp_masters]
    if len(hp_masters) > len(HP_PORTS):
        raise ValueError(f"the ZCU102 PS has {len(HP_PORTS)} HP and HPC ports, not "
                         f"{len(hp_masters)}")
    mhz = f"{clock_mhz:g}"
    props = [("PSU__FPGA_PL0_ENABLE", 1), ("PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ", mhz),
             ("PSU__USE__IRQ0", 1),
             ("PSU__USE__M_AXI_GP0", int(register_port is not None)),
             ("PSU__USE__M_AXI_GP1", 0), ("PSU__USE__M_AXI_GP2", 0)]
    if register_port is not None:
        props.append(("PSU__MAXIGP0__DATA_WIDTH", HPM0_WIDTHS[2]))
    for i, (_, gp, _) in enumerate(HP_PORTS):
        props.append((f"PSU__USE__S_AXI_GP{gp}", int(i < len(hp_masters))))
        if i < len(hp_masters):
            props.append((f"PSU__SAXIGP{gp}__DATA_WIDTH", HP_WIDTHS[2]))
    lines = [
        f"# Zynq UltraScale+ PS block design {bd_name!r} for the ZCU102, written by boards/zcu102.py.",
        f"# PL clock {mhz} MHz; HP masters: {', '.join(hp_masters) or 'none'}; "
        f"register port: {register_port or 'none'}; interrupt pl_ps_irq0.",
        f"set board_parts [get_board_parts -quiet -latest_file_version {{{board_part}}}]",
        "if {[llength $board_parts] == 0} {",
        f"    error \"ZCU102 board files ({board_part}) not found: install them (Vivado: Tools >"
        " Vivado Store > Boards) so that the PS gets the board's DDR4 and MIO preset\"",
        "}",
        "set_property board_part [lindex $board_parts end] [current_project]",
        f"create_bd_design {bd_name}",
        "set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e ps]",
        "apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e "
        "-config {apply_board_preset \"1\"} $ps",
        "set_property -dict [list \\",
        *[f"    CONFIG.{k} {{{v}}} \\" for k, v in props],
        "] $ps",
        "puts \"pl_clk0: requested " + mhz + " MHz, actual "
        "[get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ $ps] MHz\"",
        "set freq_hz [get_property CONFIG.FREQ_HZ [get_bd_pins ps/pl_clk0]]",
        "create_bd_port -dir O -type clk pl_clk0",
        "connect_bd_net [get_bd_pins ps/pl_clk0] [get_bd_ports pl_clk0]",
        "create_bd_port -dir O -type rst pl_resetn0",
        "connect_bd_net [get_bd_pins ps/pl_resetn0] [get_bd_ports pl_resetn0]",
        "create_bd_port -dir I -from 0 -to 0 -type intr pl_ps_irq0",
        "connect_bd_net [get_bd_ports pl_ps_irq0] [get_bd_pins ps/pl_ps_irq0]",
    ]
    busifs = []
    for i, name in enumerate(hp_masters):
        pin, _, clock_pin = HP_PORTS[i]
        busifs.append(name)
        lines += [
            f"create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:aximm_rtl:1.0 {name}",
            f"set_property -dict [list CONFIG.PROTOCOL {{AXI4}} CONFIG.ADDR_WIDTH {{{HP_WIDTHS[1]}}} "
            f"CONFIG.DATA_WIDTH {{{HP_WIDTHS[2]}}} CONFIG.ID_WIDTH {{{HP_WIDTHS[0]}}} "
            f"CONFIG.HAS_REGION {{0}} CONFIG.ARUSER_WIDTH {{0}} CONFIG.AWUSER_WIDTH {{0}} "
            f"CONFIG.FREQ_HZ $freq_hz] [get_bd_intf_ports {name}]",
            f"connect_bd_intf_net [get_bd_intf_ports {name}] [get_bd_intf_pins ps/{pin}]",
            f"connect_bd_net [get_bd_pins ps/pl_clk0] [get_bd_pins ps/{clock_pin}]",
        ]
    if register_port is not None:
        # HPM0 speaks AXI4 (bursts, IDs); the register block speaks AXI4-Lite.
        name = register_port
        busifs.append(name)
        lines += [
            f"set lite [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_protocol_converter "
            f"{name}_to_lite]",
            "set_property -dict [list CONFIG.SI_PROTOCOL {AXI4} CONFIG.MI_PROTOCOL {AXI4LITE} "
            f"CONFIG.DATA_WIDTH {{{HPM0_WIDTHS[2]}}}] $lite",
            f"connect_bd_intf_net [get_bd_intf_pins ps/M_AXI_HPM0_FPD] "
            f"[get_bd_intf_pins {name}_to_lite/S_AXI]",
            f"create_bd_intf_port -mode Master -vlnv xilinx.com:interface:aximm_rtl:1.0 {name}",
            f"set_property -dict [list CONFIG.PROTOCOL {{AXI4LITE}} "
            f"CONFIG.ADDR_WIDTH {{{HPM0_WIDTHS[1]}}} CONFIG.DATA_WIDTH {{{HPM0_WIDTHS[2]}}} "
            f"CONFIG.FREQ_HZ $freq_hz] [get_bd_intf_ports {name}]",
            f"connect_bd_intf_net [get_bd_intf_pins {name}_to_lite/M_AXI] "
            f"[get_bd_intf_ports {name}]",
            f"connect_bd_net [get_bd_pins ps/pl_clk0] [get_bd_pins ps/maxihpm0_fpd_aclk] "
            f"[get_bd_pins {name}_to_lite/aclk]",
            f"connect_bd_net [get_bd_pins ps/pl_resetn0] [get_bd_pins {name}_to_lite/aresetn]",
        ]
    lines += [
        "set_property CONFIG.FREQ_HZ $freq_hz [get_bd_ports pl_clk0]",
        f"set_property CONFIG.ASSOCIATED_BUSIF {{{':'.join(busifs)}}} [get_bd_ports pl_clk0]"
        if busifs else "# no AXI ports yet: the accelerator top has none (see boards/zcu102.py)",
        "assign_bd_address",
        "validate_bd_design",
        "save_bd_design",
        f"set bd_file [get_files {bd_name}.bd]",
        "# Global synthesis: synth_design below synthesises the PS wrapper with the top.",
        "set_property synth_checkpoint_mode None $bd_file",
        "generate_target all $bd_file",
        "add_files -norecurse [make_wrapper -files $bd_file -top]",
        "",
    ]
    return "\n".join(lines)


class ZCU102Platform(XilinxPlatform):
    """The ZCU102 for Vivado, its PL clocked by the PS.

    Parameters
    ----------
    clock_mhz : float
        Frequency of ``pl_clk0``, the accelerator clock (default 300, as Edge-MoE).
    hp_masters : sequence of str or tuple of str
        Members of the top that are AXI4 masters, one HP port each; a tuple names members that
        share a port (a read-only and a write-only master).
    register_port : str or None
        Member of the top that is an AXI4-Lite slave, for HPM0.
    """

    device = "xczu9eg"
    package = "ffvb1156"
    speed = "2-e"
    default_clk = None
    resources = [
        *LEDResources(pins="AG14 AF13 AE13 AJ14 AJ15 AH13 AH14 AL12",
                      attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []

    #: Name of the block design (its wrapper is ``<bd_name>_wrapper``).
    bd_name = "zynq_ps"

    def __init__(self, *, clock_mhz=300.0, hp_masters=(), register_port=None):
        if not (isinstance(clock_mhz, (int, float)) and 10 <= clock_mhz <= 500):
            raise ValueError(f"ZCU102 pl_clk0 must be between 10 and 500 MHz, not {clock_mhz!r}")
        if len(hp_masters) > len(HP_PORTS):
            raise ValueError(f"the ZCU102 PS has {len(HP_PORTS)} HP and HPC ports; "
                             f"{len(hp_masters)} masters given")
        super().__init__(toolchain="Vivado")
        self.clock_mhz = clock_mhz
        self.hp_masters = tuple(hp_masters)
        self.register_port = register_port

    @property
    def ps_tcl_name(self):
        return f"{self.bd_name}.tcl"

    @property
    def file_templates(self):
        # The RTLIL next to the Verilog, for Yosys-based tools.
        return {**super().file_templates, "{{name}}.il": "{{emit_rtlil()}}"}

    def toolchain_prepare(self, fragment, name, **kwargs):
        self.add_file(self.ps_tcl_name, ps_block_design_tcl(
            clock_mhz=self.clock_mhz, hp_masters=self.hp_masters,
            register_port=self.register_port, bd_name=self.bd_name))
        after_read = f"source {self.ps_tcl_name}"
        if "script_after_read" in kwargs:
            after_read += "\n" + kwargs["script_after_read"]
        kwargs["script_after_read"] = after_read
        return super().toolchain_prepare(fragment, name, **kwargs)


class ZynqShell(Elaboratable):
    """PL top level on a :class:`ZCU102Platform`: the PS block design with ``top`` under it.

    Parameters
    ----------
    top : wiring.Component
        The accelerator (or, until it exists, the largest unit); see the module docstring for
        which of its ports go where.

    Attributes
    ----------
    exerciser : Exerciser or None
        The placeholder driving the ports that are neither AXI nor ``irq``.
    """

    def __init__(self, top):
        self.top = top
        self.exerciser = None

    def elaborate(self, platform):
        top = self.top
        members = top.signature.members
        hp_masters = getattr(platform, "hp_masters", ())
        register_port = getattr(platform, "register_port", None)
        axi = [name for entry in hp_masters for name in
               ((entry,) if isinstance(entry, str) else entry)]
        axi += [register_port] if register_port else []
        for name in axi:
            if name not in members:
                raise ValueError(f"ZynqShell: the top has no AXI port {name!r}; its ports are "
                                 f"{', '.join(members)}")
        m = Module()
        m.submodules.top = top

        clk, resetn = Signal(), Signal()
        irq = Signal()
        ports = {"o_pl_clk0": clk, "o_pl_resetn0": resetn, "i_pl_ps_irq0": irq}
        for entry in hp_masters:
            name = hp_port_name(entry)
            interfaces = [(members[member].signature, getattr(top, member))
                          for member in ((entry,) if isinstance(entry, str) else entry)]
            reads = [(sig, iface) for sig, iface in interfaces if "arvalid" in sig.members]
            if len(reads) > 1:            # read masters in turn on one port (AxiReadShare)
                widths = {key: len(getattr(reads[0][1], f"ar{key}")) for key in ("addr", "id")}
                share = AxiReadShare(masters=len(reads), addr_width=widths["addr"],
                                     data_width=len(reads[0][1].rdata), id_width=widths["id"])
                m.submodules[f"{name}_share"] = share
                for (_, iface), port in zip(reads, share.masters):
                    wiring.connect(m, iface, port)
                interfaces = [(share.signature.members["bus"].signature, share.bus)] + [
                    (sig, iface) for sig, iface in interfaces if "arvalid" not in sig.members]
            bound, comb = self._axi_ports(name, interfaces, _axi4_signals(*HP_WIDTHS),
                                          master=True)
            ports.update(bound)
            m.d.comb += comb
        if register_port:
            bound, comb = self._axi_ports(
                register_port, [(members[register_port].signature, getattr(top, register_port))],
                _axi4_lite_signals(*HPM0_WIDTHS[1:]), master=False)
            ports.update(bound)
            m.d.comb += comb
        bd_name = getattr(platform, "bd_name", "zynq_ps")
        m.submodules.ps = Instance(f"{bd_name}_wrapper", **ports)

        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(~resetn, domain="sync")

        if "irq" in members and "irq" not in axi:
            m.d.comb += irq.eq(top.irq)
        rest = [n for n in members if n not in axi and n != "irq"]
        if rest:
            self.exerciser = Exerciser(top, rest)
            m.submodules.exerciser = self.exerciser
            if platform is not None:
                m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
                m.d.comb += led.o.eq(self.exerciser.fold)
        return m

    @staticmethod
    def _axi_ports(name, interfaces, signals, *, master):
        """Instance ports binding AXI ``interfaces`` (``(signature, interface)`` pairs: one, or
        a read-only and a write-only master) to the wrapper's ``<name>_*``. ``signals`` is
        ``(master_out, master_in)``. Signals the interfaces lack (e.g. the write channel of a
        read-only master) are tied to zero; narrower ones (IDs) are zero-extended. Returns the
        ports and the assignments to add."""
        out, into = signals
        drives, receives = (out, into) if master else (into, out)
        present = {}
        for signature, iface in interfaces:
            present.update({path[-1]: Value.cast(value) for path, _, value in
                            signature.flatten(iface)})
        ports, comb = {}, []
        for sig, width in drives.items():
            value = present.get(sig, C(0, width))
            if len(value) < width:                  # e.g. a 1-bit ID into the PS's 6 bits
                value = Cat(value, C(0, width - len(value)))
            ports[f"i_{name}_{sig}"] = value
        for sig, width in receives.items():
            if sig in present:
                wide = Signal(max(width, len(present[sig])), name=f"{name}_{sig}")
                ports[f"o_{name}_{sig}"] = wide[:width]
                comb.append(present[sig].eq(wide))
        return ports, comb


class ZCU102Board(Board):
    name = "zcu102"
    description = ("Xilinx ZCU102 (XCZU9EG-2FFVB1156E), Vivado with the Zynq UltraScale+ PS "
                   "block design; Yosys estimate against the XCZU9EG")
    tool = "vivado"
    machine = "zcu102"
    logs = ("{name}.log",)
    capacity = XCZU9EG

    def platform(self, args, top):
        return ZCU102Platform(clock_mhz=args.clock_mhz or args.machine.clock_mhz,
                              hp_masters=top.masters(args.machine),
                              register_port=top.register_port)

    def shell(self, top):
        return ZynqShell(top)

    def results(self, out, name):
        reports = [f for f in (f"{name}_utilization_place.rpt", f"{name}_timing.rpt",
                               f"{name}.bit") if os.path.exists(os.path.join(out, f))]
        return {"reports": reports}

    def how_to_run(self, out, name):
        return (f"vivado is not on PATH, so the bitstream was not built. The Vivado plan is "
                f"complete; on a machine with Vivado (and its ZCU102 board files) run:\n"
                f"    cd {out} && sh build_{name}.sh\n"
                f"or copy {os.path.join(out, 'plan.zip')} there, unzip it and run "
                f"`sh build_{name}.sh`. To source Vivado's settings first, set "
                f"AMARANTH_ENV_VIVADO=/path/to/Vivado/<version>/settings64.sh.")
