"""A read-only memory behind several AXI4 read slave ports: on-chip DRAM for a board's self-test.

:class:`AxiRom` holds ``init`` (bytes, from address ``base``) in one block RAM as wide as the
data bus. Each port has its own burst in progress and its own output register, and the block
RAM's one read per cycle goes round robin to the ports that have room; so a port whose master
holds ``rready`` low never stalls the others (a master may wait for one port's data before it
takes another's). Bursts are INCR of full-width beats (what :mod:`hw.movers.axi_reader` issues),
answered with their ID; a beat outside the memory reads as zero with SLVERR.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from hw.movers.axi import axi4_read

__all__ = ["AxiRom"]

OKAY, SLVERR = 0, 2


class AxiRom(wiring.Component):
    """``init`` at ``base`` on AXI4 read ports named ``ports``.

    Latency: a burst's first beat is valid three cycles after its AR handshake when no other
    port reads. Throughput: one beat per cycle over all ports, at most one per two cycles per
    port.

    Parameters
    ----------
    init : bytes
    base : int
        Address of ``init[0]``, a multiple of ``data_width / 8``.
    ports : sequence of str
        Names of the slave ports (members ``In(axi4_read(...))``).
    data_width, addr_width : int
    """

    def __init__(self, init, *, base, ports, data_width=128, addr_width=40):
        beat = data_width // 8
        if base % beat:
            raise ValueError(f"AxiRom base {base:#x} is not a multiple of {beat} bytes")
        init = bytes(init) + bytes(-len(init) % beat)
        self._words = [int.from_bytes(init[i:i + beat], "little")
                       for i in range(0, len(init), beat)]
        self._base, self._beat, self._ports = base, beat, tuple(ports)
        super().__init__({name: In(axi4_read(addr_width=addr_width, data_width=data_width))
                          for name in self._ports})

    def elaborate(self, platform):
        m = Module()
        n, depth, shift = len(self._ports), len(self._words), self._beat.bit_length() - 1
        m.submodules.mem = mem = memory.Memory(shape=self._beat * 8, depth=depth,
                                               init=self._words)
        rd = mem.read_port()
        buses = [getattr(self, name) for name in self._ports]

        turn = Signal(range(n))                     # where the round robin looks first
        chosen, found = Signal(range(n)), Signal()  # the port read this cycle
        # The read in flight: its data is on rd.data in the next cycle.
        pending, pending_port, pending_last, pending_inside = (
            Signal(), Signal(range(n)), Signal(), Signal())
        m.d.sync += [pending.eq(found), pending_port.eq(chosen)]

        ready = []
        for i, b in enumerate(buses):
            index = Signal(len(b.araddr) - shift, name=f"index_{i}")   # next beat to read
            left = Signal(9, name=f"left_{i}")        # beats of the burst still to read
            valid, last, inside = (Signal(name=f"{x}_{i}") for x in ("valid", "last", "inside"))
            data = Signal(len(b.rdata), name=f"data_{i}")
            burst_id, rid = Signal.like(b.arid, name=f"burst_id_{i}"), Signal.like(b.rid)
            m.d.comb += [b.rvalid.eq(valid), b.rdata.eq(data), b.rlast.eq(last), b.rid.eq(rid),
                         b.rresp.eq(Mux(inside, OKAY, SLVERR))]
            in_flight = pending & (pending_port == i)
            # Room for one more read: the output register is empty when its data lands.
            ready.append(Signal(name=f"ready_{i}"))
            m.d.comb += ready[-1].eq((left != 0) & ~in_flight & (~valid | b.rready))
            with m.If(in_flight):
                # A new burst's AR may be taken on this edge: burst_id still holds this one's.
                m.d.sync += [valid.eq(1), last.eq(pending_last), inside.eq(pending_inside),
                             data.eq(Mux(pending_inside, rd.data, 0)), rid.eq(burst_id)]
            with m.Elif(b.rvalid & b.rready):
                m.d.sync += valid.eq(0)
            with m.If(found & (chosen == i)):
                m.d.comb += rd.addr.eq(index)
                m.d.sync += [index.eq(index + 1), left.eq(left - 1),
                             pending_last.eq(left == 1), pending_inside.eq(index < depth)]
            # The next burst once this one's beats are all read.
            m.d.comb += b.arready.eq(left == 0)
            with m.If(b.arvalid & b.arready):
                # An address below base wraps to an index past the end: read as outside.
                m.d.sync += [index.eq((b.araddr - self._base)[shift:]), left.eq(b.arlen + 1),
                             burst_id.eq(b.arid)]

        # Round robin from turn; candidates are tried lowest priority first, so the highest is
        # assigned last.
        for k in reversed(range(n)):
            for i in range(n):
                with m.If((((turn + k) % n) == i) & ready[i]):
                    m.d.comb += [chosen.eq(i), found.eq(1)]
        with m.If(found):
            m.d.sync += turn.eq(chosen + 1)
        return m
