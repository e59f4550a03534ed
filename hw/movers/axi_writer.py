"""AXI4 write DMA: a command names an address and a number of beats, and that many beats of the
data stream go to memory there. Twin of :func:`model.movers.axi_writer.write_beats`.

Each command is split into INCR bursts of at most 256 beats that never cross a 4 KB boundary
(:class:`hw.movers.axi_bursts.BurstSplitter`), written with full strobes. Up to ``max_outstanding``
bursts may await their write response, so a slow memory's response latency is hidden. Nothing is
buffered: ``wvalid`` follows the data stream's ``valid`` and its ``ready`` follows ``wready``, so
back-pressure reaches the producer.
The address of a burst goes out before or with its first beat, never after it, and ``wvalid``
never waits for ``awready`` (the AXI rule that lets a slave take data before the address).

Latency: a command taken at a clock edge offers its first address two cycles later, and its
first beat may be taken in that same cycle. ``idle`` rises in the cycle after the last write
response.

Throughput: one beat per cycle when the memory keeps pace (takes addresses and beats as they
come, and answers each burst before ``max_outstanding`` more have been issued). The address side
spends one cycle per command plus two per burst (:class:`hw.movers.axi_bursts.BurstSplitter`),
ahead of the data, so back-to-back commands of three beats or more stream without a gap;
shorter commands go at one every three cycles.

A command whose address is not aligned to the data width or whose beat count is zero is dropped
with ``error`` set, and **its data beats are not expected**: the producer must not send them,
as the next beats on ``i`` belong to the next valid command. An error response (SLVERR/DECERR)
sets ``error`` and ``resp_error``, and counts as a response, so ``idle`` still comes back. Both
are sticky until reset.

Ending early: while ``stop`` is high the writer offers no new burst; a burst whose address is on
offer stays until taken, and the data of every burst whose address went out (or is on offer)
is still written, from ``i``. ``quiet`` then says when nothing is left on the bus, and the
writer may be reset.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from hw.movers.axi import dma_command_layout, MAX_BURST, RESP_OKAY, axi4_write
from hw.movers.axi_bursts import BurstSplitter, address_channel

__all__ = ["AxiWriter"]


class AxiWriter(wiring.Component):
    """Write ``beats`` beats of ``data_width`` bits from ``i`` to memory at ``addr``.

    Parameters
    ----------
    addr_width : int
    data_width : int
        A power of two, 8 to 1024.
    max_beats : int
        Largest beat count of one command.
    max_outstanding : int
        Bursts issued ahead of their write response.

    Members
    -------
    cmd : ``In(stream.Signature(StructLayout({"addr", "beats"})))``
    i : ``In(stream.Signature(unsigned(data_width)))``
        The beats of the accepted commands, in order, and nothing else.
    bus : ``Out(axi4_write(...))``
    idle : ``Out(1)``
        No command offered on ``cmd`` or in progress, and every burst answered: what was
        written is in memory. Low from the cycle a command is offered.
    stop : ``In(1)``
        Offer no new burst (see above).
    quiet : ``Out(1)``
        No burst on offer or awaiting data or its response: the bus is idle.
    error : ``Out(1)``
        Sticky: a command was dropped or a response was not OKAY.
    resp_error : ``Out(1)``
        Sticky: a response was not OKAY.

    Raises
    ------
    ValueError
        If a parameter is out of range; the message names it.
    """

    def __init__(self, *, addr_width=40, data_width=128, max_beats=1 << 20, max_outstanding=4):
        command = dma_command_layout("AxiWriter", addr_width=addr_width, data_width=data_width,
                                     max_beats=max_beats, max_outstanding=max_outstanding)
        self._data_width, self._max_beats = data_width, max_beats
        self._max_outstanding = max_outstanding
        super().__init__({
            "cmd": In(stream.Signature(command)),
            "i": In(stream.Signature(unsigned(data_width))),
            "bus": Out(axi4_write(addr_width=addr_width, data_width=data_width)),
            "idle": Out(1),
            "stop": In(1),
            "quiet": Out(1),
            "error": Out(1),
            "resp_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.bursts = bursts = BurstSplitter(
            addr_width=len(bus.awaddr), data_width=self._data_width, max_beats=self._max_beats)
        wiring.connect(m, wiring.flipped(self.cmd), bursts.i)
        m.d.comb += bus.bready.eq(1)
        answered = bus.bvalid & bus.bready
        issued, outstanding = address_channel(m, bursts, bus, "aw",
                                              max_outstanding=self._max_outstanding,
                                              done=answered, stop=self.stop)

        # Data side. The lengths of issued bursts whose data has not started wait in `lengths`;
        # never more than max_outstanding, as a burst's data starts before its response. A burst
        # may also start from the address on offer, before it is taken; `early` then remembers
        # that its length must not be queued when it is.
        m.submodules.lengths = lengths = fifo.SyncFIFO(width=8, depth=self._max_outstanding)
        beats_left = Signal(range(MAX_BURST))  # in the burst under way, after the one on offer
        early = Signal()
        under_way = beats_left != 0
        from_queue = ~under_way & lengths.r_rdy
        from_bus = ~under_way & ~lengths.r_rdy & bus.awvalid & ~early
        # The beats after this one in its burst.
        after = Signal(range(MAX_BURST))
        with m.If(under_way):
            m.d.comb += after.eq(beats_left - 1)
        with m.Elif(from_queue):
            m.d.comb += after.eq(lengths.r_data)
        with m.Else():
            m.d.comb += after.eq(bus.awlen)
        has_burst = under_way | from_queue | from_bus
        m.d.comb += [bus.wvalid.eq(self.i.valid & has_burst), bus.wdata.eq(self.i.payload),
                     bus.wstrb.eq((1 << len(bus.wstrb)) - 1), bus.wlast.eq(after == 0),
                     self.i.ready.eq(bus.wready & has_burst)]
        sent = bus.wvalid & bus.wready
        with m.If(sent):
            m.d.sync += beats_left.eq(after)
        m.d.comb += lengths.r_en.eq(sent & from_queue)
        started_early = sent & from_bus & ~issued
        m.d.comb += [lengths.w_data.eq(bus.awlen),
                     lengths.w_en.eq(issued & ~early & ~(sent & from_bus))]
        with m.If(started_early):
            m.d.sync += early.eq(1)
        with m.Elif(issued):
            m.d.sync += early.eq(0)

        bad_response = Signal()
        with m.If(answered & (bus.bresp != RESP_OKAY)):
            m.d.sync += bad_response.eq(1)
        m.d.comb += [self.error.eq(bursts.error | bad_response), self.resp_error.eq(bad_response)]
        # The splitter offers a burst from a command's acceptance to its last burst taken. A
        # burst issued is outstanding until its response, which comes after its last beat.
        m.d.comb += [self.idle.eq(~self.cmd.valid & ~bursts.o.valid & (outstanding == 0)),
                     self.quiet.eq(~bus.awvalid & (outstanding == 0))]
        return m
