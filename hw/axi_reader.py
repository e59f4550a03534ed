"""AXI4 read DMA: a command names an address and a number of beats; the data comes out as a
stream. Twin of :func:`model.axi_reader.read_beats`.

Each command is split into INCR bursts of at most 256 beats that never cross a 4 KB boundary.
Up to ``max_outstanding`` bursts are requested ahead of the data, so a slow memory's latency is
hidden; ``rready`` follows the output stream's ``ready``, so back-pressure reaches the memory
and nothing is buffered.

Throughput: one beat per cycle when the memory and the consumer keep pace. A command whose
address is not aligned to the data width or whose beat count is zero is dropped with ``error``
set; an error response (SLVERR/DECERR) sets ``error`` too, and its beats are still delivered,
so that nothing downstream waits forever. ``error`` is sticky until reset.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .axi import dma_command_layout, BOUNDARY, BURST_INCR, MAX_BURST, RESP_OKAY, axi4_read

__all__ = ["AxiReader"]


class AxiReader(wiring.Component):
    """Read ``beats`` beats of ``data_width`` bits from ``addr``.

    Parameters
    ----------
    addr_width : int
    data_width : int
        A power of two, 8 to 1024.
    max_beats : int
        Largest beat count of one command.
    max_outstanding : int
        Bursts requested ahead of their data.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"addr", "beats"})))``
    o : ``Out(stream.Signature(unsigned(data_width)))``
    bus : ``Out(axi4_read(...))``
    error : ``Out(1)``
    """

    def __init__(self, *, addr_width=40, data_width=128, max_beats=1 << 20, max_outstanding=4):
        command = dma_command_layout("AxiReader", addr_width=addr_width, data_width=data_width,
                                     max_beats=max_beats, max_outstanding=max_outstanding)
        self._data_width, self._max_outstanding = data_width, max_outstanding
        super().__init__({
            "cmd": In(stream.Signature(command)),
            "o": Out(stream.Signature(unsigned(data_width))),
            "bus": Out(axi4_read(addr_width=addr_width, data_width=data_width)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        size = exact_log2(self._data_width // 8)
        addr = Signal.like(self.cmd.payload.addr)
        left = Signal.like(self.cmd.payload.beats)
        active = Signal()
        outstanding = Signal(range(self._max_outstanding + 1))

        # Beats to the next 4 KB boundary, and the burst length.
        to_boundary = Signal(range(BOUNDARY // (1 << size) + 1))
        m.d.comb += to_boundary.eq((BOUNDARY - addr[:ceil_log2(BOUNDARY)]) >> size)
        burst = Signal(range(MAX_BURST + 1))
        with m.If((left <= to_boundary) & (left <= MAX_BURST)):
            m.d.comb += burst.eq(left)
        with m.Elif(to_boundary <= MAX_BURST):
            m.d.comb += burst.eq(to_boundary)
        with m.Else():
            m.d.comb += burst.eq(MAX_BURST)

        bad = self.cmd.payload.beats == 0
        if size:
            bad = bad | (self.cmd.payload.addr[:size] != 0)
        m.d.comb += self.cmd.ready.eq(~active)
        with m.If(self.cmd.valid & ~active):
            with m.If(bad):
                m.d.sync += self.error.eq(1)
            with m.Else():
                m.d.sync += [addr.eq(self.cmd.payload.addr), left.eq(self.cmd.payload.beats),
                             active.eq(1)]

        m.d.comb += [bus.arvalid.eq(active & (outstanding < self._max_outstanding)),
                     bus.araddr.eq(addr), bus.arlen.eq(burst - 1), bus.arsize.eq(size),
                     bus.arburst.eq(BURST_INCR), bus.arid.eq(0)]
        requested = bus.arvalid & bus.arready
        with m.If(requested):
            m.d.sync += [addr.eq(addr + (burst << size)), left.eq(left - burst)]
            with m.If(left == burst):
                m.d.sync += active.eq(0)

        m.d.comb += [self.o.valid.eq(bus.rvalid), self.o.payload.eq(bus.rdata),
                     bus.rready.eq(self.o.ready)]
        received = bus.rvalid & bus.rready
        with m.If(received & (bus.rresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)
        m.d.sync += outstanding.eq(outstanding + requested - (received & bus.rlast))
        return m
