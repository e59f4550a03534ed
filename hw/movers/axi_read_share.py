"""Several AXI4 read masters on one port: a board with fewer memory ports than the machine has
read masters (the ZCU102's six PS ports and the 512-MAC machine's seven read masters) puts two
light ones on one.

The masters' requests are taken in turn (round robin, each master's request into a register that
is offered on the port until taken, VALID held and the payload stable), and the owner of each
request goes into a queue. Every request leaves with ID 0, so the slave answers them in order
(AXI keeps the responses of one ID in order), and each data beat goes to the owner at the head
of the queue until its burst's last beat. At most ``depth`` bursts are outstanding.

Latency: a request is offered on the port the cycle after its master's handshake; data beats
pass in the same cycle (the owner is a register). Throughput: a request every other cycle,
one data beat per cycle. Plumbing without a golden twin: its bench (sim/benches/axi_read_share.py)
checks that every master reads what the memory holds.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from hw import checks
from hw.movers.axi import axi4_read

__all__ = ["AxiReadShare"]

_AR = ("araddr", "arlen", "arsize", "arburst", "arprot", "arcache")


class AxiReadShare(wiring.Component):
    """``masters`` AXI4 read masters (``m_0``, ``m_1``, ...) on one port (``bus``).

    Parameters
    ----------
    masters : int
        At least 2.
    addr_width, data_width, id_width : int
        The masters' and the port's AXI4 widths (the port's ID is always 0).
    depth : int
        Bursts outstanding on the port at most.
    """

    def __init__(self, *, masters, addr_width=40, data_width=128, id_width=1, depth=16):
        checks.positive("AxiReadShare", "depth", depth)
        if not (isinstance(masters, int) and masters >= 2):
            raise ValueError(f"AxiReadShare masters must be an integer of at least 2, not "
                             f"{masters!r}")
        self._masters, self._depth = masters, depth
        read = axi4_read(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({**{f"m_{k}": In(read) for k in range(masters)}, "bus": Out(read)})

    @property
    def masters(self):
        """The masters' ports, in order."""
        return [getattr(self, f"m_{k}") for k in range(self._masters)]

    def elaborate(self, platform):
        m = Module()
        n, bus, masters = self._masters, self.bus, self.masters
        m.submodules.owners = owners = fifo.SyncFIFOBuffered(width=(n - 1).bit_length(),
                                                             depth=self._depth)

        # Address: when the register is free and the queue has room, take the next master
        # offering after the last one taken.
        held = Signal()
        last = Signal(range(n))                    # the owner of the request held or last taken
        free = ~held & owners.w_rdy
        offers = Cat(mst.arvalid for mst in masters)
        after = [Signal(name=f"after_{k}") for k in range(n)]   # master k offers, after `last`
        chosen = Signal(range(n))
        any_offer = Signal()
        for k in range(n):
            m.d.comb += after[k].eq(offers[k] & (k > last))
        for k in reversed(range(n)):               # the first after `last`, else the first
            with m.If(offers[k]):
                m.d.comb += [chosen.eq(k), any_offer.eq(1)]
        for k in reversed(range(n)):
            with m.If(after[k]):
                m.d.comb += chosen.eq(k)
        for k, mst in enumerate(masters):
            m.d.comb += mst.arready.eq(free & (chosen == k))
        with m.If(free & any_offer):
            m.d.sync += [held.eq(1), last.eq(chosen)]
            m.d.sync += [getattr(bus, name).eq(_select(masters, name, chosen)) for name in _AR]
        m.d.comb += [bus.arvalid.eq(held), bus.arid.eq(0),
                     owners.w_en.eq(bus.arvalid & bus.arready), owners.w_data.eq(last)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += held.eq(0)

        # Data: to the oldest burst's owner, until its last beat.
        head = owners.r_data
        for k, mst in enumerate(masters):
            mine = owners.r_rdy & (head == k)
            m.d.comb += [mst.rvalid.eq(bus.rvalid & mine), mst.rdata.eq(bus.rdata),
                         mst.rresp.eq(bus.rresp), mst.rlast.eq(bus.rlast), mst.rid.eq(0)]
            with m.If(mine):
                m.d.comb += bus.rready.eq(mst.rready)
        m.d.comb += owners.r_en.eq(bus.rvalid & bus.rready & bus.rlast)
        return m


def _select(masters, name, chosen):
    """Field ``name`` of the master ``chosen``: an and-or of the masters' fields."""
    value = 0
    for k, mst in enumerate(masters):
        value = value | Mux(chosen == k, getattr(mst, name), 0)
    return value
