"""AXI4 read DMA: a command names an address and a number of beats; the data comes out as a
stream. Twin of :func:`model.movers.axi_reader.read_beats`.

Each command is split into INCR bursts of at most 256 beats that never cross a 4 KB boundary
(:class:`hw.movers.axi_bursts.BurstSplitter`). Up to ``max_outstanding`` bursts are requested ahead
of the data, so a slow memory's latency is hidden. The data passes through a skid buffer
(:class:`hw.streams.skid.SkidBuffer`): ``rready`` is a register, so back-pressure reaches the
memory a cycle late, with at most two beats held, and no consumer's ready chain reaches the bus.

Latency: a command taken at a clock edge offers its first address two cycles later; a beat is on
``o`` the cycle after the memory offers it.

Throughput: one beat per cycle when the memory and the consumer keep pace. The address side
spends ``1 + 2B`` cycles on a command of ``B`` bursts
(:class:`hw.movers.axi_bursts.BurstSplitter`), ahead of the data. A command whose
address is not aligned to the data width or whose beat count is zero is dropped with ``error``
set; an error response (SLVERR/DECERR) sets ``error`` too, and its beats are still delivered,
so that nothing downstream waits forever, and sets ``resp_error`` as well. Both are sticky until
reset.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from hw.movers.axi import dma_command_layout, RESP_OKAY, axi4_read
from hw.movers.axi_bursts import BurstSplitter, address_channel
from hw.streams.skid import SkidBuffer

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
        Sticky: a command was dropped or a response was not OKAY.
    resp_error : ``Out(1)``
        Sticky: a response was not OKAY.
    """

    def __init__(self, *, addr_width=40, data_width=128, max_beats=1 << 20, max_outstanding=4):
        command = dma_command_layout("AxiReader", addr_width=addr_width, data_width=data_width,
                                     max_beats=max_beats, max_outstanding=max_outstanding)
        self._data_width, self._max_beats = data_width, max_beats
        self._max_outstanding = max_outstanding
        super().__init__({
            "cmd": In(stream.Signature(command)),
            "o": Out(stream.Signature(unsigned(data_width))),
            "bus": Out(axi4_read(addr_width=addr_width, data_width=data_width)),
            "error": Out(1),
            "resp_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.bursts = bursts = BurstSplitter(
            addr_width=len(bus.araddr), data_width=self._data_width, max_beats=self._max_beats)
        wiring.connect(m, wiring.flipped(self.cmd), bursts.i)

        m.submodules.data = data = SkidBuffer(unsigned(self._data_width))
        m.d.comb += [data.i.valid.eq(bus.rvalid), data.i.payload.eq(bus.rdata),
                     bus.rready.eq(data.i.ready)]
        wiring.connect(m, data.o, wiring.flipped(self.o))
        received = bus.rvalid & bus.rready
        address_channel(m, bursts, bus, "ar", max_outstanding=self._max_outstanding,
                        done=received & bus.rlast)
        bad_response = Signal()
        with m.If(received & (bus.rresp != RESP_OKAY)):
            m.d.sync += bad_response.eq(1)
        m.d.comb += [self.error.eq(bursts.error | bad_response), self.resp_error.eq(bad_response)]
        return m
