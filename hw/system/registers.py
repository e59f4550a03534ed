"""The accelerator's AXI4-Lite register block: the host's control registers, built from the one
description in :mod:`model.system.registers` (twin: :class:`model.system.registers.RegisterFile`;
the map is documented in ``docs/registers.md``).

Latency: a write's B response is valid two cycles after both its AW and its W have been
accepted, and the write takes effect at the end of that cycle; a read's R response is valid two
cycles after its AR was accepted. Throughput: one write and one read per cycle, concurrently,
when the master takes B and R at once (``awready``, ``wready`` and ``arready`` are high whenever
the response they would produce can be handed on). A START is judged two cycles after it
takes effect and, if it passes its checks, pulses ``start`` in the cycle after that; a refused
START sets ERROR a cycle later still.

Timing: the write is applied from registers (address decoded, strobes applied) a cycle after
the handshakes; the start checks of register contents are evaluated every cycle into one
register per check, and their priority into another; the read address is registered before the
register multiplexer. No path runs from a bus handshake through a decoder into storage.
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from model.system.registers import (BUFFERS, BY_NAME, ERROR_CODE_WIDTH, MAP_BYTES, REGISTERS,
                                   START_CHECKS, STAGE_NAMES, WORD_BYTES, Access, ErrorCode,
                                   Identity)

from hw import checks
from hw.movers.axi import RESP_OKAY, axi4_lite

__all__ = ["RegisterBlock"]

#: Width of the buffer addresses and of the total cycle count (each a LO/HI register pair).
WIDE = 64
#: Width of a per-stage cycle counter.
COUNTER_WIDTH = 32


def stage_layout():
    """The ``stage_cycles`` input: one 32-bit counter per stage, named in lower case."""
    return data.StructLayout({name.lower(): unsigned(COUNTER_WIDTH) for name in STAGE_NAMES})


class RegisterBlock(wiring.Component):
    """AXI4-Lite slave holding the register map of :mod:`model.system.registers`.

    Reads of unmapped offsets return 0 and writes there (and to RO registers) are ignored, all
    with an OKAY response; byte strobes are honoured. See ``docs/registers.md`` for the start
    checks, the status bits and the interrupt.

    The machine's side: it samples ``task_id`` and the addresses when ``start`` pulses (they
    are the registers' contents and the host may rewrite them during a run); it must raise
    ``busy`` in the cycle after ``start`` at the latest and hold it until the run ends, pulse
    ``done`` once per finished run, and pulse ``fault`` with ``fault_code`` (an
    :class:`~model.system.registers.ErrorCode`, e.g. AXI_READ_ERROR) on an error.
    ``soft_reset`` pulses when the host aborts and ``timeout`` when the watchdog ends a run;
    on either the machine ends the run and returns to idle. ``start`` counts as busy in the
    cycle it is high, so two STARTs in a row cannot both pass. The addresses are the
    registers' full 64 bits: a START passes only if every buffer lies below
    ``2**identity.addr_width``.

    Parameters
    ----------
    identity : model.system.registers.Identity
        The build's parameters: CONFIG, LAYOUT_HASH and the buffers' sizes.
    addr_width : int
        AXI4-Lite address width; the map needs ``log2(MAP_BYTES)`` bits.

    Members
    -------
    bus : ``In(axi4_lite(addr_width=addr_width))``
    start, soft_reset, timeout : ``Out(1)``
        One-cycle pulses.
    task_id : ``Out(range(tasks))``
    image_addr, weights_addr, output_addr : ``Out(64)``
    irq : ``Out(1)``
        Level: ``IRQ_STATUS & IRQ_ENABLE`` is nonzero.
    busy, done, fault : ``In(1)``
    fault_code : ``In(ERROR_CODE_WIDTH)``
    cycles : ``In(64)``
        Cycles of the current or last run.
    stage_cycles : ``In(StructLayout({"embed": 32, ...}))``
        One counter per stage of :data:`model.system.registers.STAGES`.
    """

    def __init__(self, identity, *, addr_width=12):
        if not isinstance(identity, Identity):
            raise TypeError(f"RegisterBlock takes a model.system.registers.Identity, "
                            f"not {identity!r}")
        need = ceil_log2(MAP_BYTES)
        checks.in_range("RegisterBlock", "addr_width", addr_width, need, 64,
                        reason=f" to hold the {MAP_BYTES}-byte map")
        self.identity, self._addr_width = identity, addr_width
        super().__init__({
            "bus": In(axi4_lite(addr_width=addr_width)),
            "start": Out(1), "soft_reset": Out(1), "timeout": Out(1),
            "task_id": Out(range(max(identity.tasks, 2))),
            **{f"{buffer.lower()}_addr": Out(WIDE) for buffer in BUFFERS},
            "irq": Out(1),
            "busy": In(1), "done": In(1), "fault": In(1), "fault_code": In(ERROR_CODE_WIDTH),
            "cycles": In(WIDE),
            "stage_cycles": In(stage_layout()),
        })

    tasks = property(lambda self: self.identity.tasks)
    alignment = property(lambda self: self.identity.alignment)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        word = slice(ceil_log2(WORD_BYTES), self._addr_width)

        def index(name):
            return BY_NAME[name].offset // WORD_BYTES

        # Storage of the RW registers, reserved bits kept at 0.
        rw = {reg.name: Signal(32, init=reg.reset, name=f"reg_{reg.name.lower()}")
              for reg in REGISTERS if reg.access is Access.RW}
        for buffer in BUFFERS:
            m.d.comb += getattr(self, f"{buffer.lower()}_addr").eq(
                Cat(rw[f"{buffer}_ADDR_LO"], rw[f"{buffer}_ADDR_HI"]))
        m.d.comb += self.task_id.eq(rw["TASK"])
        irq_status = Signal(32)
        m.d.comb += self.irq.eq((irq_status & rw["IRQ_ENABLE"]) != 0)
        status_done, status_error = Signal(), Signal()
        error_code = Signal(ERROR_CODE_WIDTH)
        cycles_hi = Signal(32)

        # Write channel: AW and W are each held until both are there and B can be handed on;
        # the write itself (strobes applied, register decoded) is done a cycle later, from
        # registers, as are the start checks after it.
        aw_held, w_held = Signal(), Signal()
        aw_word = Signal(self._addr_width - word.start)
        w_data, w_strb = Signal(32), Signal(4)
        b_free = ~bus.bvalid | bus.bready
        perform = aw_held & w_held & b_free
        m.d.comb += [bus.awready.eq(~aw_held | perform), bus.wready.eq(~w_held | perform),
                     bus.bresp.eq(RESP_OKAY)]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_held.eq(1), aw_word.eq(bus.awaddr[word])]
        with m.Elif(perform):
            m.d.sync += aw_held.eq(0)
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_held.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.Elif(perform):
            m.d.sync += w_held.eq(0)
        with m.If(perform):
            m.d.sync += bus.bvalid.eq(1)
        with m.Elif(bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        byte_mask, written = Signal(32), Signal(32)
        write_word = Signal.like(aw_word)
        write = Signal()                                # a write takes effect this cycle
        m.d.sync += write.eq(perform)
        with m.If(perform):
            mask = Cat(*(bit.replicate(8) for bit in w_strb))
            m.d.sync += [byte_mask.eq(mask), written.eq(w_data & mask), write_word.eq(aw_word)]

        def writes(name):
            return write & (write_word == index(name))

        for name, storage in rw.items():
            with m.If(writes(name)):
                m.d.sync += storage.eq(((storage & ~byte_mask) | written) & BY_NAME[name].mask)

        control = BY_NAME["CONTROL"]
        soft = writes("CONTROL") & (written & control.field("SOFT_RESET").mask).any()
        start = (writes("CONTROL") & (written & control.field("START").mask).any()) & ~soft
        m.d.sync += self.soft_reset.eq(soft)

        # Start checks, in the documented order of priority. They are of register contents:
        # each is evaluated every cycle into a register, their priority into another, and a
        # START is judged two cycles after it was written, when both have seen every earlier
        # write. A START while busy is ignored (only START_IGNORED says it came).
        ident = self.identity
        addresses = {buffer: getattr(self, f"{buffer.lower()}_addr") for buffer in BUFFERS}
        aw, align_bits = ident.addr_width, ceil_log2(ident.alignment)
        failing = {code: Signal(name=f"fails_{code.name.lower()}") for code in START_CHECKS}
        below = {buffer: a[:aw] for buffer, a in addresses.items()}
        m.d.sync += [
            failing[ErrorCode.ZERO_ADDRESS].eq(Cat(*(a == 0 for a in addresses.values())).any()),
            failing[ErrorCode.ADDRESS_TOO_HIGH].eq(
                Cat(*(a[aw:] != 0 for a in addresses.values())).any() if aw < WIDE else 0),
            # Past the end: addr + bytes > 2**aw, i.e. addr > 2**aw - bytes (a constant), so
            # no adder. The high bits are ADDRESS_TOO_HIGH's, which comes first.
            failing[ErrorCode.BUFFER_PAST_END].eq(
                Cat(*(below[b] > (1 << aw) - ident.bytes(b) for b in BUFFERS)).any()),
            failing[ErrorCode.UNALIGNED_ADDRESS].eq(
                Cat(*(a[:align_bits] != 0 for a in addresses.values())).any()
                if align_bits else 0),
            failing[ErrorCode.BAD_TASK].eq(rw["TASK"] >= ident.tasks),
        ]
        settled = Signal(ERROR_CODE_WIDTH)
        code_now = ErrorCode.NONE
        for code in reversed(START_CHECKS):
            code_now = Mux(failing[code], code, code_now)
        m.d.sync += settled.eq(code_now)
        written_start, judge = Signal(), Signal()      # a START written one, two cycles ago
        m.d.sync += [written_start.eq(start), judge.eq(written_start)]
        ignored = judge & (self.busy | self.start)
        good = judge & ~ignored & (settled == ErrorCode.NONE)
        refused, refused_code = Signal(), Signal(ERROR_CODE_WIDTH)
        m.d.sync += [self.start.eq(good), refused.eq(judge & ~ignored & ~good),
                     refused_code.eq(settled)]
        restart = good | self.soft_reset

        # Watchdog: busy cycles since the last good start; it ends the run once (TIMEOUT, and
        # the timeout pulse, from a register a cycle after the count reaches the limit).
        watchdog_count = Signal(32)
        watchdog_fired = Signal()
        limit = rw["WATCHDOG"]
        fires = self.busy & ~watchdog_fired & (limit != 0) & (watchdog_count >= limit)
        m.d.sync += self.timeout.eq(fires & ~restart)
        with m.If(restart):
            m.d.sync += [watchdog_count.eq(0), watchdog_fired.eq(0)]
        with m.Else():
            with m.If(self.busy & ~watchdog_fired):
                m.d.sync += watchdog_count.eq(watchdog_count + 1)
            with m.If(fires):
                m.d.sync += watchdog_fired.eq(1)

        # Status and interrupt causes: clears first, so that an event in the same cycle wins.
        irq = BY_NAME["IRQ_STATUS"]
        irq_done, irq_error = irq.field("DONE").mask, irq.field("ERROR").mask
        status_overflow, status_ignored, status_hung = Signal(), Signal(), Signal()
        with m.If(restart):
            m.d.sync += [status_done.eq(0), status_error.eq(0), error_code.eq(ErrorCode.NONE),
                         status_overflow.eq(0), status_ignored.eq(0), status_hung.eq(0)]
        cleared = Signal(32)
        with m.If(self.soft_reset):
            m.d.comb += cleared.eq(irq.mask)
        with m.Elif(writes("IRQ_STATUS")):
            m.d.comb += cleared.eq(written & irq.mask)
        error = Signal()
        code = Signal(ERROR_CODE_WIDTH)
        with m.If(self.fault):
            m.d.comb += [error.eq(1), code.eq(self.fault_code)]
        with m.Elif(refused):
            m.d.comb += [error.eq(1), code.eq(refused_code)]
        with m.Elif(self.timeout):
            m.d.comb += [error.eq(1), code.eq(ErrorCode.TIMEOUT)]
        with m.If(self.done):
            m.d.sync += status_done.eq(1)
        with m.If(ignored):
            m.d.sync += status_ignored.eq(1)
        with m.If(self.fault & (self.fault_code == ErrorCode.BUS_HUNG)):
            m.d.sync += status_hung.eq(1)
        with m.If(error & status_error):
            m.d.sync += status_overflow.eq(1)
        with m.Elif(error):
            m.d.sync += [status_error.eq(1), error_code.eq(code)]
        m.d.sync += irq_status.eq((irq_status & ~cleared)
                                  | (self.done.replicate(32) & irq_done)
                                  | (error.replicate(32) & irq_error))

        # Read channel.
        def pack(name, **values):
            value = Signal(32, name=f"ro_{name.lower()}")
            for field_name, signal in values.items():
                f = BY_NAME[name].field(field_name)
                m.d.comb += value[f.lsb:f.msb + 1].eq(signal)
            return value

        ro = {
            **{name: Const(value, 32) for name, value in ident.constants().items()},
            "STATUS": pack("STATUS", BUSY=self.busy, DONE=status_done, ERROR=status_error,
                           OVERFLOW=status_overflow, START_IGNORED=status_ignored,
                           BUS_HUNG=status_hung,
                           ERROR_CODE=error_code),
            "CYCLES_TOTAL_LO": self.cycles[:32],
            "CYCLES_TOTAL_HI": cycles_hi,
            **{f"CYCLES_{name}": self.stage_cycles[name.lower()] for name in STAGE_NAMES},
        }
        # The read address is registered, then the register it names is selected into RDATA:
        # R two cycles after AR, one read per cycle.
        read_valid = Signal()
        read_word = Signal.like(aw_word)
        advance = ~bus.rvalid | bus.rready
        m.d.comb += [bus.arready.eq(~read_valid | advance), bus.rresp.eq(RESP_OKAY)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [read_valid.eq(1), read_word.eq(bus.araddr[word])]
        with m.Elif(advance):
            m.d.sync += read_valid.eq(0)
        with m.If(advance):
            m.d.sync += bus.rvalid.eq(read_valid)
        with m.If(advance & read_valid):
            with m.Switch(read_word):
                for reg in REGISTERS:
                    with m.Case(reg.offset // WORD_BYTES):
                        if reg.access is Access.RW:
                            value = rw[reg.name]
                        elif reg.access is Access.W1C:
                            value = irq_status
                        elif reg.access is Access.WO:
                            value = 0
                        else:
                            value = ro[reg.name]
                        m.d.sync += bus.rdata.eq(value)
                        if reg.name == "CYCLES_TOTAL_LO":
                            m.d.sync += cycles_hi.eq(self.cycles[32:])
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)
        return m
