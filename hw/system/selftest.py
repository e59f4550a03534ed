"""The self-test of a board without a host: one inference from on-chip memory, checked.

:class:`SelfTest` (twin :mod:`model.system.selftest`) puts the whole
:class:`hw.system.accelerator.Accelerator` over on-chip memory and drives it as a host would:

- an :class:`hw.movers.axi_rom.AxiRom` holds the weights image and the image buffer
  (:func:`model.system.selftest.memory`: synthetic weights and image from a seed) and serves the
  four read masters;
- the output master writes into a sink that keeps no data but a checksum of every word written
  (:func:`model.system.selftest.checksum`) and the number of beats;
- a small AXI4-Lite master programs the register block (addresses, TASK, WATCHDOG, IRQ_ENABLE,
  START), waits for the interrupt, reads STATUS and CYCLES_TOTAL_LO;
- the run passes when STATUS says DONE without ERROR and the checksum and beat count are the
  golden output's. ``passed`` or ``failed`` rises, and a :class:`hw.system.uart.UartTx` sends
  :func:`model.system.selftest.message` (the verdict and the cycle count), again every ``repeat``
  cycles so a terminal opened later still sees it.

The watchdog (register WATCHDOG) ends a run that would not finish with an error, so the
self-test always reaches a verdict.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from model.machine import ULX3S_SELFTEST
from model.system.registers import BY_NAME
from model.system.selftest import MESSAGE_FAIL, MESSAGE_PASS, WEIGHTS_ADDR, memory

from hw.system.accelerator import Accelerator
from hw.movers.axi_rom import AxiRom
from hw.system.uart import UartTx

__all__ = ["SelfTest"]


def _field(register, field, value=1):
    return BY_NAME[register].field(field).put(value)


class SelfTest(wiring.Component):
    """One checked inference of ``config`` after reset.

    Latency: the inference's cycles plus about 40 for the register accesses, then the UART line
    (``len(message) * 10 * divisor`` cycles). It runs once per reset.

    Parameters
    ----------
    config : ModelConfig
        Small enough that its weights fit on chip (e.g. micro).
    machine : MachineConfig
        The accelerator's shape (:class:`hw.system.accelerator.Accelerator`).
    seed, task : int
        The synthetic weights and image, and the task to run.
    divisor : int
        UART cycles per bit (217 at 25 MHz: 115,200 baud).
    repeat : int
        Cycles between repetitions of the line; 0 sends it once.
    watchdog : int
        The run's cycle budget (register WATCHDOG).

    Members
    -------
    passed, failed : ``Out(1)``
        The verdict; both low while the inference runs.
    running : ``Out(1)``
    tx : ``Out(1)``
        UART, 8N1, idle high.
    cycles : ``Out(32)``
        CYCLES_TOTAL_LO of the run, once it is over.
    """

    def __init__(self, config, machine=ULX3S_SELFTEST, *, seed=0, task=0, divisor=217,
                 repeat=25_000_000, watchdog=1 << 24):
        self.memory = memory(config, machine, seed=seed, task=task)
        self.accelerator = Accelerator(config, machine)
        self._data_width, self._divisor, self._repeat = machine.data_width, divisor, repeat
        self._watchdog = watchdog
        super().__init__({"passed": Out(1), "failed": Out(1), "running": Out(1), "tx": Out(1),
                          "cycles": Out(32)})

    def _program(self):
        """The register writes of one run, in order: ``(offset, value)``."""
        mem = self.memory
        return [(BY_NAME["WEIGHTS_ADDR_LO"].offset, mem.weights_addr),
                (BY_NAME["IMAGE_ADDR_LO"].offset, mem.image_addr),
                (BY_NAME["OUTPUT_ADDR_LO"].offset, mem.output_addr),
                (BY_NAME["TASK"].offset, mem.task),
                (BY_NAME["WATCHDOG"].offset, self._watchdog),
                (BY_NAME["IRQ_ENABLE"].offset,
                 _field("IRQ_ENABLE", "DONE") | _field("IRQ_ENABLE", "ERROR")),
                (BY_NAME["CONTROL"].offset, _field("CONTROL", "START"))]

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        # Every read master of the accelerator is served by the ROM.
        m.submodules.rom = rom = AxiRom(self.memory.rom, base=WEIGHTS_ADDR,
                                        ports=acc.read_ports, data_width=self._data_width,
                                        addr_width=len(acc.image_bus.araddr))
        for name in acc.read_ports:
            wiring.connect(m, getattr(acc, name), getattr(rom, name))

        # --- The output sink: a checksum of the words in the order they are written --------
        out = acc.output_bus
        checksum, beats = Signal(32, name="checksum"), Signal(16, name="beats")
        b_pending = Signal()
        m.d.comb += [out.awready.eq(1), out.wready.eq(~b_pending), out.bvalid.eq(b_pending),
                     out.bresp.eq(0)]
        with m.If(out.wvalid & out.wready):
            c = checksum
            for k in range(self._data_width // 32):
                c = Cat(c[31], c[:31]) ^ out.wdata[32 * k:32 * (k + 1)]
            m.d.sync += [checksum.eq(c), beats.eq(beats + 1)]
            with m.If(out.wlast):
                m.d.sync += b_pending.eq(1)
        with m.If(out.bvalid & out.bready):
            m.d.sync += b_pending.eq(0)
        expected_beats = len(self.memory.output_bytes) // (self._data_width // 8)

        # --- The host: register writes, wait for the interrupt, two reads -----------------
        ctl = acc.control
        program = self._program()
        step = Signal(range(len(program) + 1))
        aw_done, w_done, asked = Signal(), Signal(), Signal()
        status, cycles = Signal(32, name="status"), Signal(32, name="run_cycles")
        for i, (offset, value) in enumerate(program):
            with m.If(step == i):
                m.d.comb += [ctl.awaddr.eq(offset), ctl.wdata.eq(value)]
        m.d.comb += ctl.wstrb.eq(0b1111)

        def read(register, into, then):
            m.d.comb += [ctl.araddr.eq(BY_NAME[register].offset), ctl.arvalid.eq(~asked),
                         ctl.rready.eq(asked)]
            with m.If(ctl.arvalid & ctl.arready):
                m.d.sync += asked.eq(1)
            with m.If(ctl.rvalid & ctl.rready):
                m.d.sync += [into.eq(ctl.rdata), asked.eq(0)]
                m.next = then

        with m.FSM():
            with m.State("WRITE"):
                m.d.comb += [ctl.awvalid.eq(~aw_done), ctl.wvalid.eq(~w_done),
                             ctl.bready.eq(aw_done & w_done)]
                with m.If(ctl.awvalid & ctl.awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(ctl.wvalid & ctl.wready):
                    m.d.sync += w_done.eq(1)
                with m.If(ctl.bvalid & ctl.bready):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0), step.eq(step + 1)]
                    with m.If(step == len(program) - 1):
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.running.eq(1)
                with m.If(acc.irq):
                    m.next = "STATUS"
            with m.State("STATUS"):
                read("STATUS", status, "CYCLES")
            with m.State("CYCLES"):
                read("CYCLES_TOTAL_LO", cycles, "VERDICT")
            with m.State("VERDICT"):
                done, error = (BY_NAME["STATUS"].field(f) for f in ("DONE", "ERROR"))
                ok = (status[done.lsb] & ~status[error.lsb] &
                      (checksum == self.memory.output_checksum) & (beats == expected_beats))
                m.d.sync += [self.passed.eq(ok), self.failed.eq(~ok),
                             self.cycles.eq(cycles)]
                m.next = "REPORT"
            with m.State("REPORT"):
                pass

        # --- The line: the verdict's text, the cycle count in hex, CR LF, repeated --------
        m.submodules.uart = uart = UartTx(self._divisor)
        m.d.comb += self.tx.eq(uart.tx)
        prefix = len(MESSAGE_PASS)
        assert len(MESSAGE_FAIL) == prefix
        length = prefix + 8 + 2
        char = Signal(range(length + 1))
        wait = Signal(range(max(self._repeat, 1) + 1))
        byte = Signal(8)
        for k in range(prefix):
            with m.If(char == k):
                m.d.comb += byte.eq(Mux(self.passed, MESSAGE_PASS[k], MESSAGE_FAIL[k]))
        for k in range(8):
            nibble = self.cycles[4 * (7 - k):4 * (8 - k)]
            with m.If(char == prefix + k):
                m.d.comb += byte.eq(Mux(nibble < 10, ord("0") + nibble, ord("A") - 10 + nibble))
        for k, c in enumerate(b"\r\n"):
            with m.If(char == prefix + 8 + k):
                m.d.comb += byte.eq(c)
        reporting = self.passed | self.failed
        m.d.comb += [uart.i.payload.eq(byte), uart.i.valid.eq(reporting & (char < length))]
        with m.If(uart.i.valid & uart.i.ready):
            m.d.sync += char.eq(char + 1)
        if self._repeat:
            with m.If(reporting & (char == length)):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == self._repeat - 1):
                    m.d.sync += [wait.eq(0), char.eq(0)]
        return m
